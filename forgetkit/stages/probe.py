"""Drift probe: how far a checkpoint's next-token distribution moved from its base model's on held-out prompts.

"How to Teach Large Multimodal Models New Skills" (arXiv 2510.08564) traces forgetting after narrow
fine-tuning to a shift in the output token distribution, visible as a counting bias: a model tuned to count
answers other questions with numbers. For letter-answer MCQ fine-tuning the analogue is the probability mass
moved onto the option letters on prompts that want no letter (captions). The probe measures it, with the
KL divergence KL(base || checkpoint), at the first answer position of each prompt: one forward pass per prompt
and model on the inputs LF's predict stage builds (`forgetkit.stages.logits`), no generation, so it is cheap
enough to run on every checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.render import EVAL_BATCH_SIZE, DataSpec
from forgetkit.stage_names import stage_name
from forgetkit.stages.logits import (
    PredictInputs,
    autocast,
    batches,
    letter_token_ids,
    load_lf_model,
    load_predict_inputs,
)
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    from forgetkit.spec import Study
import json

from forgetkit.models import ModelSpec
from forgetkit.rundir import RunDir

ANSWER_TOKENS = ("A", "B", "C", "D")


def checkpoint_model(base: str | Path, checkpoint: str | Path) -> tuple[str, Path | None]:
    """(model path, adapter) LF loads for `checkpoint`: itself if it is a full model, else `base` + the adapter."""
    path = Path(checkpoint)
    if (path / "adapter_config.json").is_file():
        return str(base), path
    if (path / "config.json").is_file():
        return str(path), None
    raise ForgetkitError(
        f"checkpoint {checkpoint} is neither a model directory (config.json) nor a LoRA adapter "
        "(adapter_config.json); pass a saved checkpoint directory"
    )


def _check_comparable(base: PredictInputs, tuned: PredictInputs, checkpoint: str | Path) -> None:
    """Distributions are compared token id by token id, which means nothing across different vocabularies."""
    base_vocab, tuned_vocab = base.tokenizer.get_vocab(), tuned.tokenizer.get_vocab()
    if base_vocab != tuned_vocab:
        raise ForgetkitError(
            f"checkpoint {checkpoint} has a different tokenizer ({len(tuned_vocab)} tokens) from its base "
            f"({len(base_vocab)} tokens); pass a checkpoint fine-tuned from this base model"
        )
    if base.dataset["input_ids"] != tuned.dataset["input_ids"]:
        raise ForgetkitError(
            f"checkpoint {checkpoint} and its base tokenize the prompts of {base.name} differently; "
            "pass a checkpoint fine-tuned from this base model with its tokenizer"
        )


def _output_rows(model: Any) -> int:
    return model.get_output_embeddings().weight.shape[0]


def probe(
    base: str | Path,
    checkpoint: str | Path,
    dataset_dir: str | Path,
    dataset: str,
    template: str,
    *,
    image_max_pixels: int = DataSpec.image_max_pixels,
    cutoff_len: int = DataSpec.cutoff_len,
    bf16: bool = False,
    device: str = "cpu",
    batch_size: int = EVAL_BATCH_SIZE,
    answer_tokens: Sequence[str] = ANSWER_TOKENS,
    positions: int = 1,
    checkpoint_base: str | Path | None = None,
    output: str | Path | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Drift of `checkpoint` from `base` on the held-out set `dataset`. `checkpoint` is a full model directory or
    a LoRA adapter directory, applied to `checkpoint_base` if given (IncLoRA's later tasks train on a merged
    model), else to `base`.

    Per prompt, at the first answer position: `kl` = KL(base || checkpoint) in nats, `answer_mass_*` = the
    probability both models put on the first tokens of `answer_tokens` (the fine-tuning task's answers) and
    its shift (checkpoint minus base), `top_*` = each model's most likely token and whether they agree.
    `positions` > 1 adds `kl_first_k`, the KL averaged over the first `positions` positions of the reference
    answer fed in (teacher forcing; `k` of them where the answer is shorter). The summary holds the means
    (`top_token_agreement` for `top_same`); written as JSON to `output` when given.
    """
    import torch

    if positions < 1 or batch_size < 1:
        raise ForgetkitError(f"positions ({positions}) and batch size ({batch_size}) must be at least 1")
    model_path, adapter = checkpoint_model(base if checkpoint_base is None else checkpoint_base, checkpoint)
    settings = {
        "image_max_pixels": image_max_pixels,
        "cutoff_len": cutoff_len,
        "bf16": bf16,
        "device": device,
        "trust_remote_code": trust_remote_code,
    }
    base_inputs = load_predict_inputs(base, dataset_dir, dataset, template, multiple_choice=False, **settings)
    tuned_inputs = load_predict_inputs(
        model_path, dataset_dir, dataset, template, adapter=adapter, multiple_choice=False, **settings
    )
    _check_comparable(base_inputs, tuned_inputs, checkpoint)
    answer_ids = letter_token_ids(base_inputs.tokenizer, list(answer_tokens))
    base_model, tuned_model = load_lf_model(base_inputs), load_lf_model(tuned_inputs)
    if _output_rows(base_model) != _output_rows(tuned_model):
        raise ForgetkitError(
            f"checkpoint {checkpoint} predicts over {_output_rows(tuned_model)} tokens, its base over "
            f"{_output_rows(base_model)}; pass a checkpoint fine-tuned from this base model"
        )

    answers = list(base_inputs.dataset["labels"])
    spans = [max(1, min(positions, len(answer))) for answer in answers]

    def teacher_forced(index: int, row: dict) -> dict:
        fed = answers[index][: spans[index] - 1]
        return {**row, "input_ids": row["input_ids"] + fed, "attention_mask": row["attention_mask"] + [1] * len(fed)}

    per_prompt: list[dict] = [{}] * len(answers)
    tokenizer = base_inputs.tokenizer
    with torch.no_grad(), autocast(base_inputs):
        for chunk, batch in batches(base_inputs, batch_size, "probe", teacher_forced, model=base_model):
            base_lp = base_model(**batch, logits_to_keep=positions).logits.float().log_softmax(-1)
            tuned_lp = tuned_model(**batch, logits_to_keep=positions).logits.float().log_softmax(-1)
            kl = (base_lp.exp() * (base_lp - tuned_lp)).sum(-1)
            for row, index in enumerate(chunk):
                first = positions - spans[index]  # left padding: each row's fed answer ends the window
                base_mass = float(base_lp[row, first, answer_ids].exp().sum())
                tuned_mass = float(tuned_lp[row, first, answer_ids].exp().sum())
                base_top, tuned_top = int(base_lp[row, first].argmax()), int(tuned_lp[row, first].argmax())
                per_prompt[index] = {
                    "index": index,
                    "label": base_inputs.labels[index],
                    "kl": float(kl[row, first]),
                    "answer_mass_base": base_mass,
                    "answer_mass_checkpoint": tuned_mass,
                    "answer_mass_shift": tuned_mass - base_mass,
                    "top_base": tokenizer.decode(base_top),
                    "top_checkpoint": tokenizer.decode(tuned_top),
                    "top_same": base_top == tuned_top,
                }
                if positions > 1:
                    per_prompt[index]["kl_first_k"] = float(kl[row, first:].mean())
                    per_prompt[index]["k"] = spans[index]

    def mean(key: str) -> float:
        return sum(row[key] for row in per_prompt) / len(per_prompt)

    result: dict = {
        "base": str(base),
        "checkpoint": str(checkpoint),
        "adapter": adapter is not None,
        "dataset": dataset,
        "rows": len(per_prompt),
        "answer_tokens": list(answer_tokens),
        "positions": positions,
        "kl": mean("kl"),
        "answer_mass_base": mean("answer_mass_base"),
        "answer_mass_checkpoint": mean("answer_mass_checkpoint"),
        "answer_mass_shift": mean("answer_mass_shift"),
        "top_token_agreement": mean("top_same"),
    }
    if positions > 1:
        result["kl_first_k"] = mean("kl_first_k")
    result["per_prompt"] = per_prompt
    if output is not None:
        atomic.write_json(output, result)
    return result


