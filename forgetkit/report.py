"""A run's report: every accuracy and change vs zero-shot with a 95 % interval, the paper's tables and figures.

Numbers come from the prediction files item by item (`scoring.scored_items`), under the matcher `forgetkit
score` recorded for each file in scores.json, so the report's accuracies are the score table's. Intervals are
percentiles of replicates drawn over items:
- A change (Δ) between two files that scored the same items (same count, same labels in order) resamples
  the item pairs (Efron's percentile bootstrap). The mean of n items drawn with replacement depends only on
  how often each distinct credit value was drawn, and those counts are multinomial. Replicates are drawn that
  way, one array op per quantity: the same distribution as resampling n indices, in O(resamples x distinct
  values) rather than O(resamples x n). Two identical files give exactly 0 [0, 0].
- A single accuracy is drawn by the Bayesian bootstrap (Dirichlet weights on the items) with half an item of
  prior credit 0 and half of credit 1. On right/wrong items that is the Beta(right + 1/2, wrong + 1/2)
  posterior, whose percentiles are the Jeffreys interval (Brown, Cai & DasGupta 2001, one of the two they
  recommend): where Efron's bootstrap collapses to [0, 0] at 0 % (every resample of all-wrong items is
  all wrong), this one still bounds the accuracy from above by what n items can rule out, and away from 0 %
  and 100 % it agrees with Efron's. Wilson's interval would do for one accuracy alone, but quadrant means,
  unpaired changes and continual metrics need replicates, and these are.
- A change between files of different items subtracts the two accuracies' replicates.
- A quadrant's mean (PROTOCOL.md §2), a continual Average and backward transfer average their datasets'
  replicates, so all datasets are resampled jointly and each dataset's own interval uses the same draws.
- A Δ is called forgetting only when its whole interval lies below zero.
Where launch probed the checkpoints' drift from the base (RUN/probes/, `forgetkit.stages.probe`), each
checkpoint's KL and answer-token mass shift stand next to its OOD quadrant Δs, with their rank correlation.
Every quantity draws from its own seed (the report seed and the quantity's name), so adding a checkpoint to a
run does not move the intervals of the others.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import yaml

from forgetkit import atomic, plots
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.recipes import Method, Part, Recipe, Scheduler
from forgetkit.stage_names import stage_name
from forgetkit.yamlfile import load_yaml

if TYPE_CHECKING:
    from forgetkit.spec import Study
from forgetkit.rundir import ZERO_SHOT, RunDir, stage_slug
from forgetkit.scoring import run_predictions, score_items, scored_items

CONFIDENCE = 0.95
RESAMPLES = 1000
ID_QUADRANT = "ID^T-ID^I"
TABLE1_QUADRANTS = ("OOD^T-ID^I", "OOD^T-OOD^I")
TABLE2_SIZE = (("0.25 %", 2000, 200), ("2.5 %", 2000, 2000), ("25 %", 80000, 20000), ("100 %", 80000, 80000))
"""Table 2 (c), data size, as App. C.2 ran it: each fraction is a checkpoint of a linear-schedule LLM full run
(row, the run's steps, the checkpoint's step: 200 x batch 16 is 0.25 % of ImageNet's train set)."""
TABLE1_REFERENCE = (Part.llm, Method.full, 1e-5)
"""Table 1's bracketed ID differences are to "LLM Backbone, Full, 1e-5" (its caption); without such a recipe,
to the recipe with the highest ID accuracy."""
"""Table 1's Δ columns; Table 2 reports the ID^T-ID^I datasets one by one, then these quadrants' means:"""
TABLE2_QUADRANTS = ("ID^T-OOD^I", "OOD^T-OOD^I")
FLAG_PP = 3.0
"""Table 1 marks degradations larger than this (the paper's red cells)."""
STANDARD_SET = "imagewikiqa"
CLASSLABEL_SET = "imagewikiqa_classlabel"
MISCHOICE = "classlabel-mischoice"
JUDGED = "vlmevalkit"
"""scores.json's matcher for files carrying VLMEvalKit's own verdicts (score_items reads those whatever matcher)."""
Cell = TypeVar("Cell")
Value = TypeVar("Value")
_RECIPE_CHECKPOINT = re.compile(r"^(?P<recipe>.+)/checkpoint-\d+$")
PROBE_SUMMARY = ("kl", "answer_mass_base", "answer_mass_checkpoint", "answer_mass_shift", "top_token_agreement")
"""The means `forgetkit.stages.probe.probe` writes into RUN/probes/<checkpoint>.json, all needed by the report."""
PROBE_MEASURES = ("kl_nats", "answer_mass_shift_pp")
"""The drift measures ranked against each OOD quadrant's Δ."""
MIN_RANKED = 3
REPLICATES = {"accuracy_replicates": "bayesian bootstrap, jeffreys prior", "change_replicates": "paired bootstrap"}
"""How each kind of quantity is resampled (numbers.json's `bootstrap`; see the module doc)."""
FORGOT, LEARNED, UNCHANGED = "forgot", "learned without forgetting", "changed nothing measurable"
"""The verdicts report.md opens with, one per recipe (`_headlines`)."""
JEFFREYS_PRIOR = 0.5
"""Items of prior credit 0 and of credit 1 a single accuracy's replicates start from (the Jeffreys prior)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate in % (accuracies) or percentage points (changes) and its 95 % interval."""

    value: float
    low: float
    high: float

    @property
    def forgetting(self) -> bool:
        return self.high < 0

    def cell(self, signed: bool = False) -> str:
        spec = "+.2f" if signed else ".2f"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def fields(self, name: str, unit: str) -> dict[str, float]:
        return {f"{name}_{unit}": self.value, f"{name}_ci_low_{unit}": self.low, f"{name}_ci_high_{unit}": self.high}

    @classmethod
    def read(cls, row: Mapping[str, Any], name: str, unit: str) -> Interval | None:
        """The interval `fields` wrote into `row`, None where it was not measured."""
        value = row.get(f"{name}_{unit}")
        return None if value is None else cls(value, row[f"{name}_ci_low_{unit}"], row[f"{name}_ci_high_{unit}"])


def _empty_fields(name: str, unit: str) -> dict[str, None]:
    return {f"{name}_{unit}": None, f"{name}_ci_low_{unit}": None, f"{name}_ci_high_{unit}": None}


@dataclass(frozen=True)
class Estimate:
    """A fraction (accuracy or change) with its bootstrap replicates."""

    value: float
    replicates: np.ndarray
    paired: bool = True

    def __sub__(self, other: Estimate) -> Estimate:
        return Estimate(self.value - other.value, self.replicates - other.replicates, paired=False)

    def interval(self) -> Interval:
        """The percentile interval, as np.quantile's default (linear) method computes it, without its per-call
        overhead (a report computes thousands), stretched to hold the estimate: at 0 % the Jeffreys lower
        percentile lies just above 0, and Brown, Cai & DasGupta set it to 0 (likewise at 100 %)."""
        ordered = np.sort(self.replicates)
        positions = np.array([(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2]) * (ordered.size - 1)
        low, high = np.interp(positions, np.arange(ordered.size), ordered)
        bounds = (self.value, min(low, self.value), max(high, self.value))
        return Interval(*(round(float(x) * 100, 4) for x in bounds))


def mean_of(estimates: Sequence[Estimate]) -> Estimate:
    """The mean of several quantities, replicate by replicate (their datasets resampled jointly)."""
    return Estimate(
        sum(e.value for e in estimates) / len(estimates),
        np.mean([e.replicates for e in estimates], axis=0),
        paired=all(e.paired for e in estimates),
    )


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = RESAMPLES
    seed: int = 0

    def mean(self, name: str, credit: np.ndarray) -> np.ndarray:
        """Replicates of the mean of `credit` over its items drawn with replacement (see the module doc). The
        multinomial counts are drawn value by value as binomials of the draws left, one array op over all
        resamples each, rarest value first and the commonest as the remainder: few, cheap binomial draws
        (a paired change is mostly zeros)."""
        values, counts = np.unique(credit, return_counts=True)
        order = np.argsort(counts, kind="stable")
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode("utf-8"))])
        left: int | np.ndarray = credit.size
        total = np.zeros(self.resamples)
        remaining = credit.size
        for value, count in zip(values[order[:-1]], counts[order[:-1]]):
            drawn = rng.binomial(left, count / remaining, size=self.resamples)
            total += drawn * value
            left = left - drawn
            remaining -= count
        return (total + left * values[order[-1]]) / credit.size

    def accuracy(self, name: str, credit: np.ndarray) -> np.ndarray:
        """Replicates of an accuracy (credit in [0, 1]) by the Bayesian bootstrap with a Jeffreys prior (see the
        module doc): Dirichlet weights on the distinct credit values, each weighted by how many items have it
        plus half an item at 0 and at 1, drawn as normalised gammas, one array op over all resamples."""
        values, counts = np.unique(np.concatenate([credit, [0.0, 1.0]]), return_counts=True)
        shape = counts - np.isin(values, (0.0, 1.0)) * JEFFREYS_PRIOR
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode("utf-8"))])
        weights = rng.standard_gamma(shape, size=(self.resamples, values.size))
        return weights @ values / weights.sum(axis=1)


