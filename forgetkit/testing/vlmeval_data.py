"""Tiny offline TSVs shaped like VLMEvalKit's MMMU_DEV_VAL and VMCBench_DEV, for tests and the demo.

The columns are the ones VLMEvalKit's classes read: `index`, `question`, upper-case option columns,
`answer` (a letter), `image` (base64 PNG, or a Python-list string of them for several images), plus
MMMU's `id`, `split` and `category` and VMCBench's `category` (one of its 20 source datasets; its report
needs all 20). The MMMU TSV also has an open question (no options, a free-text answer, which VLMEvalKit's
MMMU preprocessing turns into a two-option one), a two-image question with `<image 1>`/`<image 2>`
markers, and a few `dev` rows, so every MMMU path VLMEvalKit takes is exercised. Default names avoid
`MMMU_DEV_VAL`, whose md5 VLMEvalKit pins.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

import numpy as np

from forgetkit import atomic
from forgetkit.stages.vlmeval_eval import MMMU_SPLIT, VMCBENCH_CATEGORIES
from forgetkit.testing.synthetic import COLORS, SHAPES, draw

TINY_MMMU = "MMMU_DEV_VAL_tiny"
TINY_VMCBENCH = "VMCBench_DEV_tiny"
OPTIONS = ("A", "B", "C", "D")


def _png_base64(name: str, rng: np.random.Generator, size: int) -> str:
    buffer = io.BytesIO()
    draw(name, rng, size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shape_question(rng: np.random.Generator, size: int) -> tuple[str, list[str], str]:
    """A drawn shape, its four colour options and the correct letter."""
    colors = [str(c) for c in rng.permutation(list(COLORS))]
    answer = int(rng.integers(len(OPTIONS)))
    image = _png_base64(f"{colors[answer]} {SHAPES[int(rng.integers(len(SHAPES)))]}", rng, size)
    return image, colors, OPTIONS[answer]


def _write_tsv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with atomic.atomic_open(path) as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_mmmu_tsv(lmu_data: Path, name: str = TINY_MMMU, n_val: int = 6, seed: int = 0, size: int = 56) -> Path:
    """`lmu_data/<name>.tsv`: `n_val` validation rows (last two: a two-image and an open question), 2 dev rows."""
    rng = np.random.default_rng(seed)
    header = ["index", "id", "question", *OPTIONS, "answer", "image", "split", "category"]
    rows: list[list[object]] = []
    for n in range(n_val + 2):
        split = MMMU_SPLIT if n < n_val else "dev"
        image, options, answer = _shape_question(rng, size)
        question = "<image 1> What colour is the shape?"
        if n == n_val - 2:
            second, _, _ = _shape_question(rng, size)
            image = str([image, second])
            question = "<image 1> and <image 2>: what colour is the shape in the first picture?"
        elif n == n_val - 1:
            options, answer = ["", "", "", ""], "4"
            question = "<image 1> How many corners does a square have?"
        rows.append([n + 1, f"{split}_Art_{n + 1}", question, *options, answer, image, split, "Art"])
    return _write_tsv(Path(lmu_data) / f"{name}.tsv", header, rows)


def write_vmcbench_tsv(lmu_data: Path, name: str = TINY_VMCBENCH, seed: int = 0, size: int = 56) -> Path:
    """`lmu_data/<name>.tsv`: one colour question per VMCBench category (all 20)."""
    rng = np.random.default_rng(seed)
    header = ["index", "question", *OPTIONS, "answer", "category", "image"]
    rows = []
    for n, category in enumerate(VMCBENCH_CATEGORIES):
        image, options, answer = _shape_question(rng, size)
        rows.append([n, "What colour is the shape?", *options, answer, category, image])
    return _write_tsv(Path(lmu_data) / f"{name}.tsv", header, rows)
