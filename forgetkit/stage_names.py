"""How a stage is named: its kind, then what it acts on (`train llm-full`, `predict zero-shot imagenet_vqa_val`,
`vlmeval llm-full/checkpoint-30`). The run's state, logs, configs and Slurm jobs are keyed by these names;
this module writes and reads them, nowhere else does."""

from __future__ import annotations

KINDS = ("train", "export", "predict", "logits", "vlmeval", "probe")
"""Every kind of stage a study plans (`forgetkit.evals`)."""


def stage_name(kind: str, *subject: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"stage kind {kind!r} unknown; one of {', '.join(KINDS)}")
    return " ".join((kind, *subject))


def stage_kind(name: str) -> str:
    return name.partition(" ")[0]


def stage_subject(name: str) -> str:
    """What the stage acts on: a recipe or sequence label (train), a checkpoint (vlmeval, probe), a merged
    checkpoint (export), or `CHECKPOINT DATASET` (predict, logits)."""
    return name.partition(" ")[2]