@dataclass(frozen=True)
class Items:
    """One prediction file: each item's credit in file order, and a digest of its labels to recognise a
    second file that scored the same items."""

    checkpoint: str
    dataset: str
    path: Path
    matcher: str
    credit: np.ndarray
    labels: str


class Stats:
    """Estimates of a run's accuracies and changes; each is drawn once and reused by every table using it."""

    def __init__(self, items: Mapping[tuple[str, str], Items], bootstrap: Bootstrap) -> None:
        self.items = items
        self.bootstrap = bootstrap
        self._accuracy: dict[tuple[str, str], Estimate] = {}
        self._change: dict[tuple[str, str, str, str], Estimate] = {}

    def has(self, checkpoint: str, *datasets: str) -> bool:
        return all((checkpoint, dataset) in self.items for dataset in datasets)

    def accuracy(self, checkpoint: str, dataset: str) -> Estimate:
        key = (checkpoint, dataset)
        if key not in self._accuracy:
            credit = self.items[key].credit
            replicates = self.bootstrap.accuracy(f"accuracy|{checkpoint}|{dataset}", credit)
            self._accuracy[key] = Estimate(credit.sum() / credit.size, replicates)
        return self._accuracy[key]

    def change(self, base: str, checkpoint: str, dataset: str, base_dataset: str | None = None) -> Estimate:
        """`checkpoint`'s accuracy on `dataset` minus `base`'s (on `base_dataset`, default the same), paired
        over items when both files scored the same items."""
        key = (base, base_dataset or dataset, checkpoint, dataset)
        if key not in self._change:
            before, after = self.items[key[:2]], self.items[key[2:]]
            if before.labels != after.labels or before.credit.size != after.credit.size:
                self._change[key] = self.accuracy(*key[2:]) - self.accuracy(*key[:2])
            else:
                value = self.accuracy(*key[2:]).value - self.accuracy(*key[:2]).value
                replicates = self.bootstrap.mean("change|" + "|".join(key), after.credit - before.credit)
                self._change[key] = Estimate(value, replicates)
        return self._change[key]

    def quadrant(self, checkpoint: str, datasets: Sequence[str]) -> Estimate:
        return mean_of([self.accuracy(checkpoint, dataset) for dataset in datasets])

    def quadrant_change(self, checkpoint: str, datasets: Sequence[str]) -> Estimate:
        return mean_of([self.change(ZERO_SHOT, checkpoint, dataset) for dataset in datasets])


