"""Scoring prediction files (LF's generated_predictions.jsonl, VLMEvalKit's results, any predict/label JSON)
and run directories."""

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from forgetkit.errors import ForgetkitError
from forgetkit.matchers import MATCHERS
from forgetkit.report.terminal import format_quadrants, format_table, quadrant_means
from forgetkit.rundir import RunDir
from forgetkit.scoring import score_file, score_items, score_run


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_predictions(path: Path, pairs: list[tuple[str, str]]) -> Path:
    """LF's generated_predictions.jsonl rows; LF labels end in the ChatML turn's newline."""
    return write_rows(
        path, [{"prompt": "<|im_start|>user ...", "predict": p, "label": f"{label}\n"} for p, label in pairs]
    )


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
    path.write_text('{"output": "A", "label": "A"}\n')
    with pytest.raises(ForgetkitError, match=r"p.jsonl:1: expected an object with 'predict' and 'label'"):
        score_file(path)
    path.write_text('{"predict": null, "label": "A"}\n')
    with pytest.raises(
        ForgetkitError, match=r"p.jsonl:1: 'predict' is null, not text; fix the line or pass --skip-bad"
    ):
        score_file(path)
    path.write_text('{"predict": "A", "label": "A", "correct": "maybe"}\n')
    with pytest.raises(ForgetkitError, match=r"p.jsonl:1: 'correct' is 'maybe', not a verdict"):
        score_file(path)
    path.write_bytes(b'{"predict": "\xff", "label": "A"}\n')
    with pytest.raises(ForgetkitError, match=r"p.jsonl is not UTF-8 text"):
        score_file(path)


def test_empty_or_missing_file_is_an_error_not_zero_percent(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ForgetkitError, match="holds no predictions"):
        score_file(tmp_path / "empty.jsonl")
    with pytest.raises(ForgetkitError, match="does not exist"):
        score_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.json").write_text(" []\n")
    with pytest.raises(ForgetkitError, match="holds no predictions"):
        score_items(tmp_path / "empty.json")


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


def test_skip_bad_leaves_malformed_lines_out_and_counts_them(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "p.jsonl", [("B", "B"), ("A", "C")])
    path.write_text(
        path.read_text() + '{"predict": "A"\n\n[1, 2]\n' + json.dumps({"predict": "D", "label": "D"}) + "\n"
    )
    score = score_file(path, skip_bad=True)
    assert (score.correct, score.total, score.skipped) == (2, 3, 2)
    assert score.to_dict() == {"accuracy": 2 / 3, "correct": 2, "total": 3, "matcher": "letter", "skipped": 2}
    assert score_items(path, skip_bad=True) == [True, False, True]
    with pytest.raises(ForgetkitError, match=r"p.jsonl:3: not a JSON line"):
        score_items(path)


def test_a_file_of_nothing_but_malformed_lines_is_an_error_even_with_skip_bad(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text("not json\n{}\n")
    with pytest.raises(ForgetkitError, match="all 2 lines are malformed; nothing to score"):
        score_file(path, skip_bad=True)


def test_a_json_list_of_predictions_is_read_like_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"predict": "B", "label": "B"}, {"predict": "C", "label": "A"}, "oops"], indent=1))
    with pytest.raises(ForgetkitError, match=r"p.json item 3: expected an object"):
        score_file(path)
    assert score_file(path, skip_bad=True).to_dict()["skipped"] == 1
    path.write_text('[{"predict": "B", "label": "B"},\n')
    with pytest.raises(ForgetkitError, match=r"p.json:2: not valid JSON"):
        score_file(path)


def test_a_jsonl_file_is_one_object_a_line_even_when_its_first_line_is_a_list(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps([{"predict": "B", "label": "B"}]) + "\n")
    with pytest.raises(ForgetkitError, match=r"p.jsonl:1: expected an object .*, found a list; fix the line"):
        score_file(path)
    path.write_text(json.dumps([{"predict": "B", "label": "B"}], indent=1))
    with pytest.raises(ForgetkitError, match=r"p.jsonl:1: not a JSON line"):
        score_file(path)
    path.write_text("[]\n" + json.dumps({"predict": "B", "label": "B"}) + "\n")
    assert score_file(path, skip_bad=True).to_dict() == {
        "accuracy": 1.0,
        "correct": 1,
        "total": 1,
        "matcher": "letter",
        "skipped": 1,
    }


