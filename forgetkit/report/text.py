"""The report's words: report.md's sections, the terminal summary and the sentence per recipe both open with,
every cell of their tables formatted from `build_report`'s numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from forgetkit.jsonfile import read_json
from forgetkit.protocol import IMAGEWIKIQA_CLASSLABEL
from forgetkit.report.numbers import FORGOT, LEARNED, MIN_RANKED
from forgetkit.report.stats import Interval, cell_fields
from forgetkit.report.tables import FLAG_PP, ID_QUADRANT, TABLE1_QUADRANTS, TABLE2_SIZE
from forgetkit.report.terminal import text_table
from forgetkit.rundir import ZERO_SHOT

HEADLINE_RULE = (
    "Each recipe at the checkpoint of its largest loss called forgetting (†), else at its final checkpoint; "
    "changes of the quadrant means vs zero-shot with their 95 % intervals. Forgot: a quadrant's whole interval "
    f"lies below zero; learned without forgetting: none does and {ID_QUADRANT}'s lies above zero."
)

LEGEND = (
    "Accuracies in %, changes (Δ) in percentage points, each with its 95 % bootstrap interval [low, high]. "
    "† forgetting: the whole interval lies below zero. ▼ a degradation over 3 pp (the paper's red). "
    "‡ unpaired: the two files scored different items."
)


def summary(out_dir: Path) -> str:
    """Plain text for a terminal from a written report: Table 1, the changes called forgetting, Table 3."""
    numbers = read_json(Path(out_dir) / "numbers.json", dict, "write the report first (`forgetkit report RUN`)")
    parts = [f"{numbers['name']}: {Path(out_dir) / 'report.md'}"]
    if numbers.get("headlines"):
        parts.append("\n".join(f"{headline(row)}." for row in numbers["headlines"]))
    if numbers["table1"]:
        parts.append("Table 1 (final checkpoint per recipe)\n" + text_table(*_table1_cells(numbers)))
    changes = numbers["changes"]
    forgetting = [row for row in changes if row["forgetting"]]
    lines = [f"{len(forgetting)} of {len(changes)} changes vs zero-shot are forgetting (95 % interval below zero)"]
    lines += [f"  {row['checkpoint']} {row['dataset']}: {_change_cell(row)}" for row in forgetting[:10]]
    lines += [f"  ... and {len(forgetting) - 10} more in changes.csv"] if len(forgetting) > 10 else []
    parts.append("\n".join(lines))
    if numbers["continual"]:
        parts.append("Table 3 (continual learning)\n" + text_table(*_table3_cells(numbers)))
    parts.append(LEGEND)
    return "\n\n".join(parts)


def markdown(numbers: dict) -> str:
    """report.md from `build_report`'s numbers, with the figures and CSV files `render_report` added."""
    figures = numbers["figures"]
    boot = numbers["bootstrap"]
    parts = [f"# {numbers['name']}" + (f" ({numbers['model']})" if numbers.get("model") else "")]
    if numbers["headlines"]:
        parts.append("\n".join(f"- {headline(row)}." for row in numbers["headlines"]) + f"\n\n{HEADLINE_RULE}")
    parts.append(
        f"{LEGEND} {boot['resamples']} resamples, seed {boot['seed']}. A change resamples item pairs (percentile "
        "bootstrap) when both files scored the same items (same count and labels in order); a single accuracy's "
        "interval is the Bayesian bootstrap's with a Jeffreys prior, which does not collapse at 0 % or 100 %. "
        "Every number is also in numbers.json and the CSV files: " + ", ".join(numbers["csv"]) + "."
    )
    if numbers["table1"]:
        parts.append(
            f"## Table 1: final accuracy on {numbers['id_dataset']} and change vs zero-shot\n\n"
            "In parentheses: the difference to the recipe with the highest final accuracy. "
            f"The last column is the paper's grey rows (every Δ within ±{FLAG_PP:g} pp).\n\n"
            + md_table(*_table1_cells(numbers))
        )
    elif not numbers["id_dataset"]:
        parts.append("Tables 1 and 2 and Fig. 2 need the spec's eval.quadrants (ID^T-ID^I names the fine-tuned task).")
    if numbers["table2"]:
        parts.append("## Table 2: zero-shot → final checkpoint\n\n" + md_table(*table2_cells(numbers)))
    if numbers["table2_size"]:
        parts.append(
            f"## Table 2 (c): data size, {numbers['id_dataset']} accuracy (%)\n\nEach fraction is a checkpoint "
            "(App. C.2): 0.25 % and 2.5 % steps 200 and 2,000 of a 2,000-step run, 25 % and 100 % steps 20,000 "
            "and 80,000 of an 80,000-step run.\n\n" + md_table(*_table2_size_cells(numbers))
        )
    if "fig2" in figures:
        parts.append(
            f"## Fig. 2: each quadrant against {numbers['id_dataset']} accuracy, one point per checkpoint\n\n"
            f"![Fig. 2]({figures['fig2']})"
        )
    if "fig4" in figures:
        header = ["mixed in", "ratio", "recipe", f"{numbers['id_dataset']} %", "OOD^T-ID^I %"]
        rows = [
            [
                row["arm"],
                f"{row['ratio']:g}",
                row["recipe"],
                _accuracy_cell(row, "id_accuracy"),
                _accuracy_cell(row, "OOD^T-ID^I accuracy"),
            ]
            for row in numbers["fig4"]
        ]
        parts.append(
            "## Fig. 4: data-hybrid training, accuracy against the mixing ratio (ratio 0: the base set alone)\n\n"
            f"![Fig. 4]({figures['fig4']})\n\n{md_table(header, rows)}"
        )
    if "fig3" in figures:
        header = ["model state", "ImageWikiQA %", "with class-label distractor %", "mischoice on class name %"]
        rows = [
            [
                row["state"],
                _accuracy_cell(row),
                _accuracy_cell(row, "classlabel_accuracy"),
                _accuracy_cell(row, "mischoice"),
            ]
            for row in numbers["fig3"]
        ]
        title = "## Fig. 3: ImageWikiQA with class-label distractors"
        text = f"{title}\n\n![Fig. 3]({figures['fig3']})\n\n{md_table(header, rows)}"
        if any("mischoice_pct" not in row for row in numbers["fig3"]):
            text += (
                f"\n\nThe mischoice rate needs {IMAGEWIKIQA_CLASSLABEL}.records.jsonl (the planted option of each "
                "row), written next to the data by `forgetkit build-data imagewikiqa-classlabel`; give its folder."
            )
        parts.append(text)
    if numbers["probe"]:
        parts.append(_probe_markdown(numbers))
    if numbers["quadrants"]:
        parts.append("## Quadrant means per checkpoint (PROTOCOL.md §2)\n\n" + md_table(*_quadrant_cells(numbers)))
    parts.append(
        "## Accuracy per checkpoint and dataset (%)\n\n"
        + md_table(*_grid(numbers["accuracies"], numbers["datasets"], _accuracy_cell))
    )
    if numbers["changes"]:
        parts.append(
            "## Change vs zero-shot per checkpoint and dataset (pp)\n\n"
            + md_table(*_grid(numbers["changes"], numbers["datasets"], _change_cell))
        )
    if numbers["continual"]:
        parts.append(
            "## Continual learning (PROTOCOL.md §4)\n\nLast: each task's accuracy after the final task. Average: "
            "for each task, the mean accuracy over the tasks seen so far when it is learned. BWT (backward "
            "transfer): the mean over all tasks but the last of (accuracy after the final task - accuracy just "
            "after learning it). FWT (forward transfer): the mean over all tasks but the first of (accuracy just "
            "before learning it - zero-shot accuracy on it).\n\n### Table 3\n\n" + md_table(*_table3_cells(numbers))
        )
        for name, sequence in numbers["continual"].items():
            header = ["stage", *(f"{task} (%)" for task in sequence["tasks"])]
            rows = [[f"after {task}", *map(_cell, row)] for task, row in zip(sequence["tasks"], sequence["matrix"])]
            parts.append(f"### {name}\n\n{md_table(header, rows)}\n\n![{name}]({figures['continual'][name]})")
    return "\n\n".join(parts) + "\n"


