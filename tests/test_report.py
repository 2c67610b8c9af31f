"""The run report: bootstrap intervals, forgetting calls, the paper's tables and the files written."""

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as scipy_stats
from test_cli import run_main

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.report import build_report, summary, write_merged_table2, write_report
from forgetkit.report.render import fig2_points
from forgetkit.report.stats import Bootstrap, Estimate, continual_metrics
from forgetkit.report.text import headline
from forgetkit.rundir import ZERO_SHOT, RunDir
from forgetkit.scoring import score_run
from forgetkit.spec import load_study, stage_label
from forgetkit.study import prepare

REPO = Path(__file__).resolve().parents[1]
LETTERS = "ABCD"


def answers(right: Iterable[int], total: int, shift: int = 0) -> list[dict]:
    """`total` LF prediction rows answered right exactly at the indices in `right`; `shift` rotates the labels,
    which makes the file one of different items."""
    right = set(right)
    rows = []
    for i in range(total):
        label = LETTERS[(i + shift) % 4]
        predict = label if i in right else LETTERS[(i + shift + 1) % 4]
        rows.append({"prompt": f"question {i}", "predict": predict, "label": f"{label}\n"})
    return rows


def make_run(root: Path, predictions: dict, quadrants: dict | None = None, continual: dict | None = None) -> Path:
    """A run directory as `launch` leaves it: prediction files, quadrants/continual layout, scores.json."""
    run = RunDir(root).create()
    for checkpoint, sets in predictions.items():
        for dataset, rows in sets.items():
            atomic.write_jsonl(run.predictions(checkpoint, dataset), rows)
    if quadrants:
        atomic.write_json(run.quadrants_path, quadrants)
    if continual:
        atomic.write_json(run.continual_path, continual)
    score_run(run)
    return root


def by(rows: list[dict], **keys: str) -> dict:
    [row] = [row for row in rows if all(row[k] == v for k, v in keys.items())]
    return row


def test_identical_files_give_an_exact_zero_change_and_every_interval_holds_its_estimate(tmp_path: Path) -> None:
    same = answers(range(0, 100, 3), 120)
    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: {"set": same, "other": answers(range(40), 50)},
            "r/checkpoint-5": {"set": same, "other": answers(range(10, 45), 50)},
        },
    )
    numbers = build_report(run)

    change = by(numbers["changes"], checkpoint="r/checkpoint-5", dataset="set")
    assert (change["change_pp"], change["change_ci_low_pp"], change["change_ci_high_pp"]) == (0.0, 0.0, 0.0)
    assert change["paired"] is True and change["forgetting"] is False
    for row in numbers["accuracies"]:
        assert row["accuracy_ci_low_pct"] <= row["accuracy_pct"] <= row["accuracy_ci_high_pct"]
    for row in numbers["changes"]:
        assert row["change_ci_low_pp"] <= row["change_pp"] <= row["change_ci_high_pp"]
    assert by(numbers["accuracies"], checkpoint=ZERO_SHOT, dataset="set")["accuracy_pct"] == round(100 * 34 / 120, 4)


def test_forgetting_is_called_only_when_the_whole_interval_is_below_zero(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: {"big": answers(range(800), 1000), "noise": answers(range(50), 100)},
            # 10 pp lower on 1000 items; 3 pp lower on 100 items, right and wrong on different questions.
            "r/checkpoint-5": {"big": answers(range(100, 800), 1000), "noise": answers(range(10, 57), 100)},
        },
    )
    changes = build_report(run)["changes"]
    big, noise = by(changes, dataset="big"), by(changes, dataset="noise")
    assert big["change_pp"] == pytest.approx(-10) and big["change_ci_high_pp"] < 0 and big["forgetting"]
    assert noise["change_pp"] == pytest.approx(-3) and noise["change_ci_low_pp"] < 0 < noise["change_ci_high_pp"]
    assert not noise["forgetting"]


def test_files_of_different_items_are_compared_unpaired(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {ZERO_SHOT: {"set": answers(range(30), 60)}, "r/checkpoint-5": {"set": answers(range(30), 60, shift=1)}},
    )
    change = build_report(run)["changes"][0]
    assert change["paired"] is False and change["change_pp"] == 0.0
    assert change["change_ci_low_pp"] < 0 < change["change_ci_high_pp"], "two independent resamples do not cancel"


@pytest.mark.parametrize("credit", [[1.0] * 30 + [0.0] * 70, [1.0] * 20 + [0.5] * 10 + [0.0] * 20])
def test_the_bootstrap_draws_what_resampling_item_indices_draws(credit: list[float]) -> None:
    credit = np.array(credit)
    rng = np.random.default_rng(1)
    by_index = credit[rng.integers(0, credit.size, size=(20000, credit.size))].mean(axis=1)
    drawn = Bootstrap(resamples=20000, seed=3).mean("x", credit)
    quantiles = [0.025, 0.5, 0.975]
    assert np.quantile(drawn, quantiles) == pytest.approx(np.quantile(by_index, quantiles), abs=0.011)
    assert drawn.std() == pytest.approx(by_index.std(), rel=0.05)
    assert np.array_equal(drawn, Bootstrap(resamples=20000, seed=3).mean("x", credit)), "seeded"


