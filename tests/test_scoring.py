"""Scoring LF's generated_predictions.jsonl with the letter matcher."""

import json
from pathlib import Path

import pytest

from forgetkit.errors import ForgetkitError
from forgetkit.scoring import format_quadrants, format_table, quadrant_means, score_file


def write_predictions(path: Path, pairs: list[tuple[str, str]]) -> Path:
    rows = [{"prompt": "<|im_start|>user ...", "predict": p, "label": f"{label}\n"} for p, label in pairs]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_accuracy_of_an_lf_prediction_file(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.jsonl", [("B", "B"), ("Answer: C", "C"), ("A. cat", "A"), ("D", "A")])
    score = score_file(path)
    assert (score.correct, score.total, score.accuracy) == (3, 4, 0.75)
    assert score.to_dict() == {"accuracy": 0.75, "correct": 3, "total": 4, "matcher": "letter"}


def test_malformed_line_is_named(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.jsonl", [("B", "B")])
    path.write_text(path.read_text() + '{"predict": "A"\n')
    with pytest.raises(ForgetkitError, match=r"p.jsonl:2: not a JSON line"):
        score_file(path)
    path.write_text('{"prediction": "A", "label": "A"}\n')
    with pytest.raises(ForgetkitError, match=r"p.jsonl:1: expected an object with 'predict' and 'label'"):
        score_file(path)


def test_empty_or_missing_file_is_an_error_not_zero_percent(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ForgetkitError, match="holds no predictions"):
        score_file(tmp_path / "empty.jsonl")
    with pytest.raises(ForgetkitError, match="does not exist"):
        score_file(tmp_path / "nope.jsonl")


def test_table_has_a_row_per_checkpoint_and_a_column_per_dataset() -> None:
    table = {
        "zero-shot": {"imagenet_vqa_val": {"accuracy": 0.25}, "flowers": {"accuracy": 0.5}},
        "llm-full/checkpoint-10": {"imagenet_vqa_val": {"accuracy": 0.875}},
    }
    lines = format_table(table).splitlines()
    assert lines[0].split() == ["checkpoint", "flowers", "imagenet_vqa_val"]
    assert lines[2].split() == ["zero-shot", "50.00", "25.00"]
    assert lines[3].split() == ["llm-full/checkpoint-10", "-", "87.50"]


def test_quadrant_means_average_their_datasets_and_report_the_change_in_points() -> None:
    def acc(value: float) -> dict:
        return {"accuracy": value, "correct": 0, "total": 1, "matcher": "letter"}

    table = {
        "zero-shot": {"imagenet_vqa_val": acc(0.80), "imagenetv2_vqa_test": acc(0.70), "imagewikiqa": acc(0.50)},
        "r/checkpoint-10": {"imagenet_vqa_val": acc(0.90), "imagenetv2_vqa_test": acc(0.80), "imagewikiqa": acc(0.40)},
        "r/checkpoint-20": {"imagenet_vqa_val": acc(0.95)},
    }
    quadrants = {"ID^T-ID^I": ["imagenet_vqa_val", "imagenetv2_vqa_test"], "OOD^T-ID^I": ["imagewikiqa"]}
    means = quadrant_means(table, quadrants)
    assert means["zero-shot"] == pytest.approx({"ID^T-ID^I": 0.75, "OOD^T-ID^I": 0.50})
    assert means["r/checkpoint-10"] == pytest.approx({"ID^T-ID^I": 0.85, "OOD^T-ID^I": 0.40})
    assert "r/checkpoint-20" not in means, "a quadrant is reported only when all its datasets were scored"
    text = format_quadrants(means)
    assert "85.00 (+10.00)" in text and "40.00 (-10.00)" in text


def test_score_items_are_score_files_verdicts_in_file_order(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.jsonl", [("B", "B"), ("D", "A"), ("Answer: C", "C")])
    from forgetkit.scoring import score_items

    assert score_items(path) == [True, False, True]
    assert sum(score_items(path)) == score_file(path).correct
