"""Prediction files → accuracy: one file, or every checkpoint x dataset of a run directory."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.matchers import get_matcher
from forgetkit.rundir import ZERO_SHOT, RunDir


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


def read_predictions(path: Path) -> list[tuple[str, str, bool | None]]:
    """(predict, label, verdict) from LF's `generated_predictions.jsonl` or any JSONL with those keys; the
    verdict is a judge's `correct` where the file carries one (VLMEvalKit's benchmarks), else None."""
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
            verdict = row.get("correct")
            pairs.append((str(row["predict"]), str(row["label"]), verdict if isinstance(verdict, bool) else None))
    if not pairs:
        raise ForgetkitError(f"{path} holds no predictions; nothing to score")
    return pairs


def score_items(path: Path, matcher: str = "letter", skip_bad: bool = False) -> list[float]:
    """Each item's credit in file order under exactly `score_file`'s rules, for resampling (bootstrap intervals).

    Credit is True/False for every matcher but `mllmcl-sci` on "Which states" questions, which earns the
    fraction of states found; a file judged by VLMEvalKit gives its own verdicts. `skip_bad` is accepted
    for the reader's malformed-line policy (see `score_file`)."""
    match = get_matcher(matcher)
    rows = read_predictions(path)
    if all(verdict is not None for _, _, verdict in rows):
        return [bool(verdict) for _, _, verdict in rows]
    return [match(predict, label) for predict, label, _ in rows]


def score_file(path: Path, matcher: str = "letter") -> Score:
    """Accuracy of one file by `matcher`; a file judged by VLMEvalKit keeps its verdicts (matcher `vlmevalkit`)."""
    rows = read_predictions(path)
    judged = all(verdict is not None for _, _, verdict in rows)
    items = score_items(path, matcher)
    return Score(sum(items), len(items), "vlmevalkit" if judged else matcher)


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


def quadrant_means(table: dict[str, dict[str, dict]], quadrants: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    """{checkpoint: {quadrant: mean accuracy of its datasets}} (PROTOCOL.md §2), for quadrants fully scored."""
    means: dict[str, dict[str, float]] = {}
    for checkpoint, row in table.items():
        for quadrant, datasets in quadrants.items():
            if datasets and all(d in row for d in datasets):
                means.setdefault(checkpoint, {})[quadrant] = sum(row[d]["accuracy"] for d in datasets) / len(datasets)
    return means


def format_quadrants(means: dict[str, dict[str, float]], baseline: str = ZERO_SHOT) -> str:
    """Quadrant accuracy in percent with the change from `baseline` in percentage points, as the paper reports."""
    quadrants = list(dict.fromkeys(q for row in means.values() for q in row))
    base = means.get(baseline, {})
    rows = []
    for checkpoint, row in means.items():
        cells = []
        for quadrant in quadrants:
            if quadrant not in row:
                cells.append("-")
            elif checkpoint == baseline or quadrant not in base:
                cells.append(f"{row[quadrant] * 100:.2f}")
            else:
                cells.append(f"{row[quadrant] * 100:.2f} ({(row[quadrant] - base[quadrant]) * 100:+.2f})")
        rows.append([checkpoint, *cells])
    return _columns(["checkpoint", *quadrants], rows)


def format_table(table: dict[str, dict[str, dict]]) -> str:
    """Accuracy in percent, one row per checkpoint, one column per dataset."""
    datasets = sorted({dataset for row in table.values() for dataset in row})
    header = ["checkpoint", *datasets]
    rows = [
        [checkpoint, *(f"{row[d]['accuracy'] * 100:.2f}" if d in row else "-" for d in datasets)]
        for checkpoint, row in table.items()
    ]
    return _columns(header, rows)


def continual_matrix(table: dict[str, dict[str, dict]], sequence: dict) -> list[list[float | None]]:
    """Accuracy after each stage (rows) on each task's test set (columns); None where not evaluated
    (a task not yet seen, or a stage not run yet)."""
    return [
        [table.get(stage, {}).get(test, {}).get("accuracy") for test in sequence["tests"]]
        for stage in sequence["stages"]
    ]


def format_run(run: RunDir, table: dict[str, dict[str, dict]]) -> str:
    """A run's report: every checkpoint x dataset, the quadrant means if the study grouped its datasets,
    and each continual sequence's task x stage accuracy matrix."""
    text = format_table(table)
    quadrants = run.quadrants()
    if quadrants:
        text += "\n\nquadrant means, % (change vs zero-shot in pp)\n" + format_quadrants(
            quadrant_means(table, quadrants)
        )
    for name, sequence in run.continual().items():
        rows = [
            [f"after {task}", *("-" if acc is None else f"{acc * 100:.2f}" for acc in accuracies)]
            for task, accuracies in zip(sequence["tasks"], continual_matrix(table, sequence))
        ]
        text += f"\n\ncontinual {name} ({sequence['strategy']}), accuracy % on each task's test set\n"
        text += _columns(["stage", *sequence["tasks"]], rows)
    return text


def _columns(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