def headline(row: Mapping[str, Any]) -> str:
    """One `_headlines` row as the sentence report.md and the terminal summary open with, its numbers included."""
    recipe, changes = row["recipe"], row["changes"]
    step = row["checkpoint"].removeprefix(f"{recipe}/")
    gain = changes.get(ID_QUADRANT)
    if row["verdict"] == FORGOT:
        losses = sorted((c["value"], quadrant) for quadrant, c in changes.items() if c["high"] < 0)
        text = f"{recipe} forgot " + " and ".join(f"{q}: {_pp(changes[q])}" for _, q in losses) + f" at {step}"
        if gain is None or gain["high"] < 0:
            return text
        if gain["low"] > 0:
            return f"{text}, while gaining {_pp(gain)} on {ID_QUADRANT}"
        return f"{text}, with no measurable gain on {ID_QUADRANT} ({_pp(gain)})"
    others = {quadrant: c for quadrant, c in changes.items() if quadrant != ID_QUADRANT}
    rest = "no quadrant's interval below zero at any checkpoint"
    if others:
        lowest = min(others, key=lambda quadrant: others[quadrant]["value"])
        rest += f" (lowest: {lowest} {_pp(others[lowest])})"
    if row["verdict"] == LEARNED:
        return f"{recipe} learned without forgetting: {_pp(gain)} on {ID_QUADRANT} at {step}, {rest}"
    moved = f"{ID_QUADRANT} {_pp(gain)}, " if gain else ""
    return f"{recipe} changed nothing measurable: at {step} {moved}{rest}"


