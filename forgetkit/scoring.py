"""Prediction files → accuracy: one file, or every checkpoint x dataset of a run directory.

A prediction file is LF's `generated_predictions.jsonl` (`prompt`, `predict`, `label`), VLMEvalKit's
per-item results (`prediction`, `answer`, `hit`: its `*_result.xlsx`/`.csv`/`.tsv`, or the items JSONL a
run directory keeps with `correct`), or JSONL (one object a line) / a `.json` list of objects with `predict`
and `label`. A file whose every row carries a judge's verdict (`correct` or `hit`) is scored by it under the
letter matcher; one whose rows disagree on having one is an error, as is a row with an empty label (nothing
to be right about: an empty answer would match it).

Some matchers need what the prediction rows lack: a sidecar JSONL written by the dataset builders next to
the data, row-aligned with the LF JSON and so with LF's predictions (`<dataset>.records.jsonl`: the
planted `class_option` of imagewikiqa_classlabel; `<dataset>.meta.jsonl`: MLLM-CL's question text), lends
each prediction row its fields. Its `answer` must equal the row's label, which catches a sidecar of
another dataset or order.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forgetkit import atomic
from forgetkit.built_data import VLMEVAL
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.matchers import AUTO, MissingField, get_matcher, resolve
from forgetkit.rundir import RunDir
from forgetkit.stage_names import stage_kind, stage_subject

VERDICT_KEYS = ("correct", "hit")
"""A judge's verdict: the items JSONL a run keeps for VLMEvalKit's benchmarks, VLMEvalKit's own tables."""
TABLE_SUFFIXES = (".xlsx", ".csv", ".tsv")
_VERDICT_TEXT = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class Score:
    correct: float
    """Credit summed over the items: a count, fractional only under `mllmcl-sci`."""
    total: int
    matcher: str
    skipped: int = 0
    """Malformed lines left out with `skip_bad` (not in `total`)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def to_dict(self) -> dict:
        row = {"accuracy": self.accuracy, "correct": self.correct, "total": self.total, "matcher": self.matcher}
        return row | {"skipped": self.skipped} if self.skipped else row


@dataclass(frozen=True)
class Predictions:
    """A prediction file's usable rows as parallel lists (at millions of rows, one extra object per row is
    what reading costs): the model's outputs, the truths, a judge's verdicts (None where a row has none),
    the whole rows (with their sidecar's fields), and the line numbers, so an error can point at a row."""

    path: Path
    unit: str
    """How a location is written: `path:line` (JSONL), `path item N` (JSON list), `path row N` (tables)."""
    predicts: list[str]
    labels: list[str]
    verdicts: list[bool | None]
    rows: list[Mapping[str, Any]]
    numbers: list[int]
    skipped: int

    def where(self, index: int) -> str:
        return f"{self.path}{self.unit}{self.numbers[index]}"


class BadRow(ValueError):
    """What is wrong with one row; the reader prefixes where it is."""


_MISSING = object()
_SCAN = json.JSONDecoder().scan_once
_JSON_SPACE = " \t\n\r"


def read_predictions(path: Path, skip_bad: bool = False, sidecar: Path | None = None) -> Predictions:
    """Every prediction in `path`, in file order. A malformed row is an error naming file and line, or with
    `skip_bad` is left out and counted; a file with no rows is an error, not 0 %."""
    path = Path(path)
    unit, numbers, values = _raw_rows(path)
    if not values:
        raise ForgetkitError(f"{path} holds no predictions; nothing to score")
    extras = _read_sidecar(Path(sidecar), len(values), path) if sidecar is not None else None
    predicts, labels, verdicts, rows, kept = [], [], [], [], []
    for index, value in enumerate(values):
        try:
            predict, label, verdict = _fields(value)
        except BadRow as err:
            if not skip_bad:
                raise ForgetkitError(f"{path}{unit}{numbers[index]}: {err}; fix the line or pass --skip-bad") from None
            continue
        if extras is not None:
            value = _join(value, label, extras[index], f"{path}{unit}{numbers[index]}", f"{sidecar} row {index + 1}")
        predicts.append(predict)
        labels.append(label)
        verdicts.append(verdict)
        rows.append(value)
        kept.append(numbers[index])
    if not rows:
        raise ForgetkitError(f"{path}: all {len(values)} lines are malformed; nothing to score")
    _check_verdicts(path, unit, verdicts, kept)
    return Predictions(path, unit, predicts, labels, verdicts, rows, kept, len(values) - len(rows))


def _raw_rows(path: Path) -> tuple[str, list[int], list[object]]:
    """(location unit, row numbers, parsed rows or the BadRow each is) for every non-blank line, list item
    or table row."""
    if not path.is_file():
        raise ForgetkitError(f"prediction file {path} does not exist")
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _table_rows(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ForgetkitError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if path.suffix.lower() == ".json":
        return _json_list_rows(path, text)
    numbers, values = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            numbers.append(number)
            values.append(_json_line(line))
    return ":", numbers, values


def _json_line(line: str) -> object:
    """`json.loads(line)`, through json's C scanner directly (2x faster per line), or the BadRow it is."""
    text = line.strip(_JSON_SPACE)
    try:
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError):
        pass
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        return BadRow(f"not a JSON line ({err.msg})")


def _json_list_rows(path: Path, text: str) -> tuple[str, list[int], list[object]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ForgetkitError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(rows, list):
        raise ForgetkitError(f"{path} must hold a JSON list of prediction objects or one object per line")
    return " item ", list(range(1, len(rows) + 1)), rows


def _table_rows(path: Path) -> tuple[str, list[int], list[object]]:
    """VLMEvalKit's result tables; cells are kept as written (no 'NA' → NaN), row numbers count the header."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".xlsx":
            frame = pd.read_excel(path, dtype=object, keep_default_na=False)
        else:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (OSError, ValueError, ImportError) as err:
        raise ForgetkitError(f"{path} cannot be read as a {path.suffix[1:]} table ({err})") from None
    rows = frame.to_dict("records")
    return " row ", list(range(2, len(rows) + 2)), rows


def _fields(value: object) -> tuple[str, str, bool | None]:
    """(predict, label, verdict) of one parsed row; LF's and VLMEvalKit's key names both work."""
    if type(value) is not dict:
        if isinstance(value, BadRow):
            raise value
        raise BadRow(f"expected an object with 'predict' and 'label' keys, found a {type(value).__name__}")
    predict = value.get("predict", value.get("prediction", _MISSING))
    label = value.get("label", value.get("answer", _MISSING))
    if predict is _MISSING or label is _MISSING:
        raise BadRow("expected an object with 'predict' and 'label' keys (VLMEvalKit's: 'prediction', 'answer')")
    if type(predict) is not str:
        predict = _text(predict, "predict" if "predict" in value else "prediction")
    if type(label) is not str:
        label = _text(label, "label" if "label" in value else "answer")
    if not label.strip():
        raise BadRow(f"{'label' if 'label' in value else 'answer'!r} is empty, nothing to score against")
    verdict = _verdict(value) if "correct" in value or "hit" in value else None
    return predict, label, verdict


def _text(value: object, key: str) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    raise BadRow(f"{key!r} is {json.dumps(value) if value is None else type(value).__name__}, not text")


def _verdict(row: dict) -> bool | None:
    """A judge's verdict: JSON true/false, or VLMEvalKit's `hit` as 1/0 (number or text)."""
    for key in VERDICT_KEYS:
        value = row.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _VERDICT_TEXT:
            return _VERDICT_TEXT[value.strip().lower()]
        raise BadRow(f"{key!r} is {value!r}, not a verdict (true/false or 1/0)")
    return None


def _check_verdicts(path: Path, unit: str, verdicts: list[bool | None], numbers: list[int]) -> None:
    """A file is judged throughout or not at all: which half of a mixed one is right cannot be told."""
    if None not in verdicts or verdicts.count(None) == len(verdicts):
        return
    unjudged = verdicts[0] is None
    index = next(i for i, verdict in enumerate(verdicts) if (verdict is None) != unjudged)
    this, first = ("a", "none") if unjudged else ("no", "one")
    row = f"{unit.strip(' :') or 'line'} {numbers[0]}"
    raise ForgetkitError(
        f"{path}{unit}{numbers[index]}: {this} verdict ('correct' or 'hit') where {row} has {first}; all rows have "
        "one or none does: fix the file (in a run: delete it and launch the study again)"
    )


def _read_sidecar(path: Path, count: int, predictions: Path) -> list[dict]:
    if not path.is_file():
        raise ForgetkitError(f"sidecar {path} does not exist; it is written next to the data by `forgetkit build-data`")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ForgetkitError(f"{path}:{number}: not a JSON line ({err.msg}); rebuild the data") from None
            if not isinstance(row, dict):
                raise ForgetkitError(f"{path}:{number}: expected an object; rebuild the data")
            rows.append(row)
    if len(rows) != count:
        raise ForgetkitError(
            f"sidecar {path} has {len(rows)} rows for the {count} predictions in {predictions}; "
            "give the sidecar of the dataset these predictions were made on"
        )
    return rows


def _join(row: dict, label: str, extra: dict, where: str, extra_where: str) -> dict:
    """The row with its sidecar's fields (the row's own win), once the sidecar's answer is the row's label."""
    answer = extra.get("answer")
    if answer is not None and str(answer).strip() != label.strip():
        raise ForgetkitError(
            f"{where}: label {label.strip()!r} but {extra_where} answers {str(answer).strip()!r}; "
            "the sidecar is not of these predictions (another dataset, or another order)"
        )
    return {**extra, **row}


@dataclass(frozen=True)
class ScoredItems:
    """Each scored item's credit and label, in file order, with the matcher that scored them."""

    credits: list[float]
    labels: list[str]
    matcher: str
    skipped: int


def scored_items(
    path: Path, matcher: str = "letter", skip_bad: bool = False, sidecar: Path | None = None
) -> ScoredItems:
    """`score_file`'s work item by item, from one read of the file (the report resamples the credits and pairs
    files by their labels)."""
    name = resolve(matcher, Path(path).stem)
    found = read_predictions(path, skip_bad, sidecar)
    if name == "letter" and None not in found.verdicts:
        return ScoredItems(list(found.verdicts), found.labels, "vlmevalkit", found.skipped)
    match = get_matcher(name)
    try:
        return ScoredItems(
            list(map(match, found.predicts, found.labels, found.rows)), found.labels, name, found.skipped
        )
    except MissingField:
        pass
    credits: list[float] = []
    labels: list[str] = []
    skipped = found.skipped
    for index, (predict, label, row) in enumerate(zip(found.predicts, found.labels, found.rows)):
        try:
            credits.append(match(predict, label, row))
        except MissingField as err:
            if not skip_bad:
                raise ForgetkitError(f"{found.where(index)}: matcher {name} needs {err}") from None
            skipped += 1
            continue
        labels.append(label)
    if not credits:
        raise ForgetkitError(f"{path}: no line has what matcher {name} needs; nothing to score")
    return ScoredItems(credits, labels, name, skipped)


def score_items(
    path: Path, matcher: str = "letter", skip_bad: bool = False, sidecar: Path | None = None
) -> list[float]:
    """Each item's credit in file order under exactly `score_file`'s rules, for resampling (bootstrap intervals).

    Credit is True/False for every matcher but `mllmcl-sci` on "Which states" questions, which earns the
    fraction of states found; a file judged by VLMEvalKit gives its own verdicts."""
    return scored_items(path, matcher, skip_bad, sidecar).credits


def score_file(path: Path, matcher: str = "letter", skip_bad: bool = False, sidecar: Path | None = None) -> Score:
    """Accuracy of one file by `matcher` (`auto`: the file name's dataset's own matcher); a file judged by
    VLMEvalKit keeps its verdicts (matcher `vlmevalkit`). `skip_bad` leaves malformed lines out and counts
    them; `sidecar` lends each row the fields of the dataset's records/meta JSONL (see the module's doc)."""
    scored = scored_items(path, matcher, skip_bad, sidecar)
    return Score(sum(scored.credits), len(scored.credits), scored.matcher, scored.skipped)


def score_run(run: RunDir, matcher: str = AUTO, skip_bad: bool = False) -> dict[str, dict[str, dict]]:
    """{checkpoint: {dataset: score dict}} for every prediction file; saved as `scores.json`. The default
    scores each dataset by its own matcher: MLLM-CL test sets by their domain's, everything else by letter."""
    table = _scored(run_predictions(run), matcher, skip_bad)
    atomic.write_json(run.scores_path, table)
    return table


def score_checkpoints(run: RunDir, checkpoints: Collection[str], matcher: str = AUTO) -> dict[str, dict[str, dict]]:
    """`score_run`'s table of `checkpoints` alone, from the files they have; scores.json is left alone (what a
    scheduler's job scores when its evaluation is done, while other jobs write predictions beside it)."""
    files = [file for file in run.prediction_files() if file[0] in checkpoints]
    return _scored(files, matcher, skip_bad=False)


def _scored(files: list[tuple[str, str, Path]], matcher: str, skip_bad: bool) -> dict[str, dict[str, dict]]:
    table: dict[str, dict[str, dict]] = {}
    for checkpoint, dataset, path in files:
        table.setdefault(checkpoint, {})[dataset] = score_file(path, resolve(matcher, dataset), skip_bad).to_dict()
    return table


SHOWN_MISSING = 3


def run_predictions(run: RunDir) -> list[tuple[str, str, Path]]:
    """`run.prediction_files()`, once every eval stage state.json records done still has its files: a deleted
    file would otherwise read as a stage not run yet ("-" in every table). Stages not done stay quiet."""
    done = [stage for stage, entry in run.read_state().items() if entry.get("status") == "done"]
    missing = [path for stage in done for path in stage_predictions(run, stage) if not path.is_file()]
    if missing:
        shown = ", ".join(str(path.relative_to(run.root)) for path in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise ForgetkitError(
            f"{run.root}: {len(missing)} prediction file(s) of stages state.json records done are missing "
            f"({shown}{more}); `forgetkit launch SPEC --run-dir {run.root}` redoes exactly those stages "
            "(a stage the spec no longer has: delete its entry from state.json)"
        )
    files = run.prediction_files()
    if not files:
        raise ForgetkitError(f"{run.root} has no predictions yet; run `forgetkit launch` first")
    return files


def stage_predictions(run: RunDir, stage: str) -> list[Path]:
    """The prediction files an eval stage writes, read off its name as `forgetkit.evals` gives it:
    `predict|logits CHECKPOINT DATASET` one, `vlmeval CHECKPOINT` one per benchmark of the VLMEvalKit config
    it kept in configs/ (none known without it); other stages none."""
    kind, rest = stage_kind(stage), stage_subject(stage)
    if kind in ("predict", "logits"):
        checkpoint, _, dataset = rest.rpartition(" ")
        return [run.predictions(checkpoint, dataset)]
    config = run.config(stage).with_suffix(".json")
    if kind != "vlmeval" or not config.is_file():
        return []
    benchmarks = read_json(config, dict, "restore it or delete it (it records what the stage ran)").get("data")
    return [run.predictions(rest, f"{VLMEVAL}{name}") for name in benchmarks] if isinstance(benchmarks, dict) else []
