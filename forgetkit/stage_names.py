"""How a stage is named: its kind, then what it acts on (`train llm-full`, `evaluate zero-shot` and its set
`predict zero-shot imagenet_vqa_val`, `vlmeval llm-full/checkpoint-30`). The run's state, logs, configs and
Slurm jobs are keyed by these names; this module writes and reads them, nowhere else does."""

from __future__ import annotations

KINDS = ("train", "export", "evaluate", "vlmeval", "probe")
"""Every kind of stage a study plans (`forgetkit.study`, `forgetkit.evals`)."""
SET_KINDS = ("predict", "logits")
"""How an evaluate stage records each of its eval sets in the run's state (`predict CHECKPOINT DATASET`)."""


def stage_name(kind: str, *subject: str) -> str:
    if kind not in KINDS + SET_KINDS:
        raise ValueError(f"stage kind {kind!r} unknown; one of {', '.join(KINDS + SET_KINDS)}")
    return " ".join((kind, *subject))


def stage_kind(name: str) -> str:
    return name.partition(" ")[0]


def stage_subject(name: str) -> str:
    """What the stage acts on: a recipe or sequence label (train), a checkpoint (evaluate, vlmeval, probe), a
    merged checkpoint (export), or `CHECKPOINT DATASET` (an evaluate stage's predict, logits sets)."""
    return name.partition(" ")[2]