def test_intervals_agree_with_scipy_bootstrap_and_a_single_accuracy_at_0_or_100_percent_does_not_collapse() -> None:
    """A paired change is Efron's percentile bootstrap: scipy.stats.bootstrap with as many resamples agrees within
    Monte Carlo error (the two draw different random streams). A single accuracy is the Bayesian bootstrap with a
    Jeffreys prior: its percentiles are the Jeffreys interval (scipy's Beta quantiles), agree with Efron's away from
    the bounds, and still bound an accuracy of 0 % or 100 %, where Efron's collapses to one point."""
    resamples = 20000
    rng = np.random.default_rng(0)
    before = (rng.random(300) < 0.6).astype(float)
    after = np.where(rng.random(300) < 0.2, 1 - before, before)
    change = Estimate(float((after - before).mean()), Bootstrap(resamples, seed=0).mean("Δ", after - before))
    theirs = scipy_stats.bootstrap(
        (after, before),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        paired=True,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    ours = change.interval()
    assert (ours.low, ours.high) == pytest.approx((100 * theirs.low, 100 * theirs.high), abs=0.3)

    for right, total in [(0, 48), (48, 48), (3, 48), (220, 400)]:
        credit = np.array([1.0] * right + [0.0] * (total - right))
        interval = Estimate(right / total, Bootstrap(resamples, seed=0).accuracy("acc", credit)).interval()
        jeffreys = scipy_stats.beta.ppf([0.025, 0.975], right + 0.5, total - right + 0.5) * 100
        efron = scipy_stats.bootstrap(
            (credit,), np.mean, n_resamples=resamples, method="percentile", rng=np.random.default_rng(0)
        ).confidence_interval
        if right in (0, total):
            assert efron.low == efron.high == right / total, "Efron's bootstrap collapses at the bounds"
            jeffreys[1 if right else 0] = interval.value  # the Jeffreys interval as Brown, Cai & DasGupta bound it
            assert interval.high - interval.low > 4.5, "about 5 pp: what 48 items all wrong (right) cannot rule out"
        assert [interval.low, interval.high] == pytest.approx(jeffreys, abs=0.3)
        if total == 400:
            assert (interval.low, interval.high) == pytest.approx((100 * efron.low, 100 * efron.high), abs=0.5)


def test_a_quadrant_mean_resamples_its_datasets_jointly(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {ZERO_SHOT: {"a": answers(range(0, 200, 2), 200), "b": answers(range(1, 200, 2), 200)}},
        quadrants={"ID^T-OOD^I": ["a", "b"]},
    )
    numbers = build_report(run)
    quadrant = by(numbers["quadrants"], checkpoint=ZERO_SHOT)
    width = quadrant["accuracy_ci_high_pct"] - quadrant["accuracy_ci_low_pct"]
    widths = [row["accuracy_ci_high_pct"] - row["accuracy_ci_low_pct"] for row in numbers["accuracies"]]
    assert quadrant["accuracy_pct"] == 50.0
    assert width < 0.8 * min(widths), "the mean of two independently resampled sets varies less than either"


def test_last_average_and_backward_transfer_of_a_hand_computed_matrix() -> None:
    matrix = [[0.80, None, None], [0.60, 0.90, None], [0.50, 0.70, 0.95]]
    metrics = continual_metrics(matrix, float, lambda xs: sum(xs) / len(xs), lambda before, after: after - before)
    assert metrics["last"] == [0.50, 0.70, 0.95]
    assert metrics["average"] == pytest.approx([0.80, 0.75, (0.50 + 0.70 + 0.95) / 3])
    assert metrics["bwt"] == pytest.approx(((0.50 - 0.80) + (0.70 - 0.90)) / 2)
    unfinished = continual_metrics(matrix[:2] + [[0.5, None, None]], float, lambda xs: sum(xs) / len(xs), None)
    assert unfinished["last"] == [None] * 3 and unfinished["bwt"] is None and unfinished["average"][2] is None
    assert metrics["fwt"] is None, "forward transfer needs the zero-shot row and every task tested before it is learned"


def test_forward_transfer_compares_each_task_before_it_is_learned_with_zero_shot() -> None:
    matrix = [[0.80, 0.40, 0.30], [0.60, 0.90, 0.20], [0.50, 0.70, 0.95]]
    zero_shot = [0.25, 0.50, 0.30]
    metrics = continual_metrics(matrix, float, lambda xs: sum(xs) / len(xs), lambda a, b: b - a, zero_shot)
    assert metrics["fwt"] == pytest.approx(((0.40 - 0.50) + (0.20 - 0.30)) / 2)
    assert metrics["bwt"] == pytest.approx(((0.50 - 0.80) + (0.70 - 0.90)) / 2)
    seen_only = [[0.80, None, None], [0.60, 0.90, None], [0.50, 0.70, 0.95]]
    assert (
        continual_metrics(seen_only, float, lambda xs: sum(xs) / len(xs), lambda a, b: b - a, zero_shot)["fwt"] is None
    )


QUADRANTS = {
    "ID^T-ID^I": ["imagenet_vqa_val"],
    "ID^T-OOD^I": ["flowers"],
    "OOD^T-ID^I": ["imagewikiqa"],
    "OOD^T-OOD^I": ["mmmu", "vmcbench"],
}


def two_recipe_run(root: Path) -> Path:
    """Zero-shot, a recipe that forgets OOD^T-ID^I (full) and one that does not (lora), 100 items per set."""

    def sets(imagenet: int, imagewikiqa: range, mmmu: range) -> dict:
        return {
            "imagenet_vqa_val": answers(range(imagenet), 100),
            "flowers": answers(range(60), 100),
            "imagewikiqa": answers(imagewikiqa, 100),
            "mmmu": answers(mmmu, 100),
            "vmcbench": answers(range(40), 100),
        }

    return make_run(
        root,
        {
            ZERO_SHOT: sets(60, range(50), range(40)),
            "full/checkpoint-10": sets(80, range(45), range(40)),
            "full/checkpoint-20": sets(90, range(30), range(4, 41)),
            "lora/checkpoint-20": sets(85, range(1, 52), range(40)),
        },
        quadrants=QUADRANTS,
    )


def test_table1_rows_are_each_recipes_final_checkpoint_with_flagged_degradations(tmp_path: Path) -> None:
    table1 = build_report(two_recipe_run(tmp_path / "run"))["table1"]
    full, lora = by(table1, recipe="full"), by(table1, recipe="lora")
    assert full["checkpoint"] == "full/checkpoint-20" and full["id_accuracy_pct"] == 90.0
    assert full["id_vs_reference_pp"] is None and lora["id_vs_reference_pp"] == -5.0  # no spec: vs the best
    assert full["OOD^T-ID^I change_pp"] == -20.0
    assert full["OOD^T-ID^I over 3 pp"] and full["OOD^T-ID^I forgetting"]
    # OOD^T-OOD^I is the mean of mmmu (-3 pp) and vmcbench (0): -1.5 pp, within the margin.
    assert full["OOD^T-OOD^I change_pp"] == -1.5 and not full["OOD^T-OOD^I over 3 pp"]
    assert not full["all within 3 pp"]
    assert lora["OOD^T-ID^I change_pp"] == 1.0 and lora["OOD^T-OOD^I change_pp"] == 0.0 and lora["all within 3 pp"]


def test_table1_brackets_are_against_the_llm_full_1e_5_recipe_as_the_paper_prints_them(tmp_path: Path) -> None:
    run = two_recipe_run(tmp_path / "run")
    (run / "spec.yaml").write_text(
        "name: t\nmodel: qwen2.5-vl-3b\ndata: {dataset_dir: d}\neval: {datasets: [imagenet_vqa_val]}\n"
        "recipes: {full: {lr: 1.0e-6}, lora: {preset: fig2-b}}\n"  # `lora` named so, but it is LLM full at 1e-5
    )
    numbers = build_report(run)
    full, lora = by(numbers["table1"], recipe="full"), by(numbers["table1"], recipe="lora")
    assert numbers["table1_reference"] == "lora"
    assert lora["id_vs_reference_pp"] is None and full["id_vs_reference_pp"] == 5.0
    assert "imagenet_vqa_val % (vs lora, pp)" in summary(write_report(run))


def test_table2c_reads_each_data_fraction_off_a_checkpoint_of_its_run(tmp_path: Path) -> None:
    """App. C.2: 0.25 % and 2.5 % are steps 200 / 2000 of the 2000-step run, 25 % / 100 % steps 20k / 80k."""
    val = {
        f"{recipe}/checkpoint-{step}": {"imagenet_vqa_val": answers(range(right), 100)}
        for recipe, step, right in [
            ("short-1e-6", 200, 82),
            ("short-1e-6", 2000, 87),
            ("short-1e-5", 200, 81),
            ("short-1e-5", 2000, 88),
            ("long-1e-6", 20000, 90),
            ("long-1e-6", 40000, 91),
            ("long-1e-6", 80000, 92),
            ("fig2-c", 80000, 93),
        ]
    }
    run = make_run(
        tmp_path / "run",
        {ZERO_SHOT: {"imagenet_vqa_val": answers(range(80), 100)}, **val},
        quadrants={"ID^T-ID^I": ["imagenet_vqa_val"]},
    )
    (run / "spec.yaml").write_text(
        "name: t\nmodel: qwen2.5-vl-3b\ndata: {dataset_dir: d}\neval: {datasets: [imagenet_vqa_val]}\nrecipes:\n"
        "  short-1e-6: {preset: table2-c}\n  short-1e-5: {preset: table2-c, lr: 1.0e-5}\n"
        "  long-1e-6: {preset: table2-d, save_steps: 20000}\n  fig2-c: {preset: fig2-c}\n"  # cosine: not in (c)
    )
    out = write_report(run)
    rows = json.loads((out / "numbers.json").read_text())["table2_size"]
    assert [(r["fraction"], r["lr"], r["accuracy_pct"]) for r in rows] == [
        ("0.25 %", 1e-6, 82.0),
        ("0.25 %", 1e-5, 81.0),
        ("2.5 %", 1e-6, 87.0),
        ("2.5 %", 1e-5, 88.0),
        ("25 %", 1e-6, 90.0),
        ("100 %", 1e-6, 92.0),
    ]
    markdown = (out / "report.md").read_text()
    assert "| dataset fraction | lr=1e-06 | lr=1e-05 |" in markdown and "| 100 % | 92.00 [" in markdown
    assert (out / "table2_size.csv").is_file()


def test_table2a_merges_the_runs_of_several_models_into_one_table(tmp_path: Path) -> None:
    reports = []
    for model in ("qwen2.5-vl-3b", "llava-1.5-7b"):
        run = two_recipe_run(tmp_path / model)
        spec = f"name: {model}\nmodel: {model}\ndata: {{dataset_dir: d}}\neval: {{datasets: [v]}}\n"
        (run / "spec.yaml").write_text(spec + "recipes: {full: {}}\n")
        reports.append(write_report(run))
    out = write_merged_table2(reports, tmp_path / "table2")
    rows = json.loads((out / "numbers.json").read_text())["table2"]
    assert [(row["model"], row["recipe"]) for row in rows if row["column"] == "imagenet_vqa_val"] == [
        ("qwen2.5-vl-3b", "full"),
        ("qwen2.5-vl-3b", "lora"),
        ("llava-1.5-7b", "full"),
        ("llava-1.5-7b", "lora"),
    ]
    table = (out / "table2.md").read_text()
    assert "| llava-1.5-7b | full | full/checkpoint-20 | 60.00 → 90.00 (+30.00 [" in table
    assert (out / "table2.csv").read_text().startswith("run,model,recipe,checkpoint,column,")
    with pytest.raises(ForgetkitError, match="write each run's report first"):
        write_merged_table2([tmp_path / "nowhere"], tmp_path / "t")


def test_fig4_draws_each_mixed_in_dataset_against_its_ratio(tmp_path: Path) -> None:
    def sets(imagenet: int, imagewikiqa: int) -> dict:
        return {"imagenet_vqa_val": answers(range(imagenet), 100), "imagewikiqa": answers(range(imagewikiqa), 100)}

    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: sets(80, 53),
            "base/checkpoint-8": sets(91, 43),
            "llava-0.5/checkpoint-8": sets(90, 50),
            "llava-0.7/checkpoint-8": sets(89, 50),
            "ocr-0.5/checkpoint-8": sets(91, 47),
        },
        quadrants={"ID^T-ID^I": ["imagenet_vqa_val"], "OOD^T-ID^I": ["imagewikiqa"]},
    )
    (run / "spec.yaml").write_text(
        "name: t\nmodel: qwen2.5-vl-3b\ndata: {dataset_dir: d, train: [imagenet_vqa_train]}\n"
        "eval: {datasets: [imagenet_vqa_val]}\nrecipes:\n  base: {preset: fig4}\n"
        "  llava-0.5: {preset: fig4, train: [imagenet_vqa_train, llava_665k]}\n"
        "  llava-0.7: {preset: fig4, train: [imagenet_vqa_train, llava_665k], mix_ratio: 0.7}\n"
        "  ocr-0.5: {preset: fig4, train: [imagenet_vqa_train, ocr_vqa_train]}\n"
    )
    out = write_report(run)
    rows = json.loads((out / "numbers.json").read_text())["fig4"]
    assert [(r["arm"], r["ratio"], r["recipe"], r["OOD^T-ID^I accuracy_pct"]) for r in rows] == [
        ("llava_665k", 0.0, "base", 43.0),  # the base set alone is every line's ratio 0
        ("llava_665k", 0.5, "llava-0.5", 50.0),
        ("llava_665k", 0.7, "llava-0.7", 50.0),
        ("ocr_vqa_train", 0.0, "base", 43.0),
        ("ocr_vqa_train", 0.5, "ocr-0.5", 47.0),
    ]
    with Image.open(out / "fig4.png") as image:
        assert image.format == "PNG"
    assert "![Fig. 4](fig4.png)" in (out / "report.md").read_text()


