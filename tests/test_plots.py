"""The paper's figures drawn from numbers: valid PNGs, the same bytes for the same numbers."""

from pathlib import Path

import numpy as np
from PIL import Image

from forgetkit.plots import classlabel_bars, continual_heatmap, drift_probe, forgetting_curves, quadrant_title

ZERO_SHOT = (80.11, {"ID^T-ID^I": 77.7, "ID^T-OOD^I": 86.8, "OOD^T-ID^I": 53.35, "OOD^T-OOD^I": 61.82})
CURVES = {
    "llm-full-1e-5": [
        (88.0, {"ID^T-ID^I": 85.0, "ID^T-OOD^I": 86.0, "OOD^T-ID^I": 45.0, "OOD^T-OOD^I": 40.0}),
        (91.56, {"ID^T-ID^I": 89.0, "ID^T-OOD^I": 85.0, "OOD^T-ID^I": 36.79, "OOD^T-OOD^I": 28.18}),
    ],
    "llm-full-1e-6": [(91.37, {"ID^T-ID^I": 89.0, "ID^T-OOD^I": 87.87, "OOD^T-ID^I": 54.41, "OOD^T-OOD^I": 60.31})],
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
    partial = {"r": [(50.0, {"ID^T-ID^I": 48.0}), (60.0, {"ID^T-ID^I": 58.0})]}
    forgetting_curves(tmp_path / "fig2.png", partial, None, "imagenet_vqa_val")
    assert pixels(tmp_path / "fig2.png").shape == (1050, 1200, 3), "empty panels keep the 2x2 layout"


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