def probe_stage(
    study: Study,
    run: RunDir,
    base: ModelSpec,
    model_path: str,
    checkpoint: str,
    adapter: Path | None,
    upstream: tuple[str, ...],
) -> Stage:
    """Drift of the checkpoint (a full model, or an adapter on `model_path`) from the study's base model."""
    settings = {
        "base": base.path,
        "checkpoint": str(adapter or model_path),
        "checkpoint_base": model_path if adapter else None,
        "dataset_dir": study.data.dataset_dir,
        "dataset": study.eval.probe,
        "template": base.template,
        "image_max_pixels": study.data.image_max_pixels,
        "cutoff_len": study.data.cutoff_len,
        "bf16": study.hardware.bf16,
        "device": study.hardware.device,
        "batch_size": study.eval.batch_size,
        "trust_remote_code": study.trust_remote_code,
    }
    stage = stage_name("probe", checkpoint)
    target = run.probe(checkpoint)
    digest = identity(json.dumps(settings, sort_keys=True), *upstream)
    action = partial(
        probe,
        settings["base"],
        settings["checkpoint"],
        settings["dataset_dir"],
        settings["dataset"],
        base.template,
        image_max_pixels=settings["image_max_pixels"],
        cutoff_len=settings["cutoff_len"],
        bf16=settings["bf16"],
        device=settings["device"],
        batch_size=settings["batch_size"],
        checkpoint_base=settings["checkpoint_base"],
        output=target,
        trust_remote_code=settings["trust_remote_code"],
    )
    command = f"forgetkit probe {base.path} {settings['checkpoint']} --dataset {study.eval.probe} (in process)"
    return Stage(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)
