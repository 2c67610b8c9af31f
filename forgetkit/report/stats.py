"""The report's statistics: each accuracy and change with its bootstrap replicates and 95 % interval.

Intervals are percentiles of replicates drawn over items:
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
Every quantity draws from its own seed (the report seed and the quantity's name), so adding a checkpoint to a
run does not move the intervals of the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from forgetkit.rundir import ZERO_SHOT

CONFIDENCE = 0.95
RESAMPLES = 1000
REPLICATES = {"accuracy_replicates": "bayesian bootstrap, jeffreys prior", "change_replicates": "paired bootstrap"}
"""How each kind of quantity is resampled (numbers.json's `bootstrap`; see the module doc)."""
JEFFREYS_PRIOR = 0.5
"""Items of prior credit 0 and of credit 1 a single accuracy's replicates start from (the Jeffreys prior)."""
Cell = TypeVar("Cell")
Value = TypeVar("Value")


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

    def as_dict(self) -> dict[str, float]:
        """The interval standing alone in numbers.json (a continual cell, a headline's change)."""
        return {"value": self.value, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, cell: Mapping[str, float]) -> Interval:
        """The interval `as_dict` wrote."""
        return cls(cell["value"], cell["low"], cell["high"])

    @classmethod
    def read(cls, row: Mapping[str, Any], name: str, unit: str) -> Interval | None:
        """The interval `fields` wrote into `row`, None where it was not measured."""
        value = row.get(f"{name}_{unit}")
        return None if value is None else cls(value, row[f"{name}_ci_low_{unit}"], row[f"{name}_ci_high_{unit}"])


def fields_of(interval: Interval | None, name: str, unit: str) -> dict[str, float | None]:
    """`interval.fields(name, unit)`, or the same keys set to None where it was not measured."""
    if interval is None:
        return {f"{name}_{unit}": None, f"{name}_ci_low_{unit}": None, f"{name}_ci_high_{unit}": None}
    return interval.fields(name, unit)


def cell_fields(cell: Mapping[str, float] | None, name: str, unit: str) -> dict[str, float | None]:
    """`fields_of` the interval `Interval.as_dict` wrote (None: not measured)."""
    return fields_of(None if cell is None else Interval.from_dict(cell), name, unit)


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


def change_fields(change: Estimate | None) -> dict[str, Any]:
    """A change's interval in pp, whether its replicates were paired and whether it is forgetting (all None
    where it was not measured)."""
    if change is None:
        return {**fields_of(None, "change", "pp"), "paired": None, "forgetting": None}
    interval = change.interval()
    return {**interval.fields("change", "pp"), "paired": change.paired, "forgetting": interval.forgetting}


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
        rng = self._rng(name)
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
        weights = self._rng(name).standard_gamma(shape, size=(self.resamples, values.size))
        return weights @ values / weights.sum(axis=1)

    def estimate(self, name: str, credit: np.ndarray) -> Estimate:
        """The accuracy of `credit` (in [0, 1]) with its `accuracy` replicates."""
        return Estimate(credit.sum() / credit.size, self.accuracy(name, credit))

    def _rng(self, name: str) -> np.random.Generator:
        """The generator of the quantity `name`: its own seed, so no quantity's draws move another's."""
        return np.random.default_rng([self.seed, zlib.crc32(name.encode("utf-8"))])


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
            self._accuracy[key] = self.bootstrap.estimate(f"accuracy|{checkpoint}|{dataset}", self.items[key].credit)
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
