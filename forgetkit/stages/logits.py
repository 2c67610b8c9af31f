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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.recipes import Hardware
from forgetkit.render import EVAL_BATCH_SIZE, DataSpec, render_predict
from forgetkit.stages.lf_inprocess import PredictArgs, Session, scratch_parse

OPTION_LINE = re.compile(r"^([A-Z])\.\s", re.MULTILINE)


@dataclass
class PredictInputs:
    """What LF's predict stage would feed the model, and what it would write beside each prediction.

    `dataset` is LF's predict-mode eval dataset; `prompts` and `labels` are decoded as LF's
    `save_predictions` decodes them; `letters` are each row's option letters; `session` holds the tokenizer
    and loads the model.
    """

    name: str
    dataset: Any
    session: Session
    collator: Any
    prompts: list[str]
    labels: list[str]
    letters: list[list[str]]
    device: str
    bf16: bool

    @property
    def tokenizer(self) -> Any:
        return self.session.tokenizer

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.dataset["input_ids"]]

    def length_order(self) -> list[int]:
        """Row indices shortest first, so left padding stays short."""
        lengths = self.lengths()
        return sorted(range(len(lengths)), key=lengths.__getitem__)


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
    """A predict stage's YAML parsed by LF, its eval dataset and generation collator built, in this process.

    `multiple_choice` refuses rows without option lines; the drift probe turns it off for its caption prompts.
    """
    args = scratch_parse(config_text, device)
    return inputs_of(Session(args), args, multiple_choice)


def inputs_of(session: Session, args: PredictArgs, multiple_choice: bool = True) -> PredictInputs:
    """`args`'s eval set through `session`'s tokenizer (and later its model), so many sets share one load."""
    eval_rows = session.eval_dataset(args)
    collator = session.collator()
    tokenizer = session.tokenizer
    columns = eval_rows.select_columns(["input_ids", "labels"]).to_dict()
    prompts = tokenizer.batch_decode(columns["input_ids"], skip_special_tokens=False)
    letters = [option_letters(prompt) for prompt in prompts]
    for index, found in enumerate(letters):
        if multiple_choice and len(found) < 2:
            raise ForgetkitError(
                f"{args.dataset} row {index}: no 'A. …', 'B. …' option lines in the prompt; "
                "logits scoring needs letter-answer multiple-choice rows"
            )
    labels = tokenizer.batch_decode(columns["labels"], skip_special_tokens=True)
    device = args.model_args.device_map[""]
    return PredictInputs(
        args.dataset, eval_rows, session, collator, prompts, labels, letters, device, bool(args.config["bf16"])
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
    return inputs.session.model


def batches(
    inputs: PredictInputs,
    batch_size: int,
    desc: str,
    prepare: Callable[[int, dict], dict] | None = None,
    order: list[int] | None = None,
    model: Any = None,
) -> Iterator[tuple[list[int], dict]]:
    """Dataset indices and LF's collated batch of those rows, on the device, without labels.

    Rows go in `order`, by default `length_order` so left padding stays short; `prepare(index, row)` may edit a
    row before collation. With `model`, LF's collator adds that model's position ids (`Session.collator`): a
    forward pass then sees a Qwen-VL's image tokens at their M-RoPE positions, as in training.
    """
    import torch

    collator = inputs.collator if model is None else inputs.session.collator(model)
    order = inputs.length_order() if order is None else order
    for start in tqdm(range(0, len(order), batch_size), desc=f"{desc} {inputs.name}", unit="batch", leave=False):
        chunk = order[start : start + batch_size]
        rows = [inputs.dataset[index] for index in chunk]
        if prepare is not None:
            rows = [prepare(index, row) for index, row in zip(chunk, rows)]
        batch = collator(rows)
        batch.pop("labels")
        yield chunk, {key: value.to(inputs.device) if torch.is_tensor(value) else value for key, value in batch.items()}


def autocast(inputs: PredictInputs) -> Any:
    """bf16 autocast when the predict YAML asks for bf16, as LF evaluates then; a no-op otherwise."""
    import torch

    return torch.autocast(torch.device(inputs.device).type, dtype=torch.bfloat16, enabled=inputs.bf16)


def score_inputs(
    model: Any, inputs: PredictInputs, batch_size: int = EVAL_BATCH_SIZE, order: list[int] | None = None
) -> list[dict]:
    """One forward pass per batch; each row's letter is the argmax of the next-token logits over its letters.

    Rows are batched in `order` (by default `length_order`, the whole set) and returned in dataset order.
    """
    import torch

    every_letter = sorted({letter for found in inputs.letters for letter in found})
    token_id = dict(zip(every_letter, letter_token_ids(inputs.tokenizer, every_letter)))
    order = inputs.length_order() if order is None else order
    results: dict[int, dict] = {}
    with torch.no_grad(), autocast(inputs):
        for chunk, batch in batches(inputs, batch_size, "logits", order=order, model=model):
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
    return [results[index] for index in sorted(results)]


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


def _scored(inputs: PredictInputs, batch_size: int, output: Path | None) -> Path | list[dict]:
    rows = score_inputs(load_lf_model(inputs), inputs, batch_size)
    if output is None:
        return rows
    atomic.write_jsonl(output, rows)
    return output