def test_table2_reports_zero_shot_to_final_per_id_dataset_and_quadrant(tmp_path: Path) -> None:
    table2 = build_report(two_recipe_run(tmp_path / "run"))["table2"]
    full = [row for row in table2 if row["recipe"] == "full"]
    assert [row["column"] for row in full] == ["imagenet_vqa_val", "ID^T-OOD^I", "OOD^T-OOD^I"]
    assert (full[0]["zero_shot_pct"], full[0]["final_pct"], full[0]["change_pp"]) == (60.0, 90.0, 30.0)
    assert (full[2]["zero_shot_pct"], full[2]["final_pct"]) == (40.0, 38.5)


CONTINUAL = {
    "seq": {
        "strategy": "seqfull",
        "replay": None,
        "tasks": ["a", "b", "c"],
        "stages": ["seq/task-1-a", "seq/task-2-b", "seq/task-3-c"],
        "tests": ["a_test", "b_test", "c_test"],
    }
}


def test_table3_row_of_a_continual_sequence(tmp_path: Path) -> None:
    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: {
                "a_test": answers(range(4), 20),
                "b_test": answers(range(5), 20),
                "c_test": answers(range(6), 20),
            },
            "seq/task-1-a": {"a_test": answers(range(16), 20)},
            "seq/task-2-b": {"a_test": answers(range(12), 20), "b_test": answers(range(18), 20)},
            "seq/task-3-c": {
                "a_test": answers(range(10), 20),
                "b_test": answers(range(14), 20),
                "c_test": answers(range(19), 20),
            },
        },
        continual=CONTINUAL,
    )
    numbers = build_report(run)
    seq = numbers["continual"]["seq"]
    assert [[cell and cell["value"] for cell in row] for row in seq["matrix"]] == [
        [80.0, None, None],
        [60.0, 90.0, None],
        [50.0, 70.0, 95.0],
    ]
    assert [cell["value"] for cell in seq["last"]] == [50.0, 70.0, 95.0]
    assert [cell["value"] for cell in seq["average"]] == pytest.approx([80.0, 75.0, 71.6667], abs=1e-4)
    assert seq["bwt"]["value"] == -25.0 and seq["bwt"]["high"] < 0
    assert [cell["value"] for cell in seq["zero_shot"]] == [20.0, 25.0, 30.0]
    assert seq["fwt"] is None  # tested on the tasks seen so far only (continual.eval: seen)

    out = write_report(run)
    table3 = (out / "table3.csv").read_text().splitlines()
    assert table3[1].startswith("zero-shot,") and table3[2].startswith("seq,seqfull,")
    assert "| seq (seqfull) | 50.00 [" in (out / "report.md").read_text()