def load_items(run: RunDir) -> dict[tuple[str, str], Items]:
    """Per (checkpoint, dataset), the file's item credit under the matcher scores.json records for it."""
    files = run_predictions(run)
    rescore = f"run `forgetkit score {run.root}` first"
    scores = read_json(run.scores_path, dict, rescore)
    found = {}
    for checkpoint, dataset, path in files:
        entry = scores.get(checkpoint, {}).get(dataset)
        if not isinstance(entry, dict) or "matcher" not in entry:
            raise ForgetkitError(f"{path} has no score in {run.scores_path}; {rescore}")
        matcher, skip_bad = entry["matcher"], bool(entry.get("skipped"))
        scored = scored_items(path, "letter" if matcher == JUDGED else matcher, skip_bad)
        credit = np.asarray(scored.credits, dtype=float)
        if credit.size != entry.get("total") or not math.isclose(credit.sum(), entry.get("correct", -1)):
            raise ForgetkitError(f"{run.scores_path} is stale for {path} (predictions changed); {rescore}")
        labels = "\0".join(scored.labels)
        digest = hashlib.blake2b(labels.encode("utf-8"), digest_size=16).hexdigest()
        found[(checkpoint, dataset)] = Items(checkpoint, dataset, path, matcher, credit, digest)
    return found


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
    spec = _spec(run)
    final = {recipe: steps[-1] for recipe, steps in recipes.items()}
    study = _launched(run)
    launched = study.recipes if study else {}
    reference = next(
        (name for name, recipe in launched.items() if name in final and _is(recipe, *TABLE1_REFERENCE)), None
    )
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
        "table1": _table1(stats, final, quadrants, id_dataset, reference),
        "table2": _table2(stats, final, quadrants, str(spec.get("model") or "")),
        "table2_size": _table2_size(stats, launched, id_dataset),
        "fig4": _fig4(stats, study, final, quadrants, id_dataset),
        "continual": _continual(stats, run.continual()),
        "fig3": _fig3(stats, final, run, data_dir),
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