@pytest.mark.parametrize("matcher", sorted(MATCHERS))
def test_an_empty_label_is_a_malformed_row_so_an_empty_answer_never_matches_it(tmp_path: Path, matcher: str) -> None:
    row = {"prompt": "Which letter?", "class_option": "B", "predict": ""}
    path = write_rows(tmp_path / "p.jsonl", [row | {"label": "B\n"}, row | {"label": "\n"}])
    with pytest.raises(ForgetkitError, match=r"p.jsonl:2: 'label' is empty, nothing to score against; fix the line"):
        score_items(path, matcher)
    assert score_items(path, matcher, skip_bad=True) == [False]  # an empty answer to a real label is simply wrong


def test_an_empty_answer_of_a_judged_file_is_malformed_whatever_its_verdict(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "vlmeval:MMMU.jsonl", [{"predict": "", "label": " ", "correct": True}])
    with pytest.raises(ForgetkitError, match=r"vlmeval:MMMU.jsonl:1: 'label' is empty"):
        score_file(path)


def test_rows_that_disagree_on_having_a_verdict_are_an_error_naming_the_first_that_differs(tmp_path: Path) -> None:
    judged = {"predict": "A", "label": "A", "correct": True}
    bare = {"predict": "B", "label": "A"}
    path = write_rows(tmp_path / "p.jsonl", [judged, judged, bare, judged])
    for skip_bad in (False, True):
        with pytest.raises(ForgetkitError, match=r"p.jsonl:3: no verdict \('correct' or 'hit'\) where line 1 has one"):
            score_file(path, skip_bad=skip_bad)
    write_rows(path, [bare, {**judged, "correct": False}])
    with pytest.raises(ForgetkitError, match=r"p.jsonl:2: a verdict .* where line 1 has none"):
        score_items(path, "mllmcl-med")
    write_rows(path, [judged, {**judged, "correct": False}])
    assert score_items(path) == [True, False]
    write_rows(path, [bare, bare])
    assert score_items(path) == [False, False]


def vlmeval_items() -> pd.DataFrame:
    """VLMEvalKit's per-item result columns (index, question, options, answer, prediction, hit)."""
    return pd.DataFrame(
        {
            "index": [0, 1, 2, 3],
            "question": ["q0", "q1", "q2", "q3"],
            "A": ["x", "y", "z", "w"],
            "answer": ["A", "B", "NA", "C"],
            "prediction": ["A", "The answer is B", "NA", ""],
            "hit": [1, 1, 0, 0],
        }
    )


