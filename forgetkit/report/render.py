"""A report's files: report.md and its figures (PNG), numbers.json, a CSV per table; and Table 2 merged over
several runs' reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forgetkit import atomic, plots
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.report.numbers import build_report
from forgetkit.report.stats import RESAMPLES, Interval, cell_fields
from forgetkit.report.tables import TABLE1_QUADRANTS
from forgetkit.report.text import markdown, md_table, table2_cells, table3_sequences
from forgetkit.rundir import ZERO_SHOT, stage_slug


def write_report(
    run_dir: Path,
    out_dir: Path | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    id_dataset: str | None = None,
    data_dir: Path | None = None,
) -> Path:
    """Write the report into `out_dir` (default RUN/report/): report.md linking the figures, numbers.json, a
    CSV per table and the figures as PNG. Returns the folder."""
    numbers = build_report(run_dir, resamples=resamples, seed=seed, id_dataset=id_dataset, data_dir=data_dir)
    return render_report(numbers, Path(out_dir) if out_dir is not None else Path(run_dir) / "report")


def render_report(numbers: dict[str, Any], out: Path) -> Path:
    """`build_report`'s numbers as files in `out`: figures, CSVs, numbers.json, then report.md linking them."""
    numbers = {**numbers, "figures": _figures(numbers, out)}
    tables = _csv_tables(numbers)
    for name, rows in tables.items():
        atomic.write_text(out / f"{name}.csv", _csv(rows))
    numbers["csv"] = [f"{name}.csv" for name in tables]
    atomic.write_json(out / "numbers.json", numbers)
    atomic.write_text(out / "report.md", markdown(numbers))
    return out


def write_merged_table2(reports: Sequence[Path], out: Path) -> Path:
    """Table 2 (a) compares models, one run each: the Table 2 rows of several written reports (RUN/report)
    in one table, as `out`/table2.md, table2.csv and numbers.json. Returns `out`."""
    rows = []
    for report in reports:
        numbers = read_json(Path(report) / "numbers.json", dict, "write each run's report first")
        rows += [{"run": numbers["name"], **row} for row in numbers["table2"]]
    if not rows:
        raise ForgetkitError("none of these runs has a Table 2 (each needs eval.quadrants and a trained recipe)")
    merged = {"runs": [str(report) for report in reports], "table2": rows}
    atomic.write_text(out / "table2.csv", _csv(rows))
    atomic.write_json(out / "numbers.json", merged)
    atomic.write_text(
        out / "table2.md", "# Table 2: zero-shot → final checkpoint\n\n" + md_table(*table2_cells(merged))
    )
    return out


def fig2_points(numbers: Mapping[str, Any]) -> tuple[dict[str, list[plots.Point]], plots.Point | None]:
    """Fig. 2's curves (per recipe, each checkpoint with an ID accuracy: it and its quadrant means, with their
    intervals) and the zero-shot point, from `build_report`'s numbers; no curves without an ID dataset."""
    accuracy = {(row["checkpoint"], row["dataset"]): bar for row in numbers["accuracies"] if (bar := _bar(row))}
    quadrant: dict[str, dict[str, plots.Bar]] = {}
    for row in numbers["quadrants"]:
        if bar := _bar(row):
            quadrant.setdefault(row["checkpoint"], {})[row["quadrant"]] = bar

    def point(checkpoint: str) -> plots.Point | None:
        x = accuracy.get((checkpoint, numbers["id_dataset"]))
        return None if x is None else (x, quadrant.get(checkpoint, {}))

    curves = {
        recipe: [p for checkpoint in checkpoints if (p := point(checkpoint))]
        for recipe, checkpoints in numbers["recipes"].items()
    }
    return {recipe: points for recipe, points in curves.items() if points}, point(ZERO_SHOT)


