"""Letter-logit scoring: one forward pass per MCQ row instead of LF's generation, on LF's exact inputs.

A letter-answer MCQ is decided by the first token greedy decoding emits, so the option letter with
the highest next-token logit at the assistant prefix is the answer generation gives whenever it
answers with a letter, without decoding up to `max_new_tokens`. Everything but `generate` is
LLaMA-Factory's own code, configured by the same `render_predict` YAML the predict stage runs:
argument parsing, tokenizer and processor (with `image_max_pixels`), template, the predict-mode eval
dataset (`predict_with_generate`: input ids end at the assistant prefix), model loading (class,
dtype, LoRA adapters merged) and the batch collator (left padding, as LF pads for generation).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import dataset_entry
from forgetkit.lf_quiet import quiet
from forgetkit.recipes import Hardware
from forgetkit.render import EVAL_BATCH_SIZE, DataSpec, render_predict
from forgetkit.stage_names import stage_name
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    from forgetkit.spec import Study
from forgetkit.rundir import RunDir

OPTION_LINE = re.compile(r"^([A-Z])\.\s", re.MULTILINE)


@dataclass
class PredictInputs:
    """What LF's predict stage would feed the model, and what it would write beside each prediction.

    `dataset` is LF's predict-mode eval dataset; `prompts` and `labels` are decoded as LF's
    `save_predictions` decodes them; `letters` are each row's option letters.
    """

    name: str
    dataset: Any
    tokenizer: Any
    collator: Any
    model_args: Any
    finetuning_args: Any
    prompts: list[str]
    labels: list[str]
    letters: list[list[str]]
    device: str
    bf16: bool

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.dataset["input_ids"]]


def load_predict_inputs(
    model_path: str | Path,
    dataset_dir: str | Path,
    dataset: str,
    template: str,
    *,
    adapter: str | Path | None = None,
    image_max_pixels: int = DataSpec.image_max_pixels,
    cutoff_len: int = DataSpec.cutoff_len,
    bf16: bool = False,
    device: str = "cpu",
    multiple_choice: bool = True,
    trust_remote_code: bool = False,
) -> PredictInputs:
    """The predict stage's own YAML for these settings (`render_predict`), read by `predict_inputs`."""
    data = DataSpec(dataset_dir=str(dataset_dir), train=(), cutoff_len=cutoff_len, image_max_pixels=image_max_pixels)
    text = render_predict(
        model_path,
        template,
        dataset,
        data,
        "unused",  # predict_inputs writes nothing; it replaces output_dir with a scratch folder
        Hardware(bf16=bf16),
        adapter=adapter,
        trust_remote_code=trust_remote_code,
    )
    return predict_inputs(text, device, multiple_choice)


