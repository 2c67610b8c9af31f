"""A study's `report_to`: trainings log to TensorBoard or W&B (offline) as LLaMA-Factory does, and each
checkpoint's scores are logged at its training step into the same run, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from built_data import built
from studies import tiny_study
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner
from wandb_records import history, run_id

from forgetkit import tracking
from forgetkit.cli import app
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.study import launch, plan, prepare

runner = CliRunner()
SCORE = "forgetkit/imagenet_vqa_val"
CHECKPOINTS = {0: "zero-shot", 2: "r/checkpoint-2", 4: "r/checkpoint-4"}
"""The training step each scored model is logged at: zero-shot at 0, then each checkpoint at its own."""


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} as TensorBoard shows a run's folder (every event file in it, later ones first)."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_the_loss_and_each_checkpoints_scores_reach_tensorboard_and_wandb_at_its_step_in_the_trainings_run(
    shapes: Path, offline_clip: ClipSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    trackers = "report_to: [tensorboard, wandb]\n"
    spec = tiny_study(shapes, offline_clip, tmp_path, "{steps: 4, save_steps: 2}", trackers)
    monkeypatch.chdir(tmp_path)
    study, run = load_study(spec), RunDir(tmp_path / "run")
    for name in ("evaluate zero-shot", "train r", "evaluate r/checkpoint-2"):  # one job at a time, as under Slurm
        launch(study, run.root, only=name)
    table = launch(study, run.root)  # the rest (checkpoint-4) in one process, then every score
    accuracy = {step: table[name]["imagenet_vqa_val"]["accuracy"] for step, name in CHECKPOINTS.items()}
    config = (run.root / "configs" / "train_r.yaml").read_text()
    assert 'report_to: [tensorboard, wandb]\nrun_name: "r"\n' in config

    [folder] = {path.parent for path in (run.root / "tracking" / "tensorboard").rglob("events.out.tfevents.*")}
    assert folder.parent.name == "r"
    shown = scalars(folder)
    assert sorted(shown["train/loss"]) == [1, 2, 3, 4], "LF's trainer logged every step (logging_steps 1)"
    assert shown[SCORE] == pytest.approx(accuracy)

    training, *scores = sorted((run.root / "tracking" / "wandb").glob("offline-run-*/run-*.wandb"))
    tracked = tracking.run_id(run, run.read_state()["train r"]["config_hash"])
    assert {run_id(path) for path in (training, *scores)} == {tracked}, "one W&B run, synced in order"
    assert [row["train/global_step"] for row in history(training) if "train/loss" in row] == [1, 2, 3, 4]
    logged = {row["train/global_step"]: row[SCORE] for path in scores for row in history(path)}
    assert logged == pytest.approx(accuracy)

    files = sorted(run.root.joinpath("tracking").rglob("*.*"))
    result = runner.invoke(app, ["score", str(run.root)])
    assert result.exit_code == 0, result.output
    assert "logged" not in result.output, "every score was logged once, by the launch that made it"
    assert sorted(run.root.joinpath("tracking").rglob("*.*")) == files


def tracked_study(tmp_path: Path, report_to: str) -> Path:
    built(tmp_path / "data", "train_set", "eval_set")
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {dataset_dir: data, train: [train_set]}\n"
        "eval: {quadrants: {ID^T-ID^I: [eval_set]}}\nrecipes: {r: {steps: 4, save_steps: 2}}\n"
        f"report_to: {report_to}\n"
    )
    return spec


def test_turning_tracking_on_or_off_retrains_and_reevaluates_nothing(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    untracked = {step.name: step.digest for step in plan(load_study(tracked_study(tmp_path, "none")), run)}
    tracked = {step.name: step.digest for step in plan(load_study(tracked_study(tmp_path, "wandb")), run)}
    assert tracked == untracked


def test_a_rescored_checkpoint_replaces_its_points_and_an_unchanged_table_logs_nothing(tmp_path: Path) -> None:
    study = load_study(tracked_study(tmp_path, "tensorboard"))
    run = RunDir(tmp_path / "run")
    prepare(study, run)
    run.mark("train r", "done", "digest-of-r")
    table = {name: {"eval_set": {"accuracy": 0.5 + step / 10}} for step, name in CHECKPOINTS.items()}

    assert tracking.log_scores(run, study.report_to, study.name, table) == 3 * 3, (
        "accuracy, quadrant mean and its change, 3 steps"
    )
    folder = tracking.tensorboard_dir(run, "r", "digest-of-r")
    assert scalars(folder)["forgetkit/change/ID^T-ID^I"] == pytest.approx({0: 0.0, 2: 0.2, 4: 0.4})
    assert tracking.log_scores(run, study.report_to, study.name, table) == 0

    table["r/checkpoint-2"]["eval_set"]["accuracy"] = 0.1
    assert tracking.log_scores(run, study.report_to, study.name, table) == 2 * 3, (
        "checkpoint-2 and every point after it"
    )
    assert scalars(folder)["forgetkit/eval_set"] == pytest.approx({0: 0.5, 2: 0.1, 4: 0.9})
    logged = json.loads((run.root / "tracking" / "logged.json").read_text())
    assert logged[tracking.run_id(run, "digest-of-r")]["2"]["forgetkit/eval_set"] == 0.1


def test_no_tracker_logs_nothing_and_writes_no_tracking_folder(tmp_path: Path) -> None:
    study = load_study(tracked_study(tmp_path, "none"))
    run = RunDir(tmp_path / "run")
    prepare(study, run)
    run.mark("train r", "done", "digest-of-r")
    assert (
        tracking.log_scores(run, study.report_to, study.name, {"r/checkpoint-2": {"eval_set": {"accuracy": 0.5}}}) == 0
    )
    assert not (run.root / "tracking").exists()


def test_an_unknown_tracker_or_a_missing_package_is_one_line_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ForgetkitError) as unknown:
        load_study(tracked_study(tmp_path, "mlflow"))
    assert str(unknown.value).endswith(
        "report_to: 'mlflow' is no tracker; give none, tensorboard, wandb or a list of them"
    )

    monkeypatch.setitem(tracking.PACKAGE, tracking.Tracker.wandb, "wandb_is_not_installed")
    with pytest.raises(ForgetkitError) as missing:
        launch(load_study(tracked_study(tmp_path, "wandb")), tmp_path / "run")
    assert str(missing.value) == (
        "report_to: wandb needs the wandb_is_not_installed package; "
        "install it with: pip install -c constraints.txt -e '.[wandb_is_not_installed]'"
    )
    assert not (tmp_path / "run").exists()
