"""The paper's figures drawn from numbers: valid PNGs, the same bytes for the same numbers."""

from pathlib import Path

import numpy as np
from PIL import Image

from forgetkit.plots import (
    ZERO_SHOT_LABEL,
    classlabel_bars,
    continual_heatmap,
    drift_probe,
    fig2,
    forgetting_curves,
    quadrant_title,
)
from forgetkit.protocol import QUADRANTS


def bar(value: float, half: float = 2.0) -> tuple[float, float, float]:
    return value, value - half, value + half


def quadrants(*means: float) -> dict[str, tuple[float, float, float]]:
    return {quadrant: bar(mean) for quadrant, mean in zip(QUADRANTS, means)}


ZERO_SHOT = (bar(80.11, 1.0), quadrants(77.7, 86.8, 53.35, 61.82))
CURVES = {
    "llm-full-1e-5": [
        (bar(88.0), quadrants(85.0, 86.0, 45.0, 40.0)),
        (bar(91.56), quadrants(89.0, 85.0, 36.79, 28.18)),
    ],
    "llm-full-1e-6": [(bar(91.37), quadrants(89.0, 87.87, 54.41, 60.31))],
}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_fig2_draws_four_panels_and_the_same_numbers_give_the_same_bytes(tmp_path: Path) -> None:
    forgetting_curves(tmp_path / "a.png", CURVES, ZERO_SHOT, "imagenet_vqa_val")
    forgetting_curves(tmp_path / "b.png", CURVES, ZERO_SHOT, "imagenet_vqa_val")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert pixels(tmp_path / "a.png").shape == (1050, 1200, 3), "10 x 8.75 inches (one legend row) at 120 dpi"
    assert b"Software" not in (tmp_path / "a.png").read_bytes(), "no matplotlib version stamped into the file"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "written atomically"


def test_fig2_with_quadrants_not_evaluated_and_no_zero_shot(tmp_path: Path) -> None:
    partial = {"r": [(bar(50.0), {"ID^T-ID^I": bar(48.0)}), (bar(60.0), {"ID^T-ID^I": bar(58.0)})]}
    forgetting_curves(tmp_path / "fig2.png", partial, None, "imagenet_vqa_val")
    assert pixels(tmp_path / "fig2.png").shape == (1050, 1200, 3), "empty panels keep the 2x2 layout"


def test_fig2_is_the_papers_with_zero_shot_lines_intervals_on_both_axes_and_a_style_per_recipe() -> None:
    """The figure's artists, not its pixels: per panel (the paper's 2x2 matrix, x the fine-tuned task), a curve per
    recipe from zero-shot through its checkpoints, every point with its x and y interval, dashed lines through
    zero-shot on both axes, and each recipe its own colour and marker."""
    figure = fig2(CURVES, ZERO_SHOT, "imagenet_vqa_val")
    assert [ax.get_title() for ax in figure.axes] == [quadrant_title(quadrant) for quadrant in QUADRANTS]
    styles = {}
    for quadrant, ax in zip(QUADRANTS, figure.axes):
        assert ax.get_xlabel() == "imagenet_vqa_val accuracy (%)"
        references = [line for line in ax.get_lines() if line.get_gid() == ZERO_SHOT_LABEL]
        assert sorted((tuple(line.get_xdata()), tuple(line.get_ydata())) for line in references) == sorted(
            [((80.11, 80.11), (0, 1)), ((0, 1), (ZERO_SHOT[1][quadrant][0],) * 2)]
        ), "a vertical line at zero-shot's ID accuracy, a horizontal one at its accuracy on the quadrant"
        curves = [line for line in ax.get_lines() if line.get_gid() is None and line.get_marker() == "None"]
        assert [len(line.get_xdata()) for line in curves] == [3, 2], "from zero-shot through each checkpoint"
        assert {(line.get_xdata()[0], line.get_ydata()[0]) for line in curves} == {(80.11, ZERO_SHOT[1][quadrant][0])}
        bars = {container.get_label(): container for container in ax.containers}
        assert set(bars) == {*CURVES, ZERO_SHOT_LABEL}
        for label, points in [*CURVES.items(), (ZERO_SHOT_LABEL, [ZERO_SHOT])]:
            marker_line, _, (xbars, ybars) = bars[label]
            at = [(x, ys[quadrant]) for x, ys in points]
            assert list(zip(marker_line.get_xdata(), marker_line.get_ydata())) == [(x[0], y[0]) for x, y in at]
            x_extents = [((x[1], y[0]), (x[2], y[0])) for x, y in at]
            y_extents = [((x[0], y[1]), (x[0], y[2])) for x, y in at]
            assert np.allclose(xbars.get_segments(), x_extents) and np.allclose(ybars.get_segments(), y_extents)
            styles.setdefault(label, set()).add((marker_line.get_color(), marker_line.get_marker()))
    assert all(len(seen) == 1 for seen in styles.values()), "a recipe looks the same in every panel"
    looks = [next(iter(seen)) for seen in styles.values()]
    assert len({color for color, _ in looks}) == len({marker for _, marker in looks}) == len(looks) == 3
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == [*CURVES, ZERO_SHOT_LABEL]
    assert [handle.get_marker() for handle in legend.legend_handles] == [marker for _, marker in looks]