def test_forward_transfer_of_a_sequence_tested_on_every_task_after_every_task(tmp_path: Path) -> None:
    zero_shot = {"a_test": answers(range(4), 20), "b_test": answers(range(10), 20)}
    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: zero_shot,
            "seq/task-1-a": {"a_test": answers(range(16), 20), "b_test": answers(range(4), 20)},
            "seq/task-2-b": {"a_test": answers(range(12), 20), "b_test": answers(range(18), 20)},
        },
        continual={
            "seq": CONTINUAL["seq"]
            | {"tasks": ["a", "b"], "stages": ["seq/task-1-a", "seq/task-2-b"], "tests": ["a_test", "b_test"]}
        },
    )
    out = write_report(run)
    seq = json.loads((out / "numbers.json").read_text())["continual"]["seq"]
    assert seq["fwt"]["value"] == -30.0 and seq["fwt"]["high"] < 0  # learning a cost b 30 pp before b was learned
    assert seq["bwt"]["value"] == -20.0
    assert "FWT (pp)" in (out / "report.md").read_text()


def test_report_files_are_written_valid_and_identical_on_a_rerun(tmp_path: Path) -> None:
    run = two_recipe_run(tmp_path / "run")
    out = write_report(run)
    assert out == run / "report"
    names = {path.name for path in out.iterdir()}
    assert {"report.md", "numbers.json", "fig2.png", "accuracies.csv", "changes.csv", "quadrants.csv"} <= names
    assert {"table1.csv", "table2.csv"} <= names and not any(name.startswith(".") for name in names)
    with Image.open(out / "fig2.png") as image:
        assert image.format == "PNG" and image.size[0] > 600
    markdown = (out / "report.md").read_text()
    assert "![Fig. 2](fig2.png)" in markdown and "| full | full/checkpoint-20 | 90.00 [" in markdown
    numbers = json.loads((out / "numbers.json").read_text())
    accuracies = (out / "accuracies.csv").read_text().splitlines()
    assert len(accuracies) == 1 + len(numbers["accuracies"]) == 1 + 4 * 5
    assert accuracies[0].startswith("checkpoint,dataset,matcher,correct,total,accuracy_pct,")

    again = write_report(run, tmp_path / "again")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == {
        path.name: path.read_bytes() for path in again.iterdir()
    }
    assert summary(out).splitlines()[0] == f"run: {out / 'report.md'}"
    assert "full/checkpoint-20 imagewikiqa: -20.00 [" in summary(out)


