"""Datasets as `forgetkit build-data` leaves them, written by its own export path without a CLIP build: what a
study's data check accepts."""

from __future__ import annotations

from pathlib import Path

from datasets_builders import BuildOptions
from datasets_builders.output import export
from forgetkit.records import MCQRecord


def built(folder: Path, *names: str, answers: str = "AB") -> Path:
    """Each of `names` as a two-question dataset in `folder` (LF JSON, records, dataset_info entry, manifest);
    other `answers` make other bytes, as a rebuild from changed sources would."""
    for name in names:
        records = [
            MCQRecord(f"{name}-{i}", f"images/{i}.png", "Which animal?", ("cat", "dog"), answers[i], "cat", name)
            for i in range(2)
        ]
        export(records, name, BuildOptions(None, folder, tsv=False))
    return folder
