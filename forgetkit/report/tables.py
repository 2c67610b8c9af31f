"""The paper's tables and the numbers of its figures, from a run's `Stats`: Table 1 (final ID accuracy and the
OOD quadrants' changes, degradations over `FLAG_PP` flagged), Table 2 (zero-shot → final) and its data-size
part (c), Table 3's continual metrics, Fig. 3 (class-label distractors) and Fig. 4 (data-hybrid mixing).

A quadrant's numbers are the means of its datasets' (PROTOCOL.md §2).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit.protocol import IMAGEWIKIQA, IMAGEWIKIQA_CLASSLABEL
from forgetkit.recipes import Method, Part, Recipe, Scheduler
from forgetkit.report.inputs import mischoice_credit
from forgetkit.report.stats import Estimate, Interval, Stats, change_fields, continual_metrics, fields_of, mean_of
from forgetkit.rundir import ZERO_SHOT, RunDir

if TYPE_CHECKING:
    from forgetkit.spec import Study

ID_QUADRANT = "ID^T-ID^I"
TABLE1_QUADRANTS = ("OOD^T-ID^I", "OOD^T-OOD^I")
"""Table 1's Δ columns; Table 2 reports the ID^T-ID^I datasets one by one, then these quadrants' means:"""
TABLE2_QUADRANTS = ("ID^T-OOD^I", "OOD^T-OOD^I")
TABLE2_SIZE = (("0.25 %", 2000, 200), ("2.5 %", 2000, 2000), ("25 %", 80000, 20000), ("100 %", 80000, 80000))
"""Table 2 (c), data size, as App. C.2 ran it: each fraction is a checkpoint of a linear-schedule LLM full run
(row, the run's steps, the checkpoint's step: 200 x batch 16 is 0.25 % of ImageNet's train set)."""
TABLE1_REFERENCE = (Part.llm, Method.full, 1e-5)
"""Table 1's bracketed ID differences are to "LLM Backbone, Full, 1e-5" (its caption); without such a recipe,
to the recipe with the highest ID accuracy."""
FLAG_PP = 3.0
"""Table 1 marks degradations larger than this (the paper's red cells)."""


def table1_reference(launched: Mapping[str, Recipe], final: Mapping[str, str]) -> str | None:
    """The recipe Table 1's bracketed ID differences are to (`TABLE1_REFERENCE`), None where the run has none."""
    return next((name for name, recipe in launched.items() if name in final and _is(recipe, *TABLE1_REFERENCE)), None)


def quadrant_change_fields(quadrant: str, change: Interval | None) -> dict[str, Any]:
    """A checkpoint's change vs zero-shot on a quadrant of Table 1 and whether it is forgetting (None: not
    measured)."""
    forgetting = {f"{quadrant} forgetting": change.forgetting if change else None}
    return fields_of(change, f"{quadrant} change", "pp") | forgetting


def fig4(
    stats: Stats,
    study: Study | None,
    final: Mapping[str, str],
    quadrants: Mapping[str, list[str]],
    id_dataset: str | None,
) -> list[dict]:
    """Fig. 4: per data-hybrid recipe (its own `train:` of the base set plus one other at a ratio), the final
    checkpoint's ID and OOD^T-ID^I accuracy; a recipe on the base set alone is ratio 0 of every arm."""
    if study is None or id_dataset is None:
        return []
    mixes = {name: study.data_for(name) for name in final if name in study.recipes}
    arms = {data.train[1] for data in mixes.values() if len(data.train) == 2}
    bases = {data.train[0] for data in mixes.values() if len(data.train) == 2}
    rows = []
    for name, data in mixes.items():
        checkpoint = final[name]
        if len(data.train) > 2 or data.train[0] not in bases or not stats.has(checkpoint, id_dataset):
            continue
        row: dict[str, Any] = {"recipe": name, "checkpoint": checkpoint, "base": data.train[0]}
        row |= stats.accuracy(checkpoint, id_dataset).interval().fields("id_accuracy", "pct")
        ood = quadrants.get("OOD^T-ID^I", [])
        measured = bool(ood) and stats.has(checkpoint, *ood)
        row |= fields_of(stats.quadrant(checkpoint, ood).interval() if measured else None, "OOD^T-ID^I accuracy", "pct")
        mixed = [(data.train[1], float(data.mix_probs[1]))] if len(data.train) == 2 else [(arm, 0.0) for arm in arms]
        rows += [row | {"arm": arm, "ratio": ratio} for arm, ratio in mixed]
    return sorted(rows, key=lambda row: (row["arm"], row["ratio"])) if arms else []


def _is(recipe: Recipe, part: Part, method: Method, lr: float | None = None) -> bool:
    return recipe.part is part and recipe.method is method and (lr is None or recipe.lr == lr)


def table2_size(stats: Stats, launched: Mapping[str, Recipe], id_dataset: str | None) -> list[dict]:
    """Table 2 (c): ID accuracy per data fraction (`TABLE2_SIZE`) and learning rate, from the checkpoints of the
    spec's linear-schedule LLM full recipes of 2,000 or 80,000 steps."""
    rows = []
    for fraction, total, step in TABLE2_SIZE:
        for name, recipe in launched.items():
            checkpoint = f"{name}/checkpoint-{step}"
            if not (_is(recipe, Part.llm, Method.full) and recipe.scheduler is Scheduler.linear):
                continue
            if recipe.steps == total and id_dataset and stats.has(checkpoint, id_dataset):
                accuracy = stats.accuracy(checkpoint, id_dataset).interval().fields("accuracy", "pct")
                rows.append(
                    {"fraction": fraction, "lr": recipe.lr, "recipe": name, "checkpoint": checkpoint, **accuracy}
                )
    return rows


def table1(
    stats: Stats,
    final: Mapping[str, str],
    quadrants: Mapping[str, list[str]],
    id_dataset: str | None,
    reference: str | None,
) -> list[dict]:
    """Paper Table 1: per recipe, its final checkpoint's ID accuracy (and its difference to the reference
    recipe's, else to the highest), and the change vs zero-shot on OOD^T-ID^I and OOD^T-OOD^I; degradations
    over 3 pp flagged."""
    if id_dataset is None:
        return []
    scored = {recipe: checkpoint for recipe, checkpoint in final.items() if stats.has(checkpoint, id_dataset)}
    best = max(scored.values(), key=lambda c: stats.accuracy(c, id_dataset).value, default=None)
    versus_checkpoint = scored.get(reference, best) if reference else best
    rows = []
    for recipe, checkpoint in final.items():
        row: dict[str, Any] = {"recipe": recipe, "checkpoint": checkpoint, "id_dataset": id_dataset}
        has_id = checkpoint in scored.values()
        accuracy = stats.accuracy(checkpoint, id_dataset).interval() if has_id else None
        compared = has_id and checkpoint != versus_checkpoint
        versus = stats.change(versus_checkpoint, checkpoint, id_dataset).interval() if compared else None
        row |= fields_of(accuracy, "id_accuracy", "pct") | fields_of(versus, "id_vs_reference", "pp")
        within = True
        for quadrant in TABLE1_QUADRANTS:
            names = quadrants.get(quadrant, [])
            measured = bool(names) and stats.has(checkpoint, *names) and stats.has(ZERO_SHOT, *names)
            change = stats.quadrant_change(checkpoint, names).interval() if measured else None
            row |= quadrant_change_fields(quadrant, change)
            row[f"{quadrant} over {FLAG_PP:g} pp"] = change.value < -FLAG_PP if change else None
            within = within and change is not None and abs(change.value) <= FLAG_PP
        row[f"all within {FLAG_PP:g} pp"] = within
        rows.append(row)
    return rows


def table2(stats: Stats, final: Mapping[str, str], quadrants: Mapping[str, list[str]], model: str) -> list[dict]:
    """Paper Table 2: zero-shot → final checkpoint per recipe on each ID^T-ID^I dataset and on the ID^T-OOD^I
    and OOD^T-OOD^I means (rows (a) and (b) of the paper; its row (c) compares recipes trained on data fractions,
    which in a run are recipes too)."""
    columns = [(dataset, [dataset]) for dataset in quadrants.get(ID_QUADRANT, [])]
    columns += [(quadrant, quadrants[quadrant]) for quadrant in TABLE2_QUADRANTS if quadrant in quadrants]
    rows = []
    for recipe, checkpoint in final.items():
        for column, names in columns:
            if not (stats.has(checkpoint, *names) and stats.has(ZERO_SHOT, *names)):
                continue
            rows.append(
                {
                    "model": model,
                    "recipe": recipe,
                    "checkpoint": checkpoint,
                    "column": column,
                    **stats.quadrant(ZERO_SHOT, names).interval().fields("zero_shot", "pct"),
                    **stats.quadrant(checkpoint, names).interval().fields("final", "pct"),
                    **change_fields(stats.quadrant_change(checkpoint, names)),
                }
            )
    return rows


def continual(stats: Stats, layouts: Mapping[str, dict]) -> dict[str, dict]:
    """Per sequence: the task x stage accuracy matrix, Last and Average per task, BWT, and the zero-shot
    accuracy on each task (Table 3's zero-shot row)."""
    result = {}
    for name, layout in layouts.items():
        stages, tests = layout["stages"], layout["tests"]
        keys = [[(stage, test) if stats.has(stage, test) else None for test in tests] for stage in stages]
        zero_shot = [(ZERO_SHOT, test) if stats.has(ZERO_SHOT, test) else None for test in tests]
        metrics = continual_metrics(
            keys,
            lambda cell: stats.accuracy(*cell),
            mean_of,
            lambda before, after: stats.change(before[0], after[0], after[1], before[1]),
            zero_shot,
        )
        result[name] = {
            "strategy": layout.get("strategy"),
            "replay": layout.get("replay"),
            "tasks": layout["tasks"],
            "stages": stages,
            "tests": tests,
            "matrix": [[_interval_dict(cell and stats.accuracy(*cell)) for cell in row] for row in keys],
            "last": [_interval_dict(cell) for cell in metrics["last"]],
            "average": [_interval_dict(cell) for cell in metrics["average"]],
            "bwt": _interval_dict(metrics["bwt"]),
            "fwt": _interval_dict(metrics["fwt"]),
            "zero_shot": [_interval_dict(cell and stats.accuracy(*cell)) for cell in zero_shot],
        }
    return result


def _interval_dict(estimate: Estimate | None) -> dict[str, float] | None:
    return None if estimate is None else estimate.interval().as_dict()


def fig3(stats: Stats, final: Mapping[str, str], run: RunDir, data_dir: Path | None) -> list[dict]:
    """Fig. 3's numbers where the run evaluated ImageWikiQA with class-label distractors: per model state
    (zero-shot, each recipe's final checkpoint) accuracy on ImageWikiQA, on its class-label variant, and the
    rate of choosing the class-name option there (where the set's records sidecar is found)."""
    rows = []
    for label, checkpoint in {ZERO_SHOT: ZERO_SHOT, **final}.items():
        if not stats.has(checkpoint, IMAGEWIKIQA_CLASSLABEL):
            continue
        row: dict[str, Any] = {"state": label, "checkpoint": checkpoint}
        if stats.has(checkpoint, IMAGEWIKIQA):
            row |= stats.accuracy(checkpoint, IMAGEWIKIQA).interval().fields("accuracy", "pct")
        row |= stats.accuracy(checkpoint, IMAGEWIKIQA_CLASSLABEL).interval().fields("classlabel_accuracy", "pct")
        credit = mischoice_credit(run, stats.items[(checkpoint, IMAGEWIKIQA_CLASSLABEL)], data_dir)
        if credit is not None:
            row |= stats.bootstrap.estimate(f"mischoice|{checkpoint}", credit).interval().fields("mischoice", "pct")
        rows.append(row)
    return rows