def _bar(row: Mapping[str, Any], name: str = "accuracy", unit: str = "pct") -> plots.Bar | None:
    """The interval `name` of `row` as a figure draws it, None where it was not measured."""
    interval = Interval.read(row, name, unit)
    return None if interval is None else (interval.value, interval.low, interval.high)


def _figures(numbers: dict, out: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    id_dataset = numbers["id_dataset"]
    if id_dataset and (fig2 := fig2_points(numbers))[0]:
        plots.forgetting_curves(out / "fig2.png", *fig2, id_dataset)
        figures["fig2"] = "fig2.png"
    if numbers["fig4"]:
        series: dict[str, list[plots.MixPoint]] = {}
        for row in numbers["fig4"]:
            ood = Interval.read(row, "OOD^T-ID^I accuracy", "pct")
            series.setdefault(row["arm"], []).append((row["ratio"], row["id_accuracy_pct"], ood and ood.value))
        plots.mixing_curves(out / "fig4.png", series, id_dataset)
        figures["fig4"] = "fig4.png"
    if numbers["fig3"]:
        bars = dict(zip(plots.CLASSLABEL_BARS, ("accuracy", "classlabel_accuracy", "mischoice")))
        groups = {
            row["state"]: {bar: interval for bar, name in bars.items() if (interval := _bar(row, name))}
            for row in numbers["fig3"]
        }
        plots.classlabel_bars(out / "fig3.png", groups)
        figures["fig3"] = "fig3.png"
    continual = {}
    for name, sequence in numbers["continual"].items():
        file = f"cl-{stage_slug(name)}.png"
        matrix = [[cell and cell["value"] for cell in row] for row in sequence["matrix"]]
        plots.continual_heatmap(out / file, f"{name}: accuracy (%) after each task", sequence["tasks"], matrix)
        continual[name] = file
    if continual:
        figures["continual"] = continual
    series: dict[str, list[plots.ProbePoint]] = {}
    for row in numbers["probe"]:
        deltas = {
            quadrant: interval for quadrant in TABLE1_QUADRANTS if (interval := _bar(row, f"{quadrant} change", "pp"))
        }
        series.setdefault(row["series"], []).append((row["kl_nats"], row["answer_mass_shift_pp"], deltas))
    if any(deltas for points in series.values() for _, _, deltas in points):
        plots.drift_probe(out / "probe.png", series, TABLE1_QUADRANTS)
        figures["probe"] = "probe.png"
    return figures


def _csv_tables(numbers: dict) -> dict[str, list[dict]]:
    names = (
        *("accuracies", "changes", "quadrants", "table1", "table2", "table2_size"),
        *("fig3", "fig4", "probe", "probe_spearman"),
    )
    tables = {name: numbers[name] for name in names}
    matrix = []
    for name, sequence in numbers["continual"].items():
        for stage, row in zip(sequence["stages"], sequence["matrix"]):
            for task, test, cell in zip(sequence["tasks"], sequence["tests"], row):
                if cell:
                    fields = cell_fields(cell, "accuracy", "pct")
                    matrix.append({"sequence": name, "stage": stage, "task": task, "test": test, **fields})
    tables["continual_matrix"] = matrix
    sequences = table3_sequences(numbers) if numbers["continual"] else {}
    tables["table3"] = [_table3_row(name, sequence) for name, sequence in sequences.items()]
    return {name: rows for name, rows in tables.items() if rows}


def _table3_row(name: str, sequence: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"sequence": name, "strategy": sequence.get("strategy"), "replay": sequence.get("replay")}
    for task, last, average in zip(sequence["tasks"], sequence["last"], sequence["average"]):
        row |= cell_fields(last, f"{task} last", "pct") | cell_fields(average, f"{task} average", "pct")
    return row | cell_fields(sequence.get("bwt"), "bwt", "pp") | cell_fields(sequence.get("fwt"), "fwt", "pp")


def _csv(rows: Sequence[dict]) -> str:
    header = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_value(row.get(key)) for key in header])
    return buffer.getvalue()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ";".join(map(str, value))
    return str(value)