def predict_inputs(config_text: str, device: str = "cpu", multiple_choice: bool = True) -> PredictInputs:
    """Parse a predict stage's YAML with LF and build its eval dataset and generation collator, in this process:
    its output folder becomes a scratch one and its data workers none, which changes no input LF builds.

    `multiple_choice` refuses rows without option lines; the drift probe turns it off for its caption prompts.
    """
    config = yaml.safe_load(config_text)
    dataset_dir, dataset = config["dataset_dir"], config["eval_dataset"]
    dataset_entry(Path(dataset_dir), dataset)  # fails in one line before LF's import and parsing time is spent
    with tempfile.TemporaryDirectory(prefix="forgetkit-logits-") as scratch, quiet():
        import transformers
        from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_dataset, get_template_and_fix_tokenizer
        from llamafactory.extras.constants import IGNORE_INDEX
        from llamafactory.hparams import get_train_args
        from llamafactory.model import load_tokenizer

        config.update(output_dir=scratch, preprocessing_num_workers=1, dataloader_num_workers=0)
        config["use_cpu"] = device == "cpu"
        try:
            model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
        except ValueError as err:
            raise ForgetkitError(f"LLaMA-Factory rejects the predict settings: {err}") from None
        transformers.logging.set_verbosity_error()  # get_train_args switched it to INFO; quiet() restores the old level
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        lf_template = get_template_and_fix_tokenizer(tokenizer, data_args)
        try:
            rows = get_dataset(lf_template, model_args, data_args, training_args, "sft", **tokenizer_module)
        except (ValueError, RuntimeError) as err:
            raise ForgetkitError(f"LLaMA-Factory cannot read dataset {dataset!r} in {dataset_dir}: {err}") from None
        tokenizer.padding_side = "left"  # what LF's predict sets before generating
        collator = SFTDataCollatorWith4DAttentionMask(
            template=lf_template,
            model=None,  # LF passes none under predict_with_generate: no precomputed position ids
            pad_to_multiple_of=None,
            label_pad_token_id=IGNORE_INDEX if data_args.ignore_pad_token_for_loss else tokenizer.pad_token_id,
            block_diag_attn=model_args.block_diag_attn,
            neat_packing=data_args.neat_packing,
            compute_dtype=model_args.compute_dtype,
            **tokenizer_module,
        )
    model_args.device_map = {"": device}
    eval_rows = rows["eval_dataset"]
    columns = eval_rows.select_columns(["input_ids", "labels"]).to_dict()
    prompts = tokenizer.batch_decode(columns["input_ids"], skip_special_tokens=False)
    letters = [option_letters(prompt) for prompt in prompts]
    for index, found in enumerate(letters):
        if multiple_choice and len(found) < 2:
            raise ForgetkitError(
                f"{dataset} row {index}: no 'A. …', 'B. …' option lines in the prompt; "
                "logits scoring needs letter-answer multiple-choice rows"
            )
    labels = tokenizer.batch_decode(columns["labels"], skip_special_tokens=True)
    bf16 = bool(config["bf16"])
    return PredictInputs(
        dataset, eval_rows, tokenizer, collator, model_args, finetuning_args, prompts, labels, letters, device, bf16
    )


def option_letters(prompt: str) -> list[str]:
    """The option letters of a prompt: the last run of `A. `, `B. `, … lines, in order."""
    found = OPTION_LINE.findall(prompt)
    if "A" not in found:
        return []
    start = len(found) - 1 - found[::-1].index("A")
    letters = ["A"]
    for letter in found[start + 1 :]:
        if ord(letter) != ord(letters[-1]) + 1:
            break
        letters.append(letter)
    return letters


def letter_token_ids(tokenizer: Any, letters: list[str]) -> list[int]:
    """The first token of each bare letter: what generation emits right after the assistant prefix."""
    ids = [tokenizer.encode(letter, add_special_tokens=False)[0] for letter in letters]
    if len(set(ids)) != len(ids):
        raise ForgetkitError(
            f"the tokenizer starts options {letters} with the same token; logits cannot tell them apart"
        )
    return ids


def load_lf_model(inputs: PredictInputs) -> Any:
    """The model exactly as LF's predict loads it: its class choice, dtype, attention and merged LoRA adapters."""
    from llamafactory.model import load_model

    with quiet():
        return load_model(inputs.tokenizer, inputs.model_args, inputs.finetuning_args, is_trainable=False)


def batches(
    inputs: PredictInputs, batch_size: int, desc: str, prepare: Callable[[int, dict], dict] | None = None
) -> Iterator[tuple[list[int], dict]]:
    """Dataset indices and LF's collated batch of those rows, on the device, without labels.

    Rows go in length order so left padding stays short; `prepare(index, row)` may edit a row before collation.
    """
    import torch

    lengths = inputs.lengths()
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in tqdm(range(0, len(order), batch_size), desc=f"{desc} {inputs.name}", unit="batch"):
        chunk = order[start : start + batch_size]
        rows = [inputs.dataset[index] for index in chunk]
        if prepare is not None:
            rows = [prepare(index, row) for index, row in zip(chunk, rows)]
        batch = inputs.collator(rows)
        batch.pop("labels")
        yield chunk, {key: value.to(inputs.device) if torch.is_tensor(value) else value for key, value in batch.items()}