def _spec(run: RunDir) -> dict:
    path = run.root / "spec.yaml"
    if not path.is_file():
        return {}
    try:
        spec = load_yaml(path)
    except ForgetkitError as err:
        raise ForgetkitError(f"{err}; restore the spec the run was launched with") from None
    return spec if isinstance(spec, dict) else {}


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


def _change_fields(change: Estimate | None) -> dict[str, Any]:
    if change is None:
        return {**_empty_fields("change", "pp"), "paired": None, "forgetting": None}
    interval = change.interval()
    return {**interval.fields("change", "pp"), "paired": change.paired, "forgetting": interval.forgetting}


def _changes(stats: Stats) -> list[dict]:
    return [
        {"checkpoint": checkpoint, "dataset": dataset, **_change_fields(stats.change(ZERO_SHOT, checkpoint, dataset))}
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
                    **_change_fields(stats.quadrant_change(checkpoint, datasets) if compared else None),
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
            cell = {"value": interval.value, "low": interval.low, "high": interval.high}
            changes.setdefault(row["checkpoint"], {})[row["quadrant"]] = cell
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


def _launched(run: RunDir) -> Study | None:
    """The spec the run was launched with (presets resolved); None without one."""
    from forgetkit.spec import load_study

    path = run.root / "spec.yaml"
    return load_study(path) if path.is_file() else None


def _fig4(
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
        if ood and stats.has(checkpoint, *ood):
            row |= stats.quadrant(checkpoint, ood).interval().fields("OOD^T-ID^I accuracy", "pct")
        else:
            row |= _empty_fields("OOD^T-ID^I accuracy", "pct")
        mixed = [(data.train[1], float(data.mix_probs[1]))] if len(data.train) == 2 else [(arm, 0.0) for arm in arms]
        rows += [row | {"arm": arm, "ratio": ratio} for arm, ratio in mixed]
    return sorted(rows, key=lambda row: (row["arm"], row["ratio"])) if arms else []


def _is(recipe: Recipe, part: Part, method: Method, lr: float | None = None) -> bool:
    return recipe.part is part and recipe.method is method and (lr is None or recipe.lr == lr)


def _table2_size(stats: Stats, launched: Mapping[str, Recipe], id_dataset: str | None) -> list[dict]:
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


def _table1(
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
        if checkpoint in scored.values():
            row |= stats.accuracy(checkpoint, id_dataset).interval().fields("id_accuracy", "pct")
            versus = (
                None if checkpoint == versus_checkpoint else stats.change(versus_checkpoint, checkpoint, id_dataset)
            )
            row |= (
                versus.interval().fields("id_vs_reference", "pp") if versus else _empty_fields("id_vs_reference", "pp")
            )
        else:
            row |= _empty_fields("id_accuracy", "pct") | _empty_fields("id_vs_reference", "pp")
        within = True
        for quadrant in TABLE1_QUADRANTS:
            names = quadrants.get(quadrant, [])
            measured = bool(names) and stats.has(checkpoint, *names) and stats.has(ZERO_SHOT, *names)
            change = stats.quadrant_change(checkpoint, names).interval() if measured else None
            row |= change.fields(f"{quadrant} change", "pp") if change else _empty_fields(f"{quadrant} change", "pp")
            row[f"{quadrant} forgetting"] = change.forgetting if change else None
            row[f"{quadrant} over {FLAG_PP:g} pp"] = change.value < -FLAG_PP if change else None
            within = within and change is not None and abs(change.value) <= FLAG_PP
        row[f"all within {FLAG_PP:g} pp"] = within
        rows.append(row)
    return rows


def _table2(stats: Stats, final: Mapping[str, str], quadrants: Mapping[str, list[str]], model: str) -> list[dict]:
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
                    **_change_fields(stats.quadrant_change(checkpoint, names)),
                }
            )
    return rows


def continual_metrics(
    matrix: Sequence[Sequence[Cell | None]],
    value: Callable[[Cell], Value],
    mean: Callable[[list[Value]], Value],
    change: Callable[[Cell, Cell], Value],
    zero_shot: Sequence[Cell | None] = (),
) -> dict[str, Any]:
    """PROTOCOL.md §4 on a task x stage matrix M (row i: after learning task i; column j: task j's test set):
    Last[j] = M[T-1][j]; Average[j] = the mean of M[j][0..j] (the tasks seen when task j is learned); the
    standard backward transfer BWT = the mean over j < T-1 of (M[T-1][j] - M[j][j]); and forward transfer
    FWT = the mean over j > 0 of (M[j-1][j] - Z[j]), Z being the zero-shot model on task j's test set (what
    learning the earlier tasks did for a task not yet learned; it needs `continual.eval: all`). A value that
    needs a cell not evaluated is None. `value`, `mean` and `change(before, after)` say what cells are: plain
    accuracies, or (in the report) (stage, test set) keys turned into bootstrap estimates."""
    tasks = len(matrix)
    complete = all(cell is not None for cell in matrix[-1])
    last = [value(cell) if complete else None for cell in matrix[-1]]
    average = [
        mean([value(c) for c in row[: j + 1]]) if all(c is not None for c in row[: j + 1]) else None
        for j, row in enumerate(matrix)
    ]
    diagonal = [matrix[j][j] for j in range(tasks - 1)]
    bwt = None
    if tasks > 1 and complete and all(cell is not None for cell in diagonal):
        bwt = mean([change(before, after) for before, after in zip(diagonal, matrix[-1])])
    ahead = [(zero_shot[j], matrix[j - 1][j]) for j in range(1, tasks)] if len(zero_shot) == tasks else []
    fwt = None
    if ahead and all(before is not None and after is not None for before, after in ahead):
        fwt = mean([change(before, after) for before, after in ahead])
    return {"last": last, "average": average, "bwt": bwt, "fwt": fwt}


def _continual(stats: Stats, layouts: Mapping[str, dict]) -> dict[str, dict]:
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


def _classlabel_records(run: RunDir, checkpoint: str, data_dir: Path | None) -> Path | None:
    """The class-label set's records sidecar (each row's planted class-name option, which the predictions do
    not carry), next to the data the predictions were made from: `data_dir`, else the dataset_dir of the
    LLaMA-Factory config the run kept for that prediction stage."""
    if data_dir is None:
        config = run.config(stage_name("predict", checkpoint, CLASSLABEL_SET))
        kept = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else None
        if not isinstance(kept, dict) or not kept.get("dataset_dir"):
            return None
        data_dir = Path(str(kept["dataset_dir"]))
    records = Path(data_dir) / f"{CLASSLABEL_SET}.records.jsonl"
    return records if records.is_file() else None


def _interval_dict(estimate: Estimate | None) -> dict[str, float] | None:
    if estimate is None:
        return None
    interval = estimate.interval()
    return {"value": interval.value, "low": interval.low, "high": interval.high}


def _fig3(stats: Stats, final: Mapping[str, str], run: RunDir, data_dir: Path | None) -> list[dict]:
    """Fig. 3's numbers where the run evaluated ImageWikiQA with class-label distractors: per model state
    (zero-shot, each recipe's final checkpoint) accuracy on ImageWikiQA, on its class-label variant, and the
    rate of choosing the class-name option there (where the set's records sidecar is found)."""
    rows = []
    for label, checkpoint in {ZERO_SHOT: ZERO_SHOT, **final}.items():
        if not stats.has(checkpoint, CLASSLABEL_SET):
            continue
        row: dict[str, Any] = {"state": label, "checkpoint": checkpoint}
        if stats.has(checkpoint, STANDARD_SET):
            row |= stats.accuracy(checkpoint, STANDARD_SET).interval().fields("accuracy", "pct")
        row |= stats.accuracy(checkpoint, CLASSLABEL_SET).interval().fields("classlabel_accuracy", "pct")
        if records := _classlabel_records(run, checkpoint, data_dir):
            path = stats.items[(checkpoint, CLASSLABEL_SET)].path
            credit = np.asarray(score_items(path, MISCHOICE, sidecar=records), dtype=float)
            replicates = stats.bootstrap.accuracy(f"mischoice|{checkpoint}", credit)
            mischoice = Estimate(credit.sum() / credit.size, replicates)
            row |= mischoice.interval().fields("mischoice", "pct")
        rows.append(row)
    return rows


def read_probes(run: RunDir) -> dict[str, dict]:
    """checkpoint -> the summary of its drift probe, from every RUN/probes/<checkpoint>.json (none: empty)."""
    folder = run.root / "probes"
    if not folder.is_dir():
        return {}
    fix = "delete it and rerun `forgetkit launch` to probe that checkpoint again"
    found = {}
    for path in sorted(folder.rglob("*.json")):
        summary = read_json(path, dict, fix)
        missing = [key for key in PROBE_SUMMARY if not _is_finite(summary.get(key))]
        if missing:
            raise ForgetkitError(f"{path} is not a drift probe (no finite number for {', '.join(missing)}); {fix}")
        found[path.relative_to(folder).with_suffix("").as_posix()] = summary
    return found


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
            row |= change.fields(f"{quadrant} change", "pp") if change else _empty_fields(f"{quadrant} change", "pp")
            row[f"{quadrant} forgetting"] = change.forgetting if change else None
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
    atomic.write_text(out / "report.md", _markdown(numbers))
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
        out / "table2.md", "# Table 2: zero-shot → final checkpoint\n\n" + _md_table(*_table2_cells(merged))
    )
    return out


