"""The score tables `forgetkit score RUN`, `launch` and `demo` print from scores.json's table (`score_run`):
every checkpoint x dataset, the quadrant means and each continual sequence's task x stage matrix; and
`text_table`, the aligned plain-text columns every table forgetkit prints is drawn with (the report's
terminal summary's too). Imports nothing of the report's statistics, so scoring a run stays quick."""

from __future__ import annotations

from forgetkit.rundir import ZERO_SHOT, RunDir


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
        text += text_table(["stage", *sequence["tasks"]], rows)
    return text


def format_table(table: dict[str, dict[str, dict]]) -> str:
    """Accuracy in percent, one row per checkpoint, one column per dataset."""
    datasets = sorted({dataset for row in table.values() for dataset in row})
    header = ["checkpoint", *datasets]
    rows = [
        [checkpoint, *(f"{row[d]['accuracy'] * 100:.2f}" if d in row else "-" for d in datasets)]
        for checkpoint, row in table.items()
    ]
    return text_table(header, rows)


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
    return text_table(["checkpoint", *quadrants], rows)


def continual_matrix(table: dict[str, dict[str, dict]], sequence: dict) -> list[list[float | None]]:
    """Accuracy after each stage (rows) on each task's test set (columns); None where not evaluated
    (a task not yet seen, or a stage not run yet)."""
    return [
        [table.get(stage, {}).get(test, {}).get("accuracy") for test in sequence["tests"]]
        for stage in sequence["stages"]
    ]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart under a dashed rule, trailing spaces stripped from each line."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