def autocast(inputs: PredictInputs) -> Any:
    """bf16 autocast when the predict YAML asks for bf16, as LF evaluates then; a no-op otherwise."""
    import torch

    return torch.autocast(torch.device(inputs.device).type, dtype=torch.bfloat16, enabled=inputs.bf16)


def score_inputs(model: Any, inputs: PredictInputs, batch_size: int = EVAL_BATCH_SIZE) -> list[dict]:
    """One forward pass per batch; each row's letter is the argmax of the next-token logits over its letters.

    Returned in dataset order.
    """
    import torch

    every_letter = sorted({letter for found in inputs.letters for letter in found})
    token_id = dict(zip(every_letter, letter_token_ids(inputs.tokenizer, every_letter)))
    results: list[dict] = [{}] * len(inputs.dataset)
    with torch.no_grad(), autocast(inputs):
        for chunk, batch in batches(inputs, batch_size, "logits"):
            next_token = model(**batch, logits_to_keep=1).logits[:, -1].float().log_softmax(-1)
            for row, index in enumerate(chunk):
                letters = inputs.letters[index]
                logprobs = next_token[row, [token_id[letter] for letter in letters]]
                results[index] = {
                    "prompt": inputs.prompts[index],
                    "predict": letters[int(logprobs.argmax())],
                    "label": inputs.labels[index],
                    "letter_probs": dict(zip(letters, logprobs.softmax(-1).tolist())),
                    "letter_mass": float(logprobs.exp().sum()),
                }
    return results


def score_by_logits(
    model_path: str | Path,
    dataset_dir: str | Path,
    dataset: str,
    template: str,
    *,
    adapter: str | Path | None = None,
    image_max_pixels: int = DataSpec.image_max_pixels,
    cutoff_len: int = DataSpec.cutoff_len,
    bf16: bool = False,
    device: str = "cpu",
    batch_size: int = EVAL_BATCH_SIZE,
    output: Path | None = None,
    trust_remote_code: bool = False,
) -> Path | list[dict]:
    """Rows shaped like LF's `generated_predictions.jsonl` (`prompt`, `predict` = the chosen letter, `label`
    as LF decodes it) plus `letter_probs` (softmax over the option letters) and `letter_mass` (the letters'
    share of the full next-token distribution, low when the model would not answer with a letter).

    Written as JSONL to `output` (returned) when given, else returned. `bf16` mirrors the predict YAML's
    flag (LF then evaluates under bf16 autocast).
    """
    inputs = load_predict_inputs(
        model_path,
        dataset_dir,
        dataset,
        template,
        adapter=adapter,
        image_max_pixels=image_max_pixels,
        cutoff_len=cutoff_len,
        bf16=bf16,
        device=device,
        trust_remote_code=trust_remote_code,
    )
    return _scored(inputs, batch_size, output)


def score_predict_config(config_text: str, device: str, batch_size: int, output: Path) -> Path:
    """`score_by_logits` on the inputs of a predict stage's rendered YAML: what a study's logits stage runs, so
    the config that keys the stage is the one that builds its inputs."""
    return _scored(predict_inputs(config_text, device), batch_size, output)


def _scored(inputs: PredictInputs, batch_size: int, output: Path | None) -> Path | list[dict]:
    rows = score_inputs(load_lf_model(inputs), inputs, batch_size)
    if output is None:
        return rows
    atomic.write_jsonl(output, rows)
    return output


def logits_stage(
    study: Study,
    run: RunDir,
    model_path: str,
    checkpoint: str,
    dataset: str,
    predict_config: str,
    target: Path,
    upstream: tuple[str, ...],
) -> Stage:
    """Letter-logit scoring on exactly the inputs LF's prediction would see: built from its config, which keys it."""
    stage = stage_name("logits", checkpoint, dataset)
    digest = identity("logits\n" + predict_config, *upstream)
    action = partial(score_predict_config, predict_config, study.hardware.device, study.eval.batch_size, target)
    command = f"forgetkit logits scoring of {model_path} on {dataset} (in process)"
    return Stage(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)
