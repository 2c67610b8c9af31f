"""Prediction files → accuracy: one file, or every checkpoint x dataset of a run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.matchers import get_matcher
from forgetkit.rundir import RunDir


@dataclass(frozen=True)
class Score:
    correct: int
    total: int
    matcher: str

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, **asdict(self)}


def read_predictions(path: Path) -> list[tuple[str, str]]:
    """(predict, label) pairs from LF's `generated_predictions.jsonl` or any JSONL with those keys."""
    if not path.is_file():
        raise ForgetkitError(f"prediction file {path} does not exist")
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ForgetkitError(f"{path}:{number}: not a JSON line ({err.msg})") from None
            if not isinstance(row, dict) or "predict" not in row or "label" not in row:
                raise ForgetkitError(f"{path}:{number}: expected an object with 'predict' and 'label' keys")
            pairs.append((str(row["predict"]), str(row["label"])))
    if not pairs:
        raise ForgetkitError(f"{path} holds no predictions; nothing to score")
    return pairs


def score_file(path: Path, matcher: str = "letter") -> Score:
    match = get_matcher(matcher)
    pairs = read_predictions(path)
    return Score(sum(match(predict, label) for predict, label in pairs), len(pairs), matcher)


def score_run(run: RunDir, matcher: str = "letter") -> dict[str, dict[str, dict]]:
    """{checkpoint: {dataset: score dict}} for every prediction file; saved as `scores.json`."""
    files = run.prediction_files()
    if not files:
        raise ForgetkitError(f"{run.root} has no predictions yet; run `forgetkit launch` first")
    table: dict[str, dict[str, dict]] = {}
    for checkpoint, dataset, path in files:
        table.setdefault(checkpoint, {})[dataset] = score_file(path, matcher).to_dict()
    atomic.write_json(run.scores_path, table)
    return table


def format_table(table: dict[str, dict[str, dict]]) -> str:
    """Accuracy in percent, one row per checkpoint, one column per dataset."""
    datasets = sorted({dataset for row in table.values() for dataset in row})
    header = ["checkpoint", *datasets]
    rows = [
        [checkpoint, *(f"{row[d]['accuracy'] * 100:.2f}" if d in row else "-" for d in datasets)]
        for checkpoint, row in table.items()
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
