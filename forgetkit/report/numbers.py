"""numbers.json's content: every accuracy and change vs zero-shot with its interval, the quadrant means, the
paper's tables (`tables`), the drift probes and the sentence per recipe report.md opens with.

Where launch probed the checkpoints' drift from the base (RUN/probes/, `forgetkit.stages.probe`), each
checkpoint's KL and answer-token mass shift stand next to its OOD quadrant Δs, with their rank correlation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgetkit.errors import ForgetkitError
from forgetkit.report.inputs import launched_study, load_items, read_probes, read_spec
from forgetkit.report.stats import CONFIDENCE, REPLICATES, RESAMPLES, Bootstrap, Interval, Stats, change_fields
from forgetkit.report.tables import (
    ID_QUADRANT,
    TABLE1_QUADRANTS,
    continual,
    fig3,
    fig4,
    quadrant_change_fields,
    table1,
    table1_reference,
    table2,
    table2_size,
)
from forgetkit.rundir import ZERO_SHOT, RunDir

PROBE_MEASURES = ("kl_nats", "answer_mass_shift_pp")
"""The drift measures ranked against each OOD quadrant's Δ."""
MIN_RANKED = 3
FORGOT, LEARNED, UNCHANGED = "forgot", "learned without forgetting", "changed nothing measurable"
"""The verdicts report.md opens with, one per recipe (`_headlines`)."""
_RECIPE_CHECKPOINT = re.compile(r"^(?P<recipe>.+)/checkpoint-\d+$")