def summary(out_dir: Path) -> str:
    """Plain text for a terminal from a written report: Table 1, the changes called forgetting, Table 3."""
    numbers = read_json(Path(out_dir) / "numbers.json", dict, "write the report first (`forgetkit report RUN`)")
    parts = [f"{numbers['name']}: {Path(out_dir) / 'report.md'}"]
    if numbers.get("headlines"):
        parts.append("\n".join(f"{headline(row)}." for row in numbers["headlines"]))
    if numbers["table1"]:
        parts.append("Table 1 (final checkpoint per recipe)\n" + _text_table(*_table1_cells(numbers)))
    changes = numbers["changes"]
    forgetting = [row for row in changes if row["forgetting"]]
    lines = [f"{len(forgetting)} of {len(changes)} changes vs zero-shot are forgetting (95 % interval below zero)"]
    lines += [f"  {row['checkpoint']} {row['dataset']}: {_change_cell(row)}" for row in forgetting[:10]]
    lines += [f"  ... and {len(forgetting) - 10} more in changes.csv"] if len(forgetting) > 10 else []
    parts.append("\n".join(lines))
    if numbers["continual"]:
        parts.append("Table 3 (continual learning)\n" + _text_table(*_table3_cells(numbers)))
    parts.append(LEGEND)
    return "\n\n".join(parts)


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


