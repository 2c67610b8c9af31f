"""The whole pipeline for real: drawn images → CLIP MCQs → LLaMA-Factory training and prediction → scores.

Minutes on CPU: every checkpoint and prediction here comes from `llamafactory-cli`.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from forgetkit.demo import run_demo
from forgetkit.rundir import RunDir
from forgetkit.scoring import score_file
from forgetkit.study import launch, load_study
from forgetkit.testing.tiny_model import tiny_model_dir

pytestmark = pytest.mark.slow
CHECKPOINTS = ["zero-shot", "llm-full/checkpoint-10", "llm-full/checkpoint-20", "llm-full/checkpoint-30"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, run_demo(workdir)


def test_demo_scores_zero_shot_and_every_checkpoint(demo: tuple[Path, dict]) -> None:
    workdir, table = demo
    assert list(table) == CHECKPOINTS
    run = RunDir(workdir / "run")
    for checkpoint in CHECKPOINTS:
        path = run.predictions(checkpoint, "imagenet_vqa_val")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == 48
        assert set(rows[0]) == {"prompt", "predict", "label"}
        assert "What is the class of this image?" in rows[0]["prompt"]
        assert table[checkpoint]["imagenet_vqa_val"] == score_file(path).to_dict()
    assert json.loads(run.scores_path.read_text()) == table
    state = run.read_state()
    assert len(state) == 2 * 4 + 1 and all(entry["status"] == "done" for entry in state.values())


def test_the_ood_text_ood_image_quadrant_is_judged_by_vlmevalkit(demo: tuple[Path, dict]) -> None:
    workdir, table = demo
    run = RunDir(workdir / "run")
    for checkpoint in CHECKPOINTS:
        score = table[checkpoint]["vlmeval:MMMU_DEV_VAL_tiny"]
        assert score["matcher"] == "vlmevalkit" and score["total"] == 6  # the validation rows only
        assert "--judge exact_matching" in run.log(f"vlmeval {checkpoint}").read_text()
    assert run.quadrants() == {"ID^T-ID^I": ["imagenet_vqa_val"], "OOD^T-OOD^I": ["vlmeval:MMMU_DEV_VAL_tiny"]}


def test_training_updated_the_llm_only(demo: tuple[Path, dict]) -> None:
    workdir, _ = demo
    base = load_file(tiny_model_dir() / "model.safetensors")
    tuned = load_file(workdir / "run" / "checkpoints" / "llm-full" / "checkpoint-30" / "model.safetensors")
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    vision = {name for name in base if name.startswith("visual.")}  # tower blocks and merger (projector)
    assert vision and not vision & changed
    assert any(name.startswith("model.layers.") for name in changed)


def test_run_directory_keeps_configs_and_logs(demo: tuple[Path, dict]) -> None:
    run = demo[0] / "run"
    assert (run / "spec.yaml").is_file()
    assert "stage: sft" in (run / "configs" / "train_llm-full.yaml").read_text()
    assert "Resuming" not in (run / "logs" / "train_llm-full.log").read_text()
    assert not (run / "scratch").exists()


def test_run_directory_records_versions_and_each_stages_command(demo: tuple[Path, dict]) -> None:
    run = RunDir(demo[0] / "run")
    versions = json.loads((run.root / "versions.json").read_text())
    assert versions["llamafactory"] == "0.9.5" and versions["torch"].startswith("2.11")
    assert set(versions) >= {"python", "forgetkit", "transformers", "ms-vlmeval"}
    train = run.read_state()["train llm-full"]
    assert train["command"] == f"llamafactory-cli train {run.config('train llm-full')}"


def test_dry_run_lists_every_stage_with_its_command_and_runs_nothing(demo: tuple[Path, dict]) -> None:
    workdir, _ = demo
    run = RunDir(workdir / "run")
    state = run.state_path.read_bytes()
    steps = launch(load_study(workdir / "demo.yaml"), run.root, dry_run=True)
    evals = [[f"vlmeval {checkpoint}", f"predict {checkpoint} imagenet_vqa_val"] for checkpoint in CHECKPOINTS]
    assert [step.name for step in steps] == [
        *evals[0],
        "train llm-full",
        *(name for pair in evals[1:] for name in pair),
    ]
    assert all(step.done for step in steps)
    assert run.state_path.read_bytes() == state

    fresh = launch(load_study(workdir / "demo.yaml"), workdir / "elsewhere", dry_run=True)
    assert not any(step.done for step in fresh) and not (workdir / "elsewhere").exists()
    assert [step.name for step in fresh] == [step.name for step in steps], "planned checkpoints = saved ones"


def test_rerun_skips_finished_stages_and_resumes_interrupted_training(demo: tuple[Path, dict]) -> None:
    workdir, table = demo
    run = RunDir(workdir / "run")
    logs = {p: p.stat().st_mtime_ns for p in (run.root / "logs").iterdir()}
    assert launch(load_study(workdir / "demo.yaml"), run.root) == table
    assert {p: p.stat().st_mtime_ns for p in (run.root / "logs").iterdir()} == logs

    shutil.rmtree(run.checkpoints("llm-full") / "checkpoint-30")
    run.mark("train llm-full", "running", run.read_state()["train llm-full"]["config_hash"])
    launch(load_study(workdir / "demo.yaml"), run.root)
    assert "Resuming training from" in run.log("train llm-full").read_text()
    assert (run.checkpoints("llm-full") / "checkpoint-30" / "model.safetensors").is_file()