def build_report(
    run_dir: Path,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    id_dataset: str | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Every number of the report (JSON-ready; accuracies in %, changes in pp, each with its interval).
    `data_dir` is where the class-label set's records sidecar lies, for Fig. 3's mischoice rate (default:
    the data the run predicted from)."""
    if resamples < 100:
        raise ForgetkitError(f"resamples {resamples} is too few for a 95 % interval; use 1000 or more")
    run = RunDir(Path(run_dir))
    stats = Stats(load_items(run), Bootstrap(resamples, seed))
    checkpoints = list(dict.fromkeys(checkpoint for checkpoint, _ in stats.items))
    evaluated = {dataset for _, dataset in stats.items}
    quadrants = {q: names for q, names in run.quadrants().items() if names}
    grouped = [dataset for names in quadrants.values() for dataset in names]
    datasets = [d for d in dict.fromkeys([*grouped, *(dataset for _, dataset in stats.items)]) if d in evaluated]
    id_dataset = _id_dataset(id_dataset, quadrants, datasets)
    recipes: dict[str, list[str]] = {}
    for checkpoint in checkpoints:
        if match := _RECIPE_CHECKPOINT.match(checkpoint):
            recipes.setdefault(match["recipe"], []).append(checkpoint)
    spec = read_spec(run)
    final = {recipe: steps[-1] for recipe, steps in recipes.items()}
    study = launched_study(run)
    launched = study.recipes if study else {}
    reference = table1_reference(launched, final)
    quadrant_rows = _quadrants(stats, checkpoints, quadrants)
    probe_rows = _probe_rows(read_probes(run), quadrant_rows, checkpoints)
    return {
        "name": spec.get("name", run.root.name),
        "model": spec.get("model"),
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "confidence": CONFIDENCE,
            "method": "percentile",
            **REPLICATES,
        },
        "id_dataset": id_dataset,
        "datasets": datasets,
        "quadrant_datasets": quadrants,
        "recipes": recipes,
        "accuracies": _accuracies(stats),
        "changes": _changes(stats),
        "quadrants": quadrant_rows,
        "table1_reference": reference,
        "table1": table1(stats, final, quadrants, id_dataset, reference),
        "table2": table2(stats, final, quadrants, str(spec.get("model") or "")),
        "table2_size": table2_size(stats, launched, id_dataset),
        "fig4": fig4(stats, study, final, quadrants, id_dataset),
        "continual": continual(stats, run.continual()),
        "fig3": fig3(stats, final, run, data_dir),
        "probe": probe_rows,
        "probe_spearman": _probe_spearman(probe_rows),
        "headlines": _headlines(recipes, quadrant_rows),
    }


def _id_dataset(chosen: str | None, quadrants: Mapping[str, list[str]], datasets: list[str]) -> str | None:
    """The fine-tuned task's eval set (Fig. 2's x, Table 1's "Final Acc"): the first ID^T-ID^I dataset
    unless chosen."""
    if chosen is None:
        return quadrants.get(ID_QUADRANT, [None])[0]
    if chosen not in datasets:
        raise ForgetkitError(f"--id-dataset {chosen!r} was not evaluated in this run; choose one of {datasets}")
    return chosen


def _accuracies(stats: Stats) -> list[dict]:
    return [
        {
            "checkpoint": checkpoint,
            "dataset": dataset,
            "matcher": items.matcher,
            "correct": _count(items.credit.sum()),
            "total": int(items.credit.size),
            **stats.accuracy(checkpoint, dataset).interval().fields("accuracy", "pct"),
        }
        for (checkpoint, dataset), items in stats.items.items()
    ]


def _count(value: float) -> int | float:
    """A sum of item credit: whole for right/wrong items, fractional where a matcher gives partial credit."""
    return int(value) if float(value).is_integer() else float(value)


def _changes(stats: Stats) -> list[dict]:
    return [
        {"checkpoint": checkpoint, "dataset": dataset, **change_fields(stats.change(ZERO_SHOT, checkpoint, dataset))}
        for checkpoint, dataset in stats.items
        if checkpoint != ZERO_SHOT and stats.has(ZERO_SHOT, dataset)
    ]


def _quadrants(stats: Stats, checkpoints: list[str], quadrants: Mapping[str, list[str]]) -> list[dict]:
    rows = []
    for checkpoint in checkpoints:
        for quadrant, datasets in quadrants.items():
            if not stats.has(checkpoint, *datasets):
                continue
            compared = checkpoint != ZERO_SHOT and stats.has(ZERO_SHOT, *datasets)
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "quadrant": quadrant,
                    **stats.quadrant(checkpoint, datasets).interval().fields("accuracy", "pct"),
                    **change_fields(stats.quadrant_change(checkpoint, datasets) if compared else None),
                }
            )
    return rows


def _headlines(recipes: Mapping[str, list[str]], quadrant_rows: list[dict]) -> list[dict]:
    """Per recipe, what report.md opens with: the checkpoint to speak of, the verdict and every quadrant's change
    vs zero-shot there. The checkpoint is the one of the recipe's largest loss called forgetting (a loss midway
    through training counts even if later checkpoints recover), else its final one. The verdict is "forgot"
    where a quadrant is flagged; else "learned without forgetting" where ID^T-ID^I's whole interval lies above
    zero; else "changed nothing measurable". Quadrant means only: a run without eval.quadrants gets none."""
    changes: dict[str, dict[str, dict]] = {}
    for row in quadrant_rows:
        if (interval := Interval.read(row, "change", "pp")) is not None:
            changes.setdefault(row["checkpoint"], {})[row["quadrant"]] = interval.as_dict()
    rows = []
    for recipe, checkpoints in recipes.items():
        measured = [checkpoint for checkpoint in checkpoints if checkpoint in changes]
        if not measured:
            continue
        flagged = [(c["value"], at) for at in measured for c in changes[at].values() if c["high"] < 0]
        checkpoint = min(flagged, key=lambda loss: loss[0])[1] if flagged else measured[-1]
        gain = changes[checkpoint].get(ID_QUADRANT)
        verdict = FORGOT if flagged else LEARNED if gain and gain["low"] > 0 else UNCHANGED
        rows.append({"recipe": recipe, "checkpoint": checkpoint, "verdict": verdict, "changes": changes[checkpoint]})
    return rows


def _probe_rows(probes: Mapping[str, dict], quadrant_rows: list[dict], checkpoints: list[str]) -> list[dict]:
    """Per probed checkpoint (in the report's checkpoint order, then probes without predictions by name): its
    drift from the base (answer-token mass and agreement in %, the shift in pp) and its Δ vs zero-shot on each
    OOD quadrant of Table 1. `series` is the recipe or continual sequence it belongs to (the figure's colour)."""
    changes = {(row["checkpoint"], row["quadrant"]): row for row in quadrant_rows}
    order = {checkpoint: index for index, checkpoint in enumerate(checkpoints)}
    rows = []
    for checkpoint in sorted(probes, key=lambda c: (c not in order, order.get(c, 0), c)):
        summary = probes[checkpoint]
        row: dict[str, Any] = {
            "checkpoint": checkpoint,
            "series": checkpoint.rpartition("/")[0] or checkpoint,
            "dataset": summary.get("dataset"),
            "prompts": summary.get("rows"),
            "answer_tokens": summary.get("answer_tokens"),
            "kl_nats": summary["kl"],
            "answer_mass_base_pct": round(summary["answer_mass_base"] * 100, 4),
            "answer_mass_checkpoint_pct": round(summary["answer_mass_checkpoint"] * 100, 4),
            "answer_mass_shift_pp": round(summary["answer_mass_shift"] * 100, 4),
            "top_token_agreement_pct": round(summary["top_token_agreement"] * 100, 4),
        }
        for quadrant in TABLE1_QUADRANTS:
            change = Interval.read(changes.get((checkpoint, quadrant), {}), "change", "pp")
            row |= quadrant_change_fields(quadrant, change)
        rows.append(row)
    return rows


def _probe_spearman(rows: list[dict]) -> list[dict]:
    """Spearman's rank correlation of each drift measure with each OOD quadrant's Δ over the checkpoints that
    have both, where there are at least `MIN_RANKED`: descriptive only (None where either side is constant).
    scipy.stats is imported only here: it takes about a second, which reports without probes need not spend."""
    if len(rows) < MIN_RANKED:
        return []
    from scipy.stats import spearmanr

    result = []
    for measure in PROBE_MEASURES:
        for quadrant in TABLE1_QUADRANTS:
            pairs = [
                (row[measure], row[f"{quadrant} change_pp"]) for row in rows if row[f"{quadrant} change_pp"] is not None
            ]
            if len(pairs) < MIN_RANKED:
                continue
            xs, ys = zip(*pairs)
            varied = len(set(xs)) > 1 and len(set(ys)) > 1
            rho = round(float(spearmanr(xs, ys).statistic), 4) if varied else None
            result.append({"measure": measure, "quadrant": quadrant, "checkpoints": len(pairs), "spearman_rho": rho})
    return result