def fig2_points(numbers: Mapping[str, Any]) -> tuple[dict[str, list[plots.Point]], plots.Point | None]:
    """Fig. 2's curves (per recipe, each checkpoint with an ID accuracy: it and its quadrant means, with their
    intervals) and the zero-shot point, from `build_report`'s numbers; no curves without an ID dataset."""
    accuracy = {(row["checkpoint"], row["dataset"]): _bar(row) for row in numbers["accuracies"]}
    quadrant: dict[str, dict[str, plots.Bar]] = {}
    for row in numbers["quadrants"]:
        quadrant.setdefault(row["checkpoint"], {})[row["quadrant"]] = _bar(row)

    def point(checkpoint: str) -> plots.Point | None:
        x = accuracy.get((checkpoint, numbers["id_dataset"]))
        return None if x is None else (x, quadrant.get(checkpoint, {}))

    curves = {
        recipe: [p for checkpoint in checkpoints if (p := point(checkpoint))]
        for recipe, checkpoints in numbers["recipes"].items()
    }
    return {recipe: points for recipe, points in curves.items() if points}, point(ZERO_SHOT)


def _bar(row: Mapping[str, Any]) -> plots.Bar:
    return row["accuracy_pct"], row["accuracy_ci_low_pct"], row["accuracy_ci_high_pct"]


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
            row["state"]: {
                bar: (interval.value, interval.low, interval.high)
                for bar, name in bars.items()
                if (interval := Interval.read(row, name, "pct"))
            }
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
            quadrant: (interval.value, interval.low, interval.high)
            for quadrant in TABLE1_QUADRANTS
            if (interval := Interval.read(row, f"{quadrant} change", "pp"))
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
    matrix, table3 = [], []
    for name, sequence in numbers["continual"].items():
        for stage, row in zip(sequence["stages"], sequence["matrix"]):
            for task, test, cell in zip(sequence["tasks"], sequence["tests"], row):
                if cell:
                    matrix.append({"sequence": name, "stage": stage, "task": task, "test": test, **_fields(cell)})
        table3.append(_table3_row(name, sequence))
    if numbers["continual"] and (zero_shot := _zero_shot_sequence(numbers)):
        table3.insert(0, _table3_row(ZERO_SHOT, zero_shot))
    tables["continual_matrix"] = matrix
    tables["table3"] = table3
    return {name: rows for name, rows in tables.items() if rows}


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