@pytest.mark.parametrize("suffix", [".xlsx", ".csv", ".tsv"])
def test_vlmevalkit_result_tables_keep_the_judges_hits(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model_VMCBench_result{suffix}"
    frame = vlmeval_items()
    if suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    assert score_file(path).to_dict() == {"accuracy": 0.5, "correct": 2, "total": 4, "matcher": "vlmevalkit"}
    assert score_items(path) == [True, True, False, False]
    # another matcher reads their prediction and answer columns instead ('NA' stays text, not a missing value)
    assert score_items(path, "mllmcl-med") == [True, True, True, False]


def test_vlmevalkit_items_kept_by_a_run_are_scored_by_their_verdicts(tmp_path: Path) -> None:
    rows = [
        {"index": i, "prediction": p, "answer": a, "correct": c}
        for i, (p, a, c) in enumerate([("A", "A", True), ("B", "C", False), ("D", "D", True)])
    ]
    path = write_rows(tmp_path / "vlmeval:MMMU_DEV_VAL.jsonl", rows)
    assert score_file(path).to_dict() == {"accuracy": 2 / 3, "correct": 2, "total": 3, "matcher": "vlmevalkit"}


def test_unanswerable_earns_nothing_but_stays_in_the_denominator(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "mllmcl_med_test.jsonl",
        [
            {"predict": "lung", "label": "lung\n"},
            {"predict": "Unanswerable: lung", "label": "lung\n"},
            {"predict": "heart", "label": "lung\n"},
            {"predict": "A lung section", "label": "lung\n"},
        ],
    )
    assert score_items(path, "mllmcl-med") == [True, False, False, True]
    assert score_file(path, "auto").to_dict() == {"accuracy": 0.5, "correct": 2, "total": 4, "matcher": "mllmcl-med"}


def test_sci_which_states_questions_earn_partial_credit(tmp_path: Path) -> None:
    prompt = "<|im_start|>user\n<image>\nWhich states have a value above 50?<|im_end|>\n<|im_start|>assistant\n"
    path = write_rows(
        tmp_path / "p.jsonl",
        [
            {"prompt": prompt, "predict": "Texas, Nevada", "label": "Texas, Ohio\n"},
            {"prompt": prompt, "predict": "Texas, Ohio", "label": "Texas, Ohio\n"},
            {"prompt": "<image>\nWhich letter?", "predict": "A", "label": "B\n"},
        ],
    )
    assert score_items(path, "mllmcl-sci") == [0.5, True, False]
    assert score_file(path, "mllmcl-sci").to_dict() == {
        "accuracy": 0.5,
        "correct": 1.5,
        "total": 3,
        "matcher": "mllmcl-sci",
    }


@pytest.mark.parametrize("matcher", ["letter", "mllmcl-rs", "mllmcl-med", "mllmcl-sci", "mllmcl-fin"])
def test_score_file_is_the_sum_of_score_items(tmp_path: Path, matcher: str) -> None:
    prompt = "Which states are shown?"
    pairs = [("B", "B"), ("Answer: C", "C"), ("no", "yes"), ("Texas, Ohio", "Texas"), ("yes", "Yes"), ("", "A")]
    rows = [{"prompt": prompt, "predict": p, "label": f"{label}\n"} for p, label in pairs]
    path = write_rows(tmp_path / "p.jsonl", rows)
    path.write_text(path.read_text() + "{broken\n")
    items = score_items(path, matcher, skip_bad=True)
    score = score_file(path, matcher, skip_bad=True)
    assert (sum(items), len(items), score.skipped) == (score.correct, score.total, 1)


def test_score_run_scores_mllmcl_test_sets_by_their_domain_unless_told_otherwise(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run").create()
    write_rows(
        run.predictions("zero-shot", "mllmcl_fin_test"),
        [{"predict": "Yes .", "label": "Yes\n"}, {"predict": "B", "label": "B\n"}, {"predict": "no", "label": "Yes\n"}],
    )
    write_predictions(run.predictions("zero-shot", "imagenet_vqa_val"), [("B", "B"), ("Answer: C", "C")])
    table = score_run(run)
    assert table["zero-shot"]["mllmcl_fin_test"] == {
        "accuracy": 2 / 3,
        "correct": 2,
        "total": 3,
        "matcher": "mllmcl-fin",
    }
    assert table["zero-shot"]["imagenet_vqa_val"]["matcher"] == "letter"
    assert json.loads(run.scores_path.read_text()) == table
    forced = score_run(run, "letter")["zero-shot"]["mllmcl_fin_test"]
    assert (forced["matcher"], forced["correct"]) == ("letter", 1)  # Fin drops the space, Listing 1 does not


def classlabel_release(root: Path) -> Path:
    """Four ImageWikiQA questions in the released jsonl layout, none of whose options is its class name."""
    (root / "images").mkdir(parents=True)
    questions = [
        (
            "stretcher",
            "What is this mainly used for?",
            ["Carrying a patient", "Storing tools", "Measuring", "Art"],
            "A",
        ),
        ("lynx", "Which region is NOT its habitat?", ["Northern Europe", "Central Africa", "Siberia", "Canada"], "B"),
        ("jacamar", "Where is this bird mostly found?", ["Polar zones", "Deserts", "Forest edges", "Open ocean"], "C"),
        ("payphone", "What does it need to place a call?", ["Sunlight", "A key", "Water", "Coins or a card"], "D"),
    ]
    with open(root / "imagewikiqa.jsonl", "w") as handle:
        for index, (name, question, options, answer) in enumerate(questions):
            image = f"images/ILSVRC2012_val_{index + 1:08d}.JPEG"
            Image.new("RGB", (16, 16), (40 * index, 90, 160)).save(root / image, "JPEG")
            text = "\n".join([question, *(f"{k}. {o}" for k, o in zip("ABCD", options)), "Choose A, B, C, or D."])
            handle.write(json.dumps({"image": image, "text": text, "label": answer, "classname": name}) + "\n")
    return root


def lf_predictions(data: Path, dataset: str, answers: list[str], path: Path) -> Path:
    """What LF's prediction writes for `dataset`'s LF JSON (ChatML prompt, label with the turn's newline)."""
    rows = json.loads((data / f"{dataset}.json").read_text())
    return write_rows(
        path,
        [
            {
                "prompt": f"<|im_start|>user\n{row['messages'][0]['content']}<|im_end|>\n<|im_start|>assistant\n",
                "predict": answer,
                "label": row["messages"][1]["content"] + "\n",
            }
            for row, answer in zip(rows, answers, strict=True)
        ],
    )


@pytest.fixture(scope="module")
def classlabel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = classlabel_release(tmp_path_factory.mktemp("imagewikiqa"))
    out = tmp_path_factory.mktemp("data")
    run_builder("imagewikiqa-classlabel", BuildOptions(source=source, out=out, split="val"))
    return out


def test_mischoice_rate_reads_the_planted_option_from_the_records_sidecar(classlabel: Path, tmp_path: Path) -> None:
    records = [
        json.loads(line) for line in (classlabel / "imagewikiqa_classlabel.records.jsonl").read_text().splitlines()
    ]
    planted = [row["class_option"] for row in records]
    answers = [planted[0], planted[1] + ". " + records[1]["class_label"], records[2]["answer"], "no idea"]
    path = lf_predictions(classlabel, "imagewikiqa_classlabel", answers, tmp_path / "imagewikiqa_classlabel.jsonl")
    sidecar = classlabel / "imagewikiqa_classlabel.records.jsonl"
    score = score_file(path, "classlabel-mischoice", sidecar=sidecar)
    assert score.to_dict() == {"accuracy": 0.5, "correct": 2, "total": 4, "matcher": "classlabel-mischoice"}
    assert score_items(path, "classlabel-mischoice", sidecar=sidecar) == [True, True, False, False]
    assert score_file(path, sidecar=sidecar).correct == 1  # the letter matcher still scores accuracy
    with pytest.raises(ForgetkitError, match=r"classlabel.jsonl:1: matcher classlabel-mischoice needs 'class_option'"):
        score_file(path, "classlabel-mischoice")


def test_rows_may_carry_the_class_option_themselves_and_skip_bad_skips_those_that_do_not(tmp_path: Path) -> None:
    rows = [
        {"predict": "C", "label": "A", "class_option": "C"},
        {"predict": "A", "label": "A"},
        {"predict": "B. lynx", "label": "D", "class_option": "B"},
        {"predict": "D", "label": "D", "class_option": "A"},
    ]
    path = write_rows(tmp_path / "p.jsonl", rows)
    with pytest.raises(ForgetkitError, match=r"p.jsonl:2: matcher classlabel-mischoice needs 'class_option'"):
        score_items(path, "classlabel-mischoice")
    assert score_items(path, "classlabel-mischoice", skip_bad=True) == [True, True, False]
    score = score_file(path, "classlabel-mischoice", skip_bad=True)
    assert (score.correct, score.total, score.skipped) == (2, 3, 1)


def test_a_sidecar_of_other_predictions_is_refused(classlabel: Path, tmp_path: Path) -> None:
    sidecar = classlabel / "imagewikiqa_classlabel.records.jsonl"
    path = lf_predictions(classlabel, "imagewikiqa_classlabel", ["A"] * 4, tmp_path / "p.jsonl")
    rows = path.read_text().splitlines()
    (tmp_path / "shuffled.jsonl").write_text("\n".join(rows[::-1]) + "\n")
    with pytest.raises(ForgetkitError, match=r"shuffled.jsonl:1: label 'D' but .*records.jsonl row 1 answers 'A'"):
        score_file(tmp_path / "shuffled.jsonl", "classlabel-mischoice", sidecar=sidecar)
    (tmp_path / "short.jsonl").write_text("\n".join(rows[:3]) + "\n")
    with pytest.raises(ForgetkitError, match=r"has 4 rows for the 3 predictions"):
        score_file(tmp_path / "short.jsonl", "classlabel-mischoice", sidecar=sidecar)
    with pytest.raises(ForgetkitError, match=r"sidecar .*nope.jsonl does not exist"):
        score_file(path, "classlabel-mischoice", sidecar=tmp_path / "nope.jsonl")


def test_mllmcl_meta_sidecar_gives_sci_the_question_a_bare_predict_label_file_lacks(tmp_path: Path) -> None:
    source = tmp_path / "Domain_data"
    (source / "Sci" / "images").mkdir(parents=True)
    for k in range(2):
        Image.new("RGB", (8, 8), (90 * k, 10, 10)).save(source / "Sci" / "images" / f"MapQA_{k}.png")
    questions = [
        {
            "question_id": 0,
            "image": "images/MapQA_0.png",
            "text": "Which states have a coast?",
            "answer": "Texas, Ohio",
        },
        {"question_id": 1, "image": "images/MapQA_1.png", "text": "Is Texas larger than Ohio?", "answer": "Yes"},
    ]
    (source / "Sci" / "test.json").write_text(json.dumps(questions))
    data = tmp_path / "data"
    run_builder("mllm-cl", BuildOptions(source=source, out=data, split="test", params={"domain": "Sci"}))
    bare = write_rows(
        tmp_path / "mllmcl_sci_test.jsonl",
        [{"predict": "Texas", "label": "Texas, Ohio"}, {"predict": "Yes, it is", "label": "Yes"}],
    )
    with pytest.raises(ForgetkitError, match=r"mllmcl_sci_test.jsonl:1: matcher mllmcl-sci needs the question text"):
        score_file(bare, "auto")
    score = score_file(bare, "auto", sidecar=data / "mllmcl_sci_test.meta.jsonl")
    assert (score.correct, score.total, score.matcher) == (1.5, 2, "mllmcl-sci")