def test_fig3_numbers_need_the_class_label_set_and_its_records(tmp_path: Path) -> None:
    def classlabel(picks: str) -> list[dict]:
        """20 questions with the truth A and the planted class name at C; `picks` is the model's answers."""
        return [{"prompt": f"q{i}", "predict": pick, "label": "A\n"} for i, pick in enumerate(picks)]

    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: {
                "imagewikiqa": answers(range(10), 20),
                "imagewikiqa_classlabel": classlabel("A" * 8 + "C" * 2 + "B" * 10),
            },
            "full/checkpoint-5": {
                "imagewikiqa": answers(range(6), 20),
                "imagewikiqa_classlabel": classlabel("A" + "C" * 19),
            },
        },
    )
    assert build_report(tmp_path / "run", data_dir=tmp_path)["fig3"][0].keys().isdisjoint({"mischoice_pct"})
    atomic.write_jsonl(tmp_path / "imagewikiqa_classlabel.records.jsonl", [{"answer": "A", "class_option": "C"}] * 20)
    rows = build_report(run, data_dir=tmp_path)["fig3"]
    assert [row["state"] for row in rows] == [ZERO_SHOT, "full"]
    assert [(row["accuracy_pct"], row["classlabel_accuracy_pct"], row["mischoice_pct"]) for row in rows] == [
        (50.0, 40.0, 10.0),
        (30.0, 5.0, 95.0),
    ]
    out = write_report(run, data_dir=tmp_path)
    assert (out / "fig3.png").is_file() and "![Fig. 3](fig3.png)" in (out / "report.md").read_text()
    no_classlabel = make_run(tmp_path / "plain", {ZERO_SHOT: {"imagewikiqa": answers(range(10), 20)}})
    assert build_report(no_classlabel)["fig3"] == [] and not (write_report(no_classlabel) / "fig3.png").exists()


def test_bad_input_is_a_one_line_error_saying_what_to_do(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {ZERO_SHOT: {"set": answers(range(5), 10)}})
    with pytest.raises(ForgetkitError, match="--id-dataset 'nope' was not evaluated"):
        build_report(run, id_dataset="nope")
    with pytest.raises(ForgetkitError, match="too few"):
        build_report(run, resamples=10)
    atomic.write_jsonl(RunDir(run).predictions(ZERO_SHOT, "set"), answers(range(7), 10))
    with pytest.raises(ForgetkitError, match="stale .* run `forgetkit score"):
        build_report(run)
    (run / "scores.json").unlink()
    with pytest.raises(ForgetkitError, match="scores.json does not exist; run `forgetkit score"):
        build_report(run)
    with pytest.raises(ForgetkitError, match="no predictions/ folder"):
        build_report(tmp_path / "empty")