def _table3_row(name: str, sequence: dict) -> dict[str, Any]:
    row: dict[str, Any] = {"sequence": name, "strategy": sequence.get("strategy"), "replay": sequence.get("replay")}
    for task, last, average in zip(sequence["tasks"], sequence["last"], sequence["average"]):
        row |= _fields(last, f"{task} last", "pct") | _fields(average, f"{task} average", "pct")
    return row | _fields(sequence.get("bwt"), "bwt", "pp") | _fields(sequence.get("fwt"), "fwt", "pp")


def _fields(cell: dict | None, name: str = "accuracy", unit: str = "pct") -> dict[str, Any]:
    if cell is None:
        return _empty_fields(name, unit)
    return Interval(cell["value"], cell["low"], cell["high"]).fields(name, unit)


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


def _table2_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    columns = list(dict.fromkeys(row["column"] for row in numbers["table2"]))
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for row in numbers["table2"]:
        text = f"{row['zero_shot_pct']:.2f} → {row['final_pct']:.2f} ({_change_cell(row)})"
        cells.setdefault((row["model"] or "-", row["recipe"], row["checkpoint"]), {})[row["column"]] = text
    header = ["model", "recipe", "final checkpoint", *(f"{column} (%)" for column in columns)]
    return header, [[*key, *(row.get(c, "-") for c in columns)] for key, row in cells.items()]