def test_fig3_bars_take_any_subset_of_the_three_measures(tmp_path: Path) -> None:
    groups = {
        "zero-shot": {"accuracy": (53.25, 50.0, 56.0), "accuracy with class-label distractor": (42.05, 39.0, 45.0)},
        "llm-full-1e-6": {
            "accuracy": (42.95, 40.0, 46.0),
            "accuracy with class-label distractor": (5.55, 4.0, 7.0),
            "mischoice on class name": (90.0, 88.0, 92.0),
        },
    }
    classlabel_bars(tmp_path / "fig3.png", groups)
    assert pixels(tmp_path / "fig3.png").shape[1] >= 600


def test_continual_heatmap_leaves_unseen_tasks_blank(tmp_path: Path) -> None:
    matrix = [[80.0, None], [60.0, 90.0]]
    continual_heatmap(tmp_path / "cl.png", "seq", ["rs", "med"], matrix)
    continual_heatmap(tmp_path / "full.png", "seq", ["rs", "med"], [[80.0, 10.0], [60.0, 90.0]])
    blank, filled = pixels(tmp_path / "cl.png"), pixels(tmp_path / "full.png")
    assert blank.shape == filled.shape and (blank != filled).any()
    white = (blank == 255).all(axis=2).sum()
    assert white > (filled == 255).all(axis=2).sum(), "the not-evaluated cell is left white"


def test_quadrant_names_render_with_superscripts() -> None:
    assert quadrant_title("OOD^T-ID^I") == "OOD$^{T}$-ID$^{I}$"


def test_drift_probe_panels_and_the_same_numbers_give_the_same_bytes(tmp_path: Path) -> None:
    series = {
        "llm-full": [
            (0.1, 4.0, {"OOD^T-ID^I": (-5.0, -9.0, -1.0)}),
            (0.5, 39.0, {"OOD^T-ID^I": (-20.0, -26.0, -14.0)}),
        ],
        "inclora": [(0.05, 1.0, {"OOD^T-ID^I": (1.0, -2.0, 4.0), "OOD^T-OOD^I": (0.0, -3.0, 3.0)})],
    }
    drift_probe(tmp_path / "a.png", series, ["OOD^T-ID^I", "OOD^T-OOD^I"])
    drift_probe(tmp_path / "b.png", series, ["OOD^T-ID^I", "OOD^T-OOD^I"])
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert pixels(tmp_path / "a.png").shape == (1038, 1200, 3), "10 x 8.65 inches (two rows, one legend row)"
    drift_probe(tmp_path / "one.png", series, ["OOD^T-ID^I"])
    assert pixels(tmp_path / "one.png").shape[0] < 600, "one quadrant, one row of panels"