def test_a_prediction_file_deleted_after_its_stage_was_done_is_named_not_shown_as_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Stages as launch records them: done ones must have their files; one still running has none yet and shows
    as "-" (a study in progress reports what it has)."""
    judged = [{"predict": "B", "label": "B", "correct": True}, {"predict": "C", "label": "B", "correct": False}]
    root = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: {"set": answers(range(5), 10), "other": answers(range(3), 10), "vlmeval:MMMU_tiny": judged},
            "r/checkpoint-5": {"set": answers(range(7), 10)},
        },
    )
    run = RunDir(root)
    benchmark = {"class": "MMMUDataset", "dataset": "MMMU_tiny"}
    atomic.write_json(run.config("vlmeval zero-shot").with_suffix(".json"), {"data": {"MMMU_tiny": benchmark}})
    for stage in ("vlmeval zero-shot", "predict zero-shot set", "logits zero-shot other", "predict r/checkpoint-5 set"):
        run.mark(stage, "done", "digest")
    run.mark("train r", "done", "digest")
    run.mark("predict r/checkpoint-5 other", "running", "digest")
    code, out, err = run_main(monkeypatch, capsys, "score", str(root))
    assert (code, err) == (0, "")
    assert out.splitlines()[3].split() == ["r/checkpoint-5", "-", "70.00", "-"]
    assert run_main(monkeypatch, capsys, "report", str(root))[::2] == (0, "")

    run.predictions(ZERO_SHOT, "vlmeval:MMMU_tiny").unlink()
    run.predictions("r/checkpoint-5", "set").unlink()
    for verb in ("score", "report"):
        code, _, err = run_main(monkeypatch, capsys, verb, str(root))
        assert code == 2 and err.count("\n") == 1
        assert err.startswith(f"error: {run.root}: 2 prediction file(s) of stages state.json records done are missing")
        assert "(predictions/zero-shot/vlmeval:MMMU_tiny.jsonl, predictions/r/checkpoint-5/set.jsonl)" in err
        assert f"`forgetkit launch SPEC --run-dir {run.root}` redoes exactly those stages" in err
    for dataset in ("a", "b", "c"):
        run.mark(f"predict r/checkpoint-5 {dataset}", "done", "digest")
    with pytest.raises(
        ForgetkitError,
        match=r"5 prediction file.* \(predictions/zero-shot/vlmeval:MMMU_tiny.jsonl, "
        r"predictions/r/checkpoint-5/set.jsonl, predictions/r/checkpoint-5/a.jsonl and 2 more\)",
    ):
        build_report(root)


def test_report_of_a_run_laid_out_by_the_demo_spec(tmp_path: Path) -> None:
    """The real demo spec's run layout (prepare writes spec, quadrants and continual.json as launch does), with
    prediction files written directly in the shapes LF and VLMEvalKit leave instead of training."""
    study = load_study(REPO / "runs" / "demo.yaml")
    run = RunDir(tmp_path / "run")
    prepare(study, run)
    checkpoints = {
        ZERO_SHOT: 0,
        "llm-full/checkpoint-15": 11,
        "llm-full/checkpoint-30": 20,
        "llm-lora/checkpoint-30": 3,
    }
    for checkpoint, right in checkpoints.items():
        for dataset in study.eval.all_datasets:
            if dataset.startswith("vlmeval:"):
                rows = [
                    {"predict": "B", "label": "B" if i < right % 6 else "C", "correct": i < right % 6} for i in range(6)
                ]
            else:
                rows = answers(range(right), 48)
            atomic.write_jsonl(run.predictions(checkpoint, dataset), rows)
    for sequence in study.continual.sequences:
        for index, task in enumerate(study.continual.tasks):
            for seen in study.continual.tasks[: index + 1]:
                rows = [
                    {"prompt": "Is there a road?", "predict": "yes", "label": ("yes" if i < 5 + index else "no") + "\n"}
                    for i in range(10)
                ]
                atomic.write_jsonl(
                    run.predictions(stage_label(sequence, index, task), study.continual.test_set(seen)), rows
                )
    score_run(run)

    out = write_report(run.root)
    numbers = json.loads((out / "numbers.json").read_text())
    assert (numbers["name"], numbers["model"], numbers["id_dataset"]) == ("demo", "tiny-qwen2.5-vl", "imagenet_vqa_val")
    assert [(row["recipe"], row["checkpoint"]) for row in numbers["table1"]] == [
        ("llm-full", "llm-full/checkpoint-30"),
        ("llm-lora", "llm-lora/checkpoint-30"),
    ]
    assert numbers["table1"][0]["id_accuracy_pct"] == pytest.approx(100 * 20 / 48, abs=1e-4)
    assert list(numbers["continual"]) == ["inclora", "seqfull-replay4"]
    assert [cell["value"] for cell in numbers["continual"]["inclora"]["last"]] == [60.0, 60.0]
    assert numbers["continual"]["inclora"]["bwt"]["value"] == 10.0
    assert {"fig2.png", "cl-inclora.png", "cl-seqfull-replay4.png", "table3.csv"} <= {p.name for p in out.iterdir()}


def write_probe(run: Path, checkpoint: str, kl: float, letters_before: float, letters_after: float) -> None:
    """RUN/probes/<checkpoint>.json in the shape `forgetkit.stages.probe.probe` writes (per-prompt rows cut)."""
    summary = {
        "base": "models/base",
        "checkpoint": f"checkpoints/{checkpoint}",
        "adapter": False,
        "dataset": "captions",
        "rows": 16,
        "answer_tokens": ["A", "B", "C", "D"],
        "positions": 1,
        "kl": kl,
        "answer_mass_base": letters_before,
        "answer_mass_checkpoint": letters_after,
        "answer_mass_shift": letters_after - letters_before,
        "top_token_agreement": 0.75,
        "per_prompt": [],
    }
    atomic.write_json(RunDir(run).probe(checkpoint), summary)


def probed_run(root: Path) -> Path:
    """`two_recipe_run` with every fine-tuned checkpoint probed: the one that forgets most drifted furthest."""
    run = two_recipe_run(root)
    write_probe(run, "full/checkpoint-10", 0.1, 0.01, 0.05)
    write_probe(run, "full/checkpoint-20", 0.5, 0.01, 0.40)
    write_probe(run, "lora/checkpoint-20", 0.05, 0.01, 0.02)
    return run


def test_probed_checkpoints_stand_next_to_their_ood_changes_with_a_rank_correlation(tmp_path: Path) -> None:
    out = write_report(probed_run(tmp_path / "run"))
    numbers = json.loads((out / "numbers.json").read_text())
    rows = numbers["probe"]
    assert [(row["checkpoint"], row["series"]) for row in rows] == [
        ("full/checkpoint-10", "full"),
        ("full/checkpoint-20", "full"),
        ("lora/checkpoint-20", "lora"),
    ]
    full = rows[1]
    assert (full["kl_nats"], full["answer_mass_base_pct"], full["answer_mass_checkpoint_pct"]) == (0.5, 1.0, 40.0)
    assert (full["answer_mass_shift_pp"], full["top_token_agreement_pct"]) == (39.0, 75.0)
    quadrant = by(numbers["quadrants"], checkpoint="full/checkpoint-20", quadrant="OOD^T-ID^I")
    assert full["OOD^T-ID^I change_pp"] == quadrant["change_pp"] == -20.0 and full["OOD^T-ID^I forgetting"]
    assert [row["OOD^T-OOD^I change_pp"] for row in rows] == [0.0, -1.5, 0.0]
    # KL ranks 2, 3, 1 against OOD^T-ID^I changes of -5, -20, +1 pp: perfectly reversed.
    kl = {row["quadrant"]: row["spearman_rho"] for row in numbers["probe_spearman"] if row["measure"] == "kl_nats"}
    assert kl == {"OOD^T-ID^I": -1.0, "OOD^T-OOD^I": pytest.approx(-0.866, abs=1e-4)}

    probe_csv = (out / "probe.csv").read_text().splitlines()
    assert probe_csv[0].startswith("checkpoint,series,dataset,prompts,answer_tokens,kl_nats,answer_mass_base_pct,")
    assert probe_csv[2].startswith("full/checkpoint-20,full,captions,16,A;B;C;D,0.5,1.0,40.0,39.0,75.0,-20.0,")
    assert "probe_spearman.csv" in numbers["csv"]
    markdown = (out / "report.md").read_text()
    assert "## Drift probe" in markdown and "![Drift probe](probe.png)" in markdown
    assert "| full/checkpoint-20 | 0.5 | 1.00 → 40.00 (+39.00) | 75.0 | -20.00 [" in markdown
    assert "- KL vs Δ OOD^T-ID^I: ρ = -1.00 over 3 checkpoints" in markdown and "Descriptive only" in markdown
    with Image.open(out / "probe.png") as image:
        assert image.format == "PNG" and image.size[0] > 600

    again = write_report(tmp_path / "run", tmp_path / "again")
    assert (out / "probe.png").read_bytes() == (again / "probe.png").read_bytes()
    assert (out / "probe.csv").read_bytes() == (again / "probe.csv").read_bytes()


def test_fewer_than_three_probes_get_no_correlation_and_no_probes_no_section(tmp_path: Path) -> None:
    run = two_recipe_run(tmp_path / "run")
    out = write_report(run)
    assert not {"probe.png", "probe.csv"} & {path.name for path in out.iterdir()}
    assert "Drift probe" not in (out / "report.md").read_text()

    write_probe(run, "full/checkpoint-20", 0.5, 0.01, 0.40)
    write_probe(run, "lora/checkpoint-20", 0.05, 0.01, 0.02)
    out = write_report(run)
    assert json.loads((out / "numbers.json").read_text())["probe_spearman"] == []
    assert "Rank correlations need at least 3" in (out / "report.md").read_text() and (out / "probe.png").is_file()


def test_a_malformed_probe_is_a_one_line_error_naming_its_file(tmp_path: Path) -> None:
    run = probed_run(tmp_path / "run")
    broken = RunDir(run).probe("full/checkpoint-10")
    broken.write_text('{"kl": 0.1,')
    with pytest.raises(ForgetkitError, match=r"checkpoint-10\.json is not valid JSON .*delete it and rerun") as error:
        build_report(run)
    assert "\n" not in str(error.value)
    atomic.write_json(broken, {"kl": "high", "answer_mass_base": 0.1})
    with pytest.raises(ForgetkitError, match=r"checkpoint-10\.json is not a drift probe \(no finite number for kl, "):
        build_report(run)


def copy_checkpoint(run: Path, source: str, checkpoint: str, replace: dict[str, list[dict]] | None = None) -> None:
    """A checkpoint whose prediction files are `source`'s copied (the base itself, for the null control), with the
    files named in `replace` rewritten; the run rescored as `forgetkit score` would."""
    shutil.copytree(RunDir(run).predictions(source, "x").parent, RunDir(run).predictions(checkpoint, "x").parent)
    for dataset, rows in (replace or {}).items():
        atomic.write_jsonl(RunDir(run).predictions(checkpoint, dataset), rows)
    score_run(RunDir(run))


def test_the_base_itself_changes_nothing_and_a_checkpoint_worse_on_one_set_is_flagged_there_only(
    tmp_path: Path,
) -> None:
    """The null control: a "checkpoint" that is the zero-shot model (its prediction files copied) gets exactly 0 on
    every set and quadrant, intervals holding 0, no †. The converse: the same files with one set 30 pp worse are
    flagged on that set and its quadrant, with the interval below 0, and nowhere else."""
    run = two_recipe_run(tmp_path / "run")
    copy_checkpoint(run, ZERO_SHOT, "null/checkpoint-0")
    copy_checkpoint(run, ZERO_SHOT, "worse/checkpoint-0", {"imagewikiqa": answers(range(20), 100)})
    out = write_report(run)
    numbers = json.loads((out / "numbers.json").read_text())

    null = [row for row in numbers["changes"] + numbers["quadrants"] if row["checkpoint"] == "null/checkpoint-0"]
    assert len(null) == 5 + 4
    for row in null:
        assert (row["change_pp"], row["change_ci_low_pp"], row["change_ci_high_pp"]) == (0, 0, 0)
        assert row["forgetting"] is False and row["paired"] is True
    accuracies = {(row["checkpoint"], row["dataset"]): row["accuracy_pct"] for row in numbers["accuracies"]}
    assert {d: a for (c, d), a in accuracies.items() if c == "null/checkpoint-0"} == {
        d: a for (c, d), a in accuracies.items() if c == ZERO_SHOT
    }
    assert by(numbers["table1"], recipe="null")["all within 3 pp"]
    verdicts = {row["recipe"]: row["verdict"] for row in numbers["headlines"]}
    assert (verdicts["null"], verdicts["worse"]) == ("changed nothing measurable", "forgot")

    worse = by(numbers["changes"], checkpoint="worse/checkpoint-0", dataset="imagewikiqa")
    assert worse["change_pp"] == -30.0 and worse["change_ci_high_pp"] < 0 and worse["forgetting"]
    quadrant = by(numbers["quadrants"], checkpoint="worse/checkpoint-0", quadrant="OOD^T-ID^I")
    assert quadrant["change_ci_high_pp"] < 0 and quadrant["forgetting"]
    rows = [row for row in numbers["changes"] + numbers["quadrants"] if row["checkpoint"].endswith("checkpoint-0")]
    flagged = {(row["checkpoint"], row.get("dataset") or row["quadrant"]) for row in rows if row["forgetting"]}
    assert flagged == {("worse/checkpoint-0", "imagewikiqa"), ("worse/checkpoint-0", "OOD^T-ID^I")}

    markdown = (out / "report.md").read_text()
    grid = markdown[markdown.index("## Change vs zero-shot per checkpoint") :]
    assert "†" not in next(line for line in grid.splitlines() if line.startswith("| null/checkpoint-0 |"))
    worse_line = next(line for line in grid.splitlines() if line.startswith("| worse/checkpoint-0 |"))
    assert worse_line.count("†") == 1 and "| -30.00 [" in worse_line and "] † |" in worse_line


def sets_of(imagenet: int, imagewikiqa: int, flowers: int = 60) -> dict:
    """`two_recipe_run`'s five sets of 100 items, right on the first so many of each."""
    right = {"imagenet_vqa_val": imagenet, "flowers": flowers, "imagewikiqa": imagewikiqa, "mmmu": 40, "vmcbench": 40}
    return {dataset: answers(range(count), 100) for dataset, count in right.items()}


