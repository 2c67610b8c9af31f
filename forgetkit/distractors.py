"""CLIP-hard distractors (paper App. B.1): given image and class-name embeddings (`clip_encoder`),
take for every image the 5 most similar wrong classes and sample 3 of them.

Class names are grouped by their case-folded text before ranking, so two classes that share a
name (ImageNet has "missile" and "sunglasses" twice) are one candidate, and a class named like
the truth is never a distractor: no question can show two options with the same text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

POOL = 5
PICK = 3


def group_names(class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Merge classes whose names differ only in case or spacing: (group names, group id per class)."""
    groups: dict[str, int] = {}
    names: list[str] = []
    group_of_class = np.empty(len(class_names), dtype=np.int64)
    for index, name in enumerate(class_names):
        key = " ".join(name.split()).casefold()
        if key not in groups:
            groups[key] = len(names)
            names.append(" ".join(name.split()))
        group_of_class[index] = groups[key]
    return names, group_of_class


def pick_distractors(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    labels: np.ndarray,
    group_of_class: np.ndarray,
    rng: np.random.Generator,
    pool: int = POOL,
    pick: int = PICK,
    chunk: int = 8192,
) -> np.ndarray:
    """For each image, `pick` name groups sampled from the `pool` most CLIP-similar wrong groups.

    One chunked tensor op per `chunk` images: similarity, max over classes sharing a name, mask the
    truth's group, top-`pool`, then a seeded random choice of `pick` among them.
    """
    n_groups = int(group_of_class.max()) + 1
    if n_groups - 1 < pick:
        raise ForgetkitError(
            f"only {n_groups} distinct class names: need at least {pick + 1} to make {pick} distractors"
        )
    if n_groups - 1 < pool:
        log.warning("only %d wrong class names per image: sampling distractors from all of them", n_groups - 1)
        pool = n_groups - 1
    groups = torch.from_numpy(group_of_class)
    truth_groups = torch.from_numpy(group_of_class[labels])
    sample_keys = torch.from_numpy(rng.random((len(labels), pool)))
    out = np.empty((len(labels), pick), dtype=np.int64)
    for start in range(0, len(labels), chunk):
        stop = min(start + chunk, len(labels))
        sims = image_emb[start:stop] @ text_emb.T
        by_group = torch.full((stop - start, n_groups), -torch.inf).scatter_reduce(
            1, groups.expand(stop - start, -1), sims, reduce="amax"
        )
        by_group.scatter_(1, truth_groups[start:stop, None], -torch.inf)
        top = by_group.topk(pool, dim=1).indices
        chosen = sample_keys[start:stop].argsort(dim=1)[:, :pick]
        out[start:stop] = top.gather(1, chosen).numpy()
    return out


def place_answers(
    truth: np.ndarray, distractors: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Insert each truth at a uniformly random position among its distractors: (options, answer index)."""
    n, n_distractors = distractors.shape
    positions = rng.integers(0, n_distractors + 1, size=n)
    options = np.empty((n, n_distractors + 1), dtype=np.int64)
    slot = np.arange(n_distractors + 1)[None, :]
    before = slot < positions[:, None]
    after = slot > positions[:, None]
    options[before] = distractors[:, :n_distractors][before[:, :n_distractors]]
    options[after] = distractors[after[:, 1:]]
    options[np.arange(n), positions] = truth
    return options, positions
