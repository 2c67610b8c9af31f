"""The paper's figures as PNG, drawn from numbers the report computed (nothing here reads a run directory).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global backend or figure state) and
saved without the PNG `Software` tag, so the same numbers give the same bytes on every machine with the same
matplotlib and fonts. Every file is written through `atomic`, so a killed report leaves no partial image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from forgetkit import atomic
from forgetkit.protocol import QUADRANTS

Bar = tuple[float, float, float]
"""(value %, interval low %, interval high %)."""
Point = tuple[Bar, Mapping[str, Bar]]
"""(ID accuracy %, {quadrant: mean accuracy %}) of one checkpoint, each with its 95 % interval."""
ProbePoint = tuple[float, float, Mapping[str, Bar]]
"""(KL in nats, answer-token mass shift in pp, {quadrant: Δ vs zero-shot in pp with its interval}) of one
checkpoint."""
MixPoint = tuple[float, float, float | None]
"""(mixing ratio, ID accuracy, OOD^T-ID^I accuracy or None) of one data-hybrid recipe."""

LEGEND_COLUMNS = 4
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p")
ZERO_SHOT_LABEL = "zero-shot"
REFERENCE = {"color": "gray", "linewidth": 0.8, "linestyle": "--", "gid": ZERO_SHOT_LABEL}
"""Fig. 2's lines through the zero-shot point."""
CLASSLABEL_BARS = ("accuracy", "accuracy with class-label distractor", "mischoice on class name")
"""Fig. 3's bars per model state: ImageWikiQA accuracy, the same on the class-label variant, and how often the
class-name option was picked there."""


def quadrant_title(quadrant: str) -> str:
    """`OOD^T-ID^I` as mathtext, so the superscripts render as in the paper."""
    return re.sub(r"\^(\w+)", r"$^{\1}$", quadrant)


def forgetting_curves(
    path: Path, curves: Mapping[str, Sequence[Point]], zero_shot: Point | None, id_label: str
) -> None:
    """Fig. 2 (`fig2`) as a PNG."""
    _save(fig2(curves, zero_shot, id_label), path)


def fig2(curves: Mapping[str, Sequence[Point]], zero_shot: Point | None, id_label: str) -> Figure:
    """Fig. 2: one panel per quadrant laid out as the paper's 2x2 matrix (rows: text, columns: image); x is
    the fine-tuned task's accuracy, y the quadrant's mean; one curve per recipe through its checkpoints in
    step order, starting from the zero-shot model (a black star). Every point carries its 95 % intervals as
    error bars on both axes; dashed lines through the zero-shot point (gid `zero-shot`) show where a checkpoint
    gained or lost on either axis. Recipes differ in colour and marker, so they stay apart in grey print and
    where curves cross. One legend below the panels serves all four, however many recipes there are."""
    legend_rows = math.ceil((len(curves) + 1) / LEGEND_COLUMNS)
    height = 8.5 + 0.25 * legend_rows
    figure = Figure(figsize=(10, height))
    bottom = (0.6 + 0.25 * legend_rows) / height
    figure.subplots_adjust(left=0.07, right=0.98, bottom=bottom, top=1 - 0.4 / height, wspace=0.2, hspace=0.3)
    axes = figure.subplots(2, 2)
    styles = dict(zip(curves, zip(_colors(len(curves)), _markers(len(curves)))))
    start = [zero_shot] if zero_shot else []
    for quadrant, ax in zip(QUADRANTS, axes.flat):
        ax.set_title(quadrant_title(quadrant))
        ax.set_xlabel(f"{id_label} accuracy (%)")
        ax.set_ylabel("quadrant accuracy (%)")
        ax.grid(alpha=0.3)
        if zero_shot:
            ax.axvline(zero_shot[0][0], **REFERENCE)
            if quadrant in zero_shot[1]:
                ax.axhline(zero_shot[1][quadrant][0], **REFERENCE)
        drawn = False
        for recipe, points in curves.items():
            color, marker = styles[recipe]
            at = [(x, ys[quadrant]) for x, ys in points if quadrant in ys]
            if not at:
                continue
            line = [(x[0], ys[quadrant][0]) for x, ys in [*start, *points] if quadrant in ys]
            ax.plot(*zip(*line), linewidth=1.2, color=color)
            _errorbars(ax, at, fmt=marker, markersize=5, color=color, label=recipe)
            drawn = True
        if zero_shot and quadrant in zero_shot[1]:
            _errorbars(ax, [(zero_shot[0], zero_shot[1][quadrant])], fmt="*", markersize=14, color="black",
                       label=ZERO_SHOT_LABEL, zorder=3)  # fmt: skip
        elif not drawn:
            ax.text(0.5, 0.5, "not evaluated", ha="center", va="center", transform=ax.transAxes, color="gray")
    handles = [Line2D([], [], marker=marker, markersize=5, color=color) for color, marker in styles.values()]
    handles += [Line2D([], [], marker="*", markersize=12, color="black", linestyle="none")] if zero_shot else []
    labels = [*curves, *([ZERO_SHOT_LABEL] if zero_shot else [])]
    figure.legend(handles, labels, loc="lower center", ncols=LEGEND_COLUMNS, fontsize="small", frameon=False)
    return figure


