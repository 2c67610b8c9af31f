"""What the two rare-domain builders (BSCCM and PitVis, paper App. B.2) share.

Both ask 6-option questions in which some options are always offered and the rest are drawn at
random from the other classes (no CLIP ranking: the paper samples them uniformly), both lay the prompt
out as the authors' released builders do (`--param prompt=paper` for the paper's text), and both
skip-and-count unreadable items unless `--strict`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from datasets_builders.registry import BuildOptions
from forgetkit.errors import ForgetkitError
from forgetkit.records import LETTERS, MCQRecord

N_OPTIONS = 6
ANSWER_SUFFIX = "Please answer with a single letter (A, B, C, D, E or F)"
"""Appended after the options of every rare-domain question, as the paper quotes it (App. B.2: "appended
at the end")."""

INSTRUCTIONS = {"released": f"\n{ANSWER_SUFFIX}.", "paper": ANSWER_SUFFIX}
"""`MCQRecord.instruction` per `--param prompt`: the released builders (MLLM-Forgetting@16d5831,
`data/processors/{microscopy/bsccm,surgical/surgical}_to_vqa.py`) put a blank line between the options and
the suffix and end it with a period; the paper's text shows neither."""

SPLITS = ("train", "test")
"""The paper's two sets per rare domain (its LF datasets are bsccm_vqa_train/_test, surgical_vqa_train/_test)."""


def check_split(split: str, builder: str) -> None:
    if split not in SPLITS:
        raise ForgetkitError(f"{builder} builds --split train or --split test (the paper's two sets), not {split!r}")


def prompt_layout(options: BuildOptions) -> str:
    """The `--param prompt` a rare-domain build asked for, checked."""
    layout = options.param("prompt", "released")
    if layout not in INSTRUCTIONS:
        raise ForgetkitError(f"--param prompt={layout} is not one of: {', '.join(INSTRUCTIONS)}")
    return layout


def sample_options(
    truth: np.ndarray, pool: Sequence[int], fixed: Sequence[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Six options per question: every `fixed` class, the truth, and random other classes from `pool`.

    A truth that is itself a fixed class leaves one more slot to sample. All draws are one array
    op each: a random key per (question, pool class), the truth's key masked, the lowest keys kept;
    then a random permutation of the six. Returns (class per option, answer index), both per question.
    """
    truth = np.asarray(truth, dtype=np.int64)
    pool_ids = np.asarray(pool, dtype=np.int64)
    fixed_ids = np.asarray(fixed, dtype=np.int64)
    known = np.isin(truth, pool_ids) | np.isin(truth, fixed_ids)
    if not known.all():
        raise ValueError(f"class {truth[~known][0]} is neither a fixed option nor in the distractor pool")
    n_sampled = N_OPTIONS - len(fixed_ids)
    if len(pool_ids) - 1 < n_sampled:
        raise ValueError(f"a pool of {len(pool_ids)} classes cannot give {n_sampled} distractors besides the truth")
    keys = rng.random((len(truth), len(pool_ids)))
    keys[pool_ids[None, :] == truth[:, None]] = np.inf
    sampled = pool_ids[np.argsort(keys, axis=1)[:, :n_sampled]]
    in_pool = ~np.isin(truth, fixed_ids)
    sampled[in_pool, -1] = truth[in_pool]
    options = np.concatenate([np.broadcast_to(fixed_ids, (len(truth), len(fixed_ids))), sampled], axis=1)
    options = np.take_along_axis(options, np.argsort(rng.random(options.shape), axis=1), axis=1)
    return options, np.argmax(options == truth[:, None], axis=1)


def mcq_records(
    dataset: str,
    ids: Sequence[str],
    images: Sequence[str],
    questions: Sequence[str],
    class_names: Sequence[str],
    truth: np.ndarray,
    options: np.ndarray,
    answers: np.ndarray,
    layout: str,
) -> list[MCQRecord]:
    """One record per question; `truth` and `options` hold indices into `class_names`; `layout` is a
    `prompt_layout`."""
    return [
        MCQRecord(
            id=f"{dataset}/{item}",
            image=image,
            question=question,
            options=tuple(class_names[c] for c in row),
            answer=LETTERS[answer],
            class_label=class_names[label],
            source=dataset,
            instruction=INSTRUCTIONS[layout],
        )
        for item, image, question, label, row, answer in zip(ids, images, questions, truth, options, answers)
    ]