def _pp(cell: Mapping[str, float]) -> str:
    return f"{cell['value']:+.1f} pp [{cell['low']:+.1f}, {cell['high']:+.1f}]"


def _probe_markdown(numbers: dict) -> str:
    rows = numbers["probe"]
    datasets = ", ".join(f"`{d}`" for d in dict.fromkeys(str(row["dataset"]) for row in rows))
    prompts = "/".join(dict.fromkeys(str(row["prompts"]) for row in rows))
    tokens = "/".join(dict.fromkeys(", ".join(map(str, row["answer_tokens"] or [])) or "-" for row in rows))
    header = ["checkpoint", "KL (nats)", "answer-token mass % base → checkpoint (shift pp)", "top-token agreement %"]
    header += [f"Δ {quadrant} (pp)" for quadrant in TABLE1_QUADRANTS]
    cells = [
        [
            row["checkpoint"],
            f"{row['kl_nats']:.4g}",
            f"{row['answer_mass_base_pct']:.2f} → {row['answer_mass_checkpoint_pct']:.2f} "
            f"({row['answer_mass_shift_pp']:+.2f})",
            f"{row['top_token_agreement_pct']:.1f}",
            *(_change_cell(row, f"{quadrant} change", flag=True) for quadrant in TABLE1_QUADRANTS),
        ]
        for row in rows
    ]
    text = (
        "## Drift probe: does moving away from the base model predict forgetting?\n\n"
        "Each checkpoint's next-token distribution against the base model's at the first answer position of "
        f"{prompts} held-out prompts of {datasets} that are not multiple choice (`forgetkit probe`): KL(base ‖ "
        f"checkpoint) averaged over the prompts, the probability both models put on the answer tokens ({tokens}) "
        "and its shift, and how often their most likely tokens agree. Δ: the checkpoint's change vs zero-shot "
        "on the quadrant's mean.\n\n" + md_table(header, cells)
    )
    if "probe" in numbers["figures"]:
        text += f"\n\n![Drift probe]({numbers['figures']['probe']})"
    else:
        text += "\n\nThe figure needs OOD quadrant Δs: the spec's eval.quadrants and zero-shot predictions."
    if numbers["probe_spearman"]:
        names = {"kl_nats": "KL", "answer_mass_shift_pp": "answer-token mass shift"}
        lines = [
            f"- {names[row['measure']]} vs Δ {row['quadrant']}: ρ = "
            + ("undefined (one side is constant)" if row["spearman_rho"] is None else f"{row['spearman_rho']:+.2f}")
            + f" over {row['checkpoints']} checkpoints"
            for row in numbers["probe_spearman"]
        ]
        text += (
            "\n\nSpearman rank correlation over the checkpoints with both numbers; a negative ρ means the checkpoints "
            "that drifted further lost more. Descriptive only: checkpoints of one recipe are not independent "
            "samples, and it ignores the Δs' intervals.\n\n" + "\n".join(lines)
        )
    else:
        text += f"\n\nRank correlations need at least {MIN_RANKED} probed checkpoints with an OOD quadrant Δ."
    return text


def _table1_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "recipe",
        "final checkpoint",
        f"{numbers['id_dataset']} % (vs {numbers['table1_reference'] or 'best'}, pp)",
    ]
    header += [f"Δ {quadrant} (pp)" for quadrant in TABLE1_QUADRANTS] + [f"all Δ within ±{FLAG_PP:g} pp"]
    rows = []
    for row in numbers["table1"]:
        versus = Interval.read(row, "id_vs_reference", "pp")
        cells = [row["recipe"], row["checkpoint"], _accuracy_cell(row, "id_accuracy")]
        cells[-1] += f" ({versus.cell(signed=True)})" if versus else ""
        cells += [_change_cell(row, f"{quadrant} change", flag=True) for quadrant in TABLE1_QUADRANTS]
        rows.append([*cells, "yes" if row[f"all within {FLAG_PP:g} pp"] else "no"])
    return header, rows