def test_the_report_opens_with_one_sentence_per_recipe_backed_by_its_numbers(tmp_path: Path) -> None:
    """Each verdict on a small run: "forgot" (at the checkpoint of the largest loss called forgetting, even one a
    later checkpoint recovered from; with or without a gain on ID^T-ID^I), "learned without forgetting" and
    "changed nothing measurable" (the base itself). Every number in a sentence is the quadrant table's."""
    run = make_run(
        tmp_path / "run",
        {
            ZERO_SHOT: sets_of(60, 50),
            "dip/checkpoint-10": sets_of(80, 20),  # -30 pp OOD^T-ID^I, then recovered
            "dip/checkpoint-20": sets_of(90, 48),
            "flat/checkpoint-20": sets_of(61, 50, flowers=30),  # ID^T-OOD^I lost, nothing gained
            "lora/checkpoint-20": sets_of(85, 51),
            "null/checkpoint-20": sets_of(60, 50),
        },
        quadrants=QUADRANTS,
    )
    out = write_report(run)
    numbers = json.loads((out / "numbers.json").read_text())
    verdicts = {row["recipe"]: (row["checkpoint"], row["verdict"]) for row in numbers["headlines"]}
    assert verdicts == {
        "dip": ("dip/checkpoint-10", "forgot"),
        "flat": ("flat/checkpoint-20", "forgot"),
        "lora": ("lora/checkpoint-20", "learned without forgetting"),
        "null": ("null/checkpoint-20", "changed nothing measurable"),
    }

    def pp(checkpoint: str, quadrant: str) -> str:
        row = by(numbers["quadrants"], checkpoint=checkpoint, quadrant=quadrant)
        return f"{row['change_pp']:+.1f} pp [{row['change_ci_low_pp']:+.1f}, {row['change_ci_high_pp']:+.1f}]"

    sentences = {row["recipe"]: headline(row) for row in numbers["headlines"]}
    assert sentences["dip"] == (
        f"dip forgot OOD^T-ID^I: {pp('dip/checkpoint-10', 'OOD^T-ID^I')} at checkpoint-10, "
        f"while gaining {pp('dip/checkpoint-10', 'ID^T-ID^I')} on ID^T-ID^I"
    )
    assert pp("dip/checkpoint-10", "OOD^T-ID^I").startswith("-30.0 pp [")
    assert sentences["flat"] == (
        f"flat forgot ID^T-OOD^I: {pp('flat/checkpoint-20', 'ID^T-OOD^I')} at checkpoint-20, "
        f"with no measurable gain on ID^T-ID^I ({pp('flat/checkpoint-20', 'ID^T-ID^I')})"
    )
    assert sentences["lora"] == (
        f"lora learned without forgetting: {pp('lora/checkpoint-20', 'ID^T-ID^I')} on ID^T-ID^I at checkpoint-20, "
        "no quadrant's interval below zero at any checkpoint (lowest: ID^T-OOD^I +0.0 pp [+0.0, +0.0])"
    )
    assert sentences["null"] == (
        "null changed nothing measurable: at checkpoint-20 ID^T-ID^I +0.0 pp [+0.0, +0.0], "
        "no quadrant's interval below zero at any checkpoint (lowest: ID^T-OOD^I +0.0 pp [+0.0, +0.0])"
    )

    markdown = (out / "report.md").read_text().splitlines()
    assert markdown[2:6] == [f"- {sentences[recipe]}." for recipe in ("dip", "flat", "lora", "null")]
    assert markdown[7].startswith("Each recipe at the checkpoint of its largest loss called forgetting")
    assert summary(out).split("\n\n")[1].splitlines() == [f"{sentences[r]}." for r in ("dip", "flat", "lora", "null")]
    assert build_report(make_run(tmp_path / "plain", {ZERO_SHOT: sets_of(60, 50)}))["headlines"] == []


def test_fig2_plots_every_checkpoints_accuracies_with_their_intervals(tmp_path: Path) -> None:
    numbers = build_report(two_recipe_run(tmp_path / "run"))
    curves, zero_shot = fig2_points(numbers)
    assert list(curves) == ["full", "lora"] and len(curves["full"]) == 2
    accuracy = by(numbers["accuracies"], checkpoint="full/checkpoint-20", dataset="imagenet_vqa_val")
    ood = by(numbers["quadrants"], checkpoint="full/checkpoint-20", quadrant="OOD^T-ID^I")
    x, ys = curves["full"][1]
    assert x == (90.0, accuracy["accuracy_ci_low_pct"], accuracy["accuracy_ci_high_pct"])
    assert ys["OOD^T-ID^I"] == (30.0, ood["accuracy_ci_low_pct"], ood["accuracy_ci_high_pct"])
    assert zero_shot is not None and zero_shot[0][0] == 60.0 and set(zero_shot[1]) == set(QUADRANTS)