def _errorbars(ax: Axes, at: Sequence[tuple[Bar, Bar]], **style: Any) -> None:
    """Points with their intervals as error bars on both axes."""
    xs, ys = [x for x, _ in at], [y for _, y in at]
    ax.errorbar([x[0] for x in xs], [y[0] for y in ys], xerr=_extent(xs), yerr=_extent(ys), linestyle="none",
                elinewidth=0.8, capsize=2, **style)  # fmt: skip


def _extent(bars: Sequence[Bar]) -> list[list[float]]:
    """Matplotlib's error bar lengths (below, above) of intervals around their values."""
    return [[value - low for value, low, _ in bars], [high - value for value, _, high in bars]]


def mixing_curves(path: Path, series: Mapping[str, Sequence[MixPoint]], id_label: str) -> None:
    """Fig. 4: the fine-tuned task's accuracy (left) and the OOD^T-ID^I mean (right) against the share of the
    mixed-in dataset, one line per dataset; ratio 0 is the base set alone, shared by every line."""
    figure = Figure(figsize=(10, 4.4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.27, top=0.9, wspace=0.22)
    axes = figure.subplots(1, 2)
    colors = dict(zip(series, _colors(len(series))))
    for ax, title, column in ((axes[0], f"{id_label}", 1), (axes[1], quadrant_title("OOD^T-ID^I"), 2)):
        ax.set_title(title)
        ax.set_xlabel("mixing ratio")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        for arm, points in series.items():
            xy = sorted((point[0], point[column]) for point in points if point[column] is not None)
            if xy:
                ax.plot(*zip(*xy), marker="o", markersize=4, linewidth=1.2, color=colors[arm])
    handles = [Line2D([], [], marker="o", markersize=4, color=color) for color in colors.values()]
    figure.legend(handles, list(series), loc="lower center", ncols=LEGEND_COLUMNS, fontsize="small", frameon=False)
    _save(figure, path)


def classlabel_bars(path: Path, groups: Mapping[str, Mapping[str, Bar]]) -> None:
    """Fig. 3 (right): per model state (zero-shot, each recipe's final checkpoint) the bars of
    `CLASSLABEL_BARS` that were measured, with their 95 % intervals as error bars."""
    figure = Figure(figsize=(max(7.5, 1.8 * len(groups) + 2), 4.5), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(CLASSLABEL_BARS)
    for index, (bar, color) in enumerate(zip(CLASSLABEL_BARS, _colors(len(CLASSLABEL_BARS)))):
        at = [(g, values[bar]) for g, values in enumerate(groups.values()) if bar in values]
        if not at:
            continue
        xs = [g + (index - (len(CLASSLABEL_BARS) - 1) / 2) * width for g, _ in at]
        bars = [bar_values for _, bar_values in at]
        ax.bar(xs, [value for value, _, _ in bars], width, yerr=_extent(bars), capsize=3, color=color, label=bar)
        for x, (value, _, high) in zip(xs, bars):
            ax.annotate(f"{value:.1f}", (x, high), textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize="x-small")  # fmt: skip
    ax.set_xticks(range(len(groups)), list(groups), rotation=15 if len(groups) > 3 else 0)
    ax.set_ylabel("%")
    ax.set_ylim(0, 120)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("ImageWikiQA with class-label distractors")
    ax.legend(fontsize="small", loc="upper center", ncols=len(CLASSLABEL_BARS), frameon=False)
    _save(figure, path)


def continual_heatmap(path: Path, title: str, tasks: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> None:
    """The task x stage accuracy matrix of one continual sequence: row i is the model after learning task i,
    column j its accuracy (%) on task j's test set; cells not evaluated (tasks not seen yet) stay blank."""
    figure = Figure(figsize=(1.3 * len(tasks) + 2.5, 1.0 * len(tasks) + 1.8), layout="constrained")
    ax = figure.subplots()
    grid = [[math.nan if value is None else value for value in row] for row in matrix]
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white" if value < 60 else "black")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(matrix)), [f"after {task}" for task in tasks[: len(matrix)]])
    ax.set_xlabel("test set")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="accuracy (%)")
    _save(figure, path)


def drift_probe(path: Path, series: Mapping[str, Sequence[ProbePoint]], quadrants: Sequence[str]) -> None:
    """Whether drift from the base predicts forgetting: one row of panels per quadrant, x the KL divergence
    (left) or the answer-token mass shift (right), y the quadrant's change vs zero-shot with its 95 % interval
    as error bars; one marker per checkpoint, one colour per recipe or continual sequence (the legend names those
    with a change measured). A dashed line marks no change."""
    named = [name for name, points in series.items() if any(q in point[2] for point in points for q in quadrants)]
    legend_rows = math.ceil(len(named) / LEGEND_COLUMNS)
    height = 4.2 * len(quadrants) + 0.25 * legend_rows
    figure = Figure(figsize=(10, height))
    bottom = (0.6 + 0.25 * legend_rows) / height
    figure.subplots_adjust(left=0.08, right=0.98, bottom=bottom, top=1 - 0.4 / height, wspace=0.2, hspace=0.35)
    axes = figure.subplots(len(quadrants), 2, squeeze=False)
    colors = dict(zip(series, _colors(len(series))))
    columns = (("KL(base ‖ checkpoint) (nats)", 0), ("answer-token mass shift (pp)", 1))
    for quadrant, row in zip(quadrants, axes):
        for (label, measure), ax in zip(columns, row):
            ax.set_title(f"Δ {quadrant_title(quadrant)} vs drift")
            ax.set_xlabel(label)
            ax.set_ylabel("Δ vs zero-shot (pp)")
            ax.grid(alpha=0.3)
            ax.axhline(0, color="gray", linewidth=0.8, linestyle="--")
            drawn = False
            for name, points in series.items():
                at = [(point[measure], point[2][quadrant]) for point in points if quadrant in point[2]]
                if not at:
                    continue
                bars = [bar for _, bar in at]
                ys = [value for value, _, _ in bars]
                style = {"fmt": "o", "markersize": 4, "capsize": 3, "color": colors[name]}
                ax.errorbar([x for x, _ in at], ys, yerr=_extent(bars), **style)
                drawn = True
            if not drawn:
                ax.text(0.5, 0.5, "not evaluated", ha="center", va="center", transform=ax.transAxes, color="gray")
    handles = [Line2D([], [], marker="o", markersize=4, color=colors[name], linestyle="none") for name in named]
    figure.legend(handles, named, loc="lower center", ncols=LEGEND_COLUMNS, fontsize="small", frameon=False)
    _save(figure, path)


def _markers(count: int) -> list[str]:
    """A marker per series in a fixed order (the star is zero-shot's)."""
    return [MARKERS[index % len(MARKERS)] for index in range(count)]


def _colors(count: int) -> list:
    """Distinct colours in a fixed order: tab10, or tab20 when there are more series than it has."""
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    with atomic.atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120, metadata={"Software": None})