def _table2_size_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    rates = sorted({row["lr"] for row in numbers["table2_size"]})
    cells = {(row["fraction"], row["lr"]): _accuracy_cell(row) for row in numbers["table2_size"]}
    fractions = [fraction for fraction, _, _ in reversed(TABLE2_SIZE)]
    rows = [[fraction, *(cells.get((fraction, lr), "-") for lr in rates)] for fraction in fractions]
    return ["dataset fraction", *(f"lr={lr:g}" for lr in rates)], [row for row in rows if set(row[1:]) != {"-"}]


def table2_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    columns = list(dict.fromkeys(row["column"] for row in numbers["table2"]))
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in numbers["table2"]:
        text = f"{row['zero_shot_pct']:.2f} → {row['final_pct']:.2f} ({_change_cell(row)})"
        cells.setdefault((row["model"] or "-", row["recipe"], row["checkpoint"]), {})[row["column"]] = text
    header = ["model", "recipe", "final checkpoint", *(f"{column} (%)" for column in columns)]
    return header, [[*key, *(row.get(c, "-") for c in columns)] for key, row in cells.items()]


def _table3_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    tasks = next(iter(numbers["continual"].values()))["tasks"]
    header = [
        "method",
        *(f"{task} {metric} (%)" for task in tasks for metric in ("Last", "Average")),
        "BWT (pp)",
        "FWT (pp)",
    ]
    rows = []
    for name, sequence in table3_sequences(numbers).items():
        settings = [sequence["strategy"]] if sequence["strategy"] not in (None, name) else []
        settings += [f"replay {sequence['replay']}"] if sequence.get("replay") else []
        label = f"{name} ({', '.join(settings)})" if settings else name
        metrics = [_cell(cell) for pair in zip(sequence["last"], sequence["average"]) for cell in pair]
        transfer = [sequence[key] for key in ("bwt", "fwt")]
        rows.append(
            [
                label,
                *metrics,
                *("-" if cell is None else _change_cell(cell_fields(cell, "change", "pp")) for cell in transfer),
            ]
        )
    return header, rows


def table3_sequences(numbers: dict) -> dict[str, dict]:
    """Table 3's rows: the zero-shot row (where the run has zero-shot accuracies on the tasks), then each
    continual sequence."""
    zero_shot = _zero_shot_sequence(numbers)
    return {ZERO_SHOT: zero_shot, **numbers["continual"]} if zero_shot else dict(numbers["continual"])


def _zero_shot_sequence(numbers: dict) -> dict | None:
    """Table 3's zero-shot row as a sequence whose Last is the zero-shot accuracy on each task; every sequence
    of a run learns the same tasks, so the first one's test sets serve."""
    first = next(iter(numbers["continual"].values()))
    if not any(first["zero_shot"]):
        return None
    blank = [None] * len(first["tasks"])
    return {
        "tasks": first["tasks"],
        "last": first["zero_shot"],
        "average": blank,
        "bwt": None,
        "fwt": None,
        "strategy": None,
    }


def _quadrant_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    quadrants = list(numbers["quadrant_datasets"])
    cells: dict[str, dict[str, str]] = {}
    for row in numbers["quadrants"]:
        text = _accuracy_cell(row) + ("" if row["change_pp"] is None else f" ({_change_cell(row)})")
        cells.setdefault(row["checkpoint"], {})[row["quadrant"]] = text
    return ["checkpoint", *quadrants], [[c, *(row.get(q, "-") for q in quadrants)] for c, row in cells.items()]


def _grid(rows: Iterable[dict], datasets: list[str], cell: Callable[[dict], str]) -> tuple[list[str], list[list[str]]]:
    """Checkpoint rows x dataset columns (datasets no row has are left out)."""
    grid: dict[str, dict[str, str]] = {}
    for row in rows:
        grid.setdefault(row["checkpoint"], {})[row["dataset"]] = cell(row)
    datasets = [d for d in datasets if any(d in row for row in grid.values())]
    return ["checkpoint", *datasets], [[c, *(row.get(d, "-") for d in datasets)] for c, row in grid.items()]


def _change_cell(row: Mapping[str, Any], name: str = "change", flag: bool = False) -> str:
    interval = Interval.read(row, name, "pp")
    if interval is None:
        return "-"
    marks = " †" if interval.forgetting else ""
    marks += " ▼" if flag and interval.value < -FLAG_PP else ""
    marks += " ‡" if row.get("paired") is False else ""
    return interval.cell(signed=True) + marks


def _accuracy_cell(row: Mapping[str, Any] | None, name: str = "accuracy") -> str:
    interval = Interval.read(row, name, "pct") if row else None
    return "-" if interval is None else interval.cell()


def _cell(cell: dict | None, signed: bool = False) -> str:
    return "-" if cell is None else Interval.from_dict(cell).cell(signed)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