def _table3_cells(numbers: dict) -> tuple[list[str], list[list[str]]]:
    sequences = dict(numbers["continual"])
    tasks = next(iter(sequences.values()))["tasks"]
    header = [
        "method",
        *(f"{task} {metric} (%)" for task in tasks for metric in ("Last", "Average")),
        "BWT (pp)",
        "FWT (pp)",
    ]
    if zero_shot := _zero_shot_sequence(numbers):
        sequences = {ZERO_SHOT: zero_shot, **sequences}
    rows = []
    for name, sequence in sequences.items():
        settings = [sequence["strategy"]] if sequence["strategy"] not in (None, name) else []
        settings += [f"replay {sequence['replay']}"] if sequence.get("replay") else []
        label = f"{name} ({', '.join(settings)})" if settings else name
        metrics = [_cell(cell) for pair in zip(sequence["last"], sequence["average"]) for cell in pair]
        transfer = [sequence[key] for key in ("bwt", "fwt")]
        rows.append(
            [
                label,
                *metrics,
                *("-" if cell is None else _change_cell(_fields(cell, "change", "pp")) for cell in transfer),
            ]
        )
    return header, rows


def _cell(cell: dict | None, signed: bool = False) -> str:
    return "-" if cell is None else Interval(cell["value"], cell["low"], cell["high"]).cell(signed)


def _markdown(numbers: dict) -> str:
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
            + _md_table(*_table1_cells(numbers))
        )
    elif not numbers["id_dataset"]:
        parts.append("Tables 1 and 2 and Fig. 2 need the spec's eval.quadrants (ID^T-ID^I names the fine-tuned task).")
    if numbers["table2"]:
        parts.append("## Table 2: zero-shot → final checkpoint\n\n" + _md_table(*_table2_cells(numbers)))
    if numbers["table2_size"]:
        parts.append(
            f"## Table 2 (c): data size, {numbers['id_dataset']} accuracy (%)\n\nEach fraction is a checkpoint "
            "(App. C.2): 0.25 % and 2.5 % steps 200 and 2,000 of a 2,000-step run, 25 % and 100 % steps 20,000 "
            "and 80,000 of an 80,000-step run.\n\n" + _md_table(*_table2_size_cells(numbers))
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
            f"![Fig. 4]({figures['fig4']})\n\n{_md_table(header, rows)}"
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
        text = f"{title}\n\n![Fig. 3]({figures['fig3']})\n\n{_md_table(header, rows)}"
        if any("mischoice_pct" not in row for row in numbers["fig3"]):
            text += (
                f"\n\nThe mischoice rate needs {CLASSLABEL_SET}.records.jsonl (the planted option of each row), "
                "written next to the data by `forgetkit build-data imagewikiqa-classlabel`; give its folder."
            )
        parts.append(text)
    if numbers["probe"]:
        parts.append(_probe_markdown(numbers))
    if numbers["quadrants"]:
        parts.append("## Quadrant means per checkpoint (PROTOCOL.md §2)\n\n" + _md_table(*_quadrant_cells(numbers)))
    parts.append(
        "## Accuracy per checkpoint and dataset (%)\n\n"
        + _md_table(*_grid(numbers["accuracies"], numbers["datasets"], _accuracy_cell))
    )
    if numbers["changes"]:
        parts.append(
            "## Change vs zero-shot per checkpoint and dataset (pp)\n\n"
            + _md_table(*_grid(numbers["changes"], numbers["datasets"], _change_cell))
        )
    if numbers["continual"]:
        parts.append(
            "## Continual learning (PROTOCOL.md §4)\n\nLast: each task's accuracy after the final task. Average: "
            "for each task, the mean accuracy over the tasks seen so far when it is learned. BWT (backward "
            "transfer): the mean over all tasks but the last of (accuracy after the final task - accuracy just "
            "after learning it). FWT (forward transfer): the mean over all tasks but the first of (accuracy just "
            "before learning it - zero-shot accuracy on it).\n\n### Table 3\n\n" + _md_table(*_table3_cells(numbers))
        )
        for name, sequence in numbers["continual"].items():
            header = ["stage", *(f"{task} (%)" for task in sequence["tasks"])]
            rows = [[f"after {task}", *map(_cell, row)] for task, row in zip(sequence["tasks"], sequence["matrix"])]
            parts.append(f"### {name}\n\n{_md_table(header, rows)}\n\n![{name}]({figures['continual'][name]})")
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
        "on the quadrant's mean.\n\n" + _md_table(header, cells)
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


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
