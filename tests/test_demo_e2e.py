"""The whole pipeline for real: drawn images → CLIP MCQs → LLaMA-Factory training, LoRA merges and
prediction, VLMEvalKit → scores, killed with SIGKILL in the middle of training and rerun to the end.

Minutes on CPU: every checkpoint and prediction here comes from `llamafactory-cli` or VLMEvalKit.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from slurm_cluster import SlurmCluster
from typer.testing import CliRunner

from forgetkit import slurm
from forgetkit.cli import app
from forgetkit.demo import run_demo
from forgetkit.report import build_report
from forgetkit.rundir import RunDir, stage_slug
from forgetkit.scoring import score_file, score_run
from forgetkit.spec import load_study
from forgetkit.stage_names import stage_subject
from forgetkit.stages.export import merge_changed_weights
from forgetkit.study import launch
from forgetkit.tiny_model import tiny_model_dir

pytestmark = pytest.mark.slow
CHECKPOINTS = ["zero-shot", "llm-full/checkpoint-15", "llm-full/checkpoint-30", "llm-lora/checkpoint-30"]
QUADRANTS = {
    "ID^T-ID^I": ["imagenet_vqa_val"],
    "ID^T-OOD^I": ["flowers102_vqa_test"],
    "OOD^T-ID^I": ["imagewikiqa"],
    "OOD^T-OOD^I": ["vlmeval:MMMU_DEV_VAL_tiny"],
}
SEQUENCES = {"inclora": "inclora", "seqfull-replay4": "seqfull"}
TESTS = ["mllmcl_rs_test", "mllmcl_med_test"]


def stages_after(sequence: str) -> list[str]:
    return [f"{sequence}/task-1-rs", f"{sequence}/task-2-med"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """`forgetkit demo` killed with SIGKILL once its first training has saved a checkpoint, then rerun.

    Returns the workdir, the final score table, and the log mtimes of the stages done before the kill.
    """
    workdir = tmp_path_factory.mktemp("demo")
    run = RunDir(workdir / "run")
    first_checkpoint = run.checkpoints("llm-full") / "checkpoint-15" / "trainer_state.json"
    command = [sys.executable, "-m", "forgetkit", "demo", "--workdir", str(workdir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 1200
    while not first_checkpoint.is_file():
        assert process.poll() is None, "the demo ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint in 20 minutes"
        time.sleep(0.2)
    process.kill()
    process.wait()
    time.sleep(1)
    done = [stage for stage, entry in run.read_state().items() if entry["status"] == "done"]
    finished = {stage: run.log(stage).stat().st_mtime_ns if run.log(stage).is_file() else None for stage in done}
    assert run.read_state()["train llm-full"]["status"] == "running"
    return workdir, run_demo(workdir), finished


def test_killed_mid_training_the_rerun_redoes_no_finished_stage_and_resumes_training(
    demo: tuple[Path, dict, dict],
) -> None:
    workdir, _, finished = demo
    run = RunDir(workdir / "run")
    sets = ("imagenet_vqa_val", "flowers102_vqa_test", "imagewikiqa", *TESTS)
    zero_shot = {"vlmeval zero-shot", "evaluate zero-shot", *(f"predict zero-shot {name}" for name in sets)}
    assert set(finished) == zero_shot, "zero-shot: VLMEvalKit, and one evaluation of 3 quadrant + 2 MLLM-CL sets"
    logged = {stage: mtime for stage, mtime in finished.items() if mtime is not None}
    assert {stage: run.log(stage).stat().st_mtime_ns for stage in logged} == logged, "none of them ran again"
    assert "Resuming training from" in run.log("train llm-full").read_text()
    assert all(entry["status"] == "done" for entry in run.read_state().values())


def test_demo_scores_zero_shot_and_every_checkpoint_on_every_quadrant(demo: tuple[Path, dict, dict]) -> None:
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    assert [checkpoint for checkpoint in table if checkpoint in CHECKPOINTS] == CHECKPOINTS
    assert run.quadrants() == QUADRANTS
    for checkpoint in CHECKPOINTS:
        assert set(table[checkpoint]) >= {name for names in QUADRANTS.values() for name in names}
        path = run.predictions(checkpoint, "imagenet_vqa_val")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(rows) == 48 and set(rows[0]) == {"prompt", "predict", "label"}
        assert "What is the class of this image?" in rows[0]["prompt"]
        assert table[checkpoint]["imagenet_vqa_val"] == score_file(path).to_dict()
    assert json.loads(run.scores_path.read_text()) == table


def test_every_checkpoint_is_probed_for_drift_from_the_base(demo: tuple[Path, dict, dict]) -> None:
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    assert not run.probe("zero-shot").exists()
    for checkpoint in (name for name in table if name != "zero-shot"):
        probe = json.loads(run.probe(checkpoint).read_text())
        assert probe["rows"] == 24 and probe["kl"] >= 0 and 0 <= probe["answer_mass_checkpoint"] <= 1


def test_the_ood_text_ood_image_quadrant_is_judged_by_vlmevalkit(demo: tuple[Path, dict, dict]) -> None:
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    for checkpoint in CHECKPOINTS:
        score = table[checkpoint]["vlmeval:MMMU_DEV_VAL_tiny"]
        assert score["matcher"] == "vlmevalkit" and score["total"] == 6  # the validation rows only
        assert "--judge exact_matching" in run.log(f"vlmeval {checkpoint}").read_text()


def test_full_training_updated_the_llm_only(demo: tuple[Path, dict, dict]) -> None:
    workdir, _, _ = demo
    base = load_file(tiny_model_dir() / "model.safetensors")
    tuned = load_file(RunDir(workdir / "run").checkpoints("llm-full") / "checkpoint-30" / "model.safetensors")
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    vision = {name for name in base if name.startswith("visual.")}  # tower blocks and merger (projector)
    assert vision and not vision & changed
    assert any(name.startswith("model.layers.") for name in changed)


def test_the_lora_recipe_is_evaluated_as_an_adapter_on_the_base_model(demo: tuple[Path, dict, dict]) -> None:
    run = RunDir(demo[0] / "run")
    config = (run.root / "configs" / "predict_llm-lora_checkpoint-30_imagewikiqa.yaml").read_text()
    assert f'adapter_name_or_path: "{run.checkpoints("llm-lora") / "checkpoint-30"}"' in config
    assert f'model_name_or_path: "{tiny_model_dir()}"' in config


def test_each_continual_stage_is_evaluated_on_every_task(demo: tuple[Path, dict, dict]) -> None:
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    for sequence, strategy in SEQUENCES.items():
        first, second = stages_after(sequence)
        assert set(table[first]) == set(table[second]) == set(TESTS)  # continual.eval: all, as the authors'
        assert build_report(run.root)["continual"][sequence]["fwt"] is not None, "forward transfer"
        assert run.continual()[sequence] == {
            "strategy": strategy,
            "replay": 4 if strategy == "seqfull" else None,
            "tasks": ["rs", "med"],
            "stages": [first, second],
            "tests": TESTS,
        }
    assert set(table["zero-shot"]) >= set(TESTS), "Table 3's zero-shot row"


def test_inclora_merges_each_task_and_trains_the_next_from_the_merge(demo: tuple[Path, dict, dict]) -> None:
    run = RunDir(demo[0] / "run")
    first, second = (run.checkpoints(f"inclora/task-{n}") for n in ("1-rs-merged", "2-med-merged"))
    assert merge_changed_weights(tiny_model_dir(), first, ())
    assert merge_changed_weights(first, second, ())
    # the authors' IncLoRA: the projector trained in full beside the LoRA, and merged
    adapter = json.loads((run.checkpoints("inclora/task-1-rs") / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["visual.merger"]
    assert merge_changed_weights(tiny_model_dir(), first, ("visual.merger",))
    assert not list(first.parent.glob("*.partial"))
    train_med = (run.root / "configs" / "train_inclora_task-2-med.yaml").read_text()
    assert f'model_name_or_path: "{first}"' in train_med and 'finetuning_type: "lora"' in train_med
    export = (run.root / "configs" / "export_inclora_task-2-med-merged.yaml").read_text()
    assert f'model_name_or_path: "{first}"' in export
    predict = (run.root / "configs" / "predict_inclora_task-2-med_mllmcl_rs_test.yaml").read_text()
    assert f'model_name_or_path: "{second}"' in predict


def test_seqfull_trains_the_next_task_from_the_last_model_with_replay(demo: tuple[Path, dict, dict]) -> None:
    run = RunDir(demo[0] / "run")
    config = (run.root / "configs" / "train_seqfull-replay4_task-2-med.yaml").read_text()
    assert f'model_name_or_path: "{run.checkpoints("seqfull-replay4/task-1-rs")}"' in config
    assert 'dataset: "mllmcl_med_train_replay4"' in config


def test_run_directory_records_versions_configs_logs_and_each_stages_command(demo: tuple[Path, dict, dict]) -> None:
    run = RunDir(demo[0] / "run")
    assert (run.root / "spec.yaml").is_file() and not (run.root / "scratch").exists()
    assert "stage: sft" in run.config("train llm-full").read_text()
    assert json.loads(run.config("vlmeval zero-shot").with_suffix(".json").read_text())["data"]
    versions = json.loads((run.root / "versions.json").read_text())
    assert versions["llamafactory"] == "0.9.5" and versions["torch"].startswith("2.11")
    assert set(versions) >= {"python", "forgetkit", "transformers", "ms-vlmeval"}
    train = run.read_state()["train llm-full"]
    assert train["command"] == f"llamafactory-cli train {run.config('train llm-full')}"
    assert run.read_state()["export inclora/task-1-rs-merged"]["command"].startswith("llamafactory-cli export ")


def test_dry_run_lists_every_stage_as_done_and_a_fresh_plan_matches_it(demo: tuple[Path, dict, dict]) -> None:
    workdir, _, _ = demo
    run = RunDir(workdir / "run")
    state = run.state_path.read_bytes()
    steps = launch(load_study(workdir / "demo.yaml"), run.root, dry_run=True)
    recorded = {name for step in steps for name in (step.name, *step.parts)}
    assert all(step.done for step in steps) and recorded == set(run.read_state())
    assert run.state_path.read_bytes() == state

    fresh = launch(load_study(workdir / "demo.yaml"), workdir / "elsewhere", dry_run=True)
    assert not any(step.done for step in fresh) and not (workdir / "elsewhere").exists()
    assert [step.name for step in fresh] == [step.name for step in steps], "planned checkpoints = saved ones"


def test_a_rerun_of_a_finished_study_runs_nothing(demo: tuple[Path, dict, dict]) -> None:
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    logs = {p: p.stat().st_mtime_ns for p in (run.root / "logs").iterdir()}
    assert launch(load_study(workdir / "demo.yaml"), run.root) == table
    assert {p: p.stat().st_mtime_ns for p in (run.root / "logs").iterdir()} == logs


def test_last_the_inclora_sequence_and_a_vlmeval_rerun_on_a_real_slurm_cluster_give_the_local_scores(
    demo: tuple[Path, dict, dict], slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last in the module: it undoes part of the run. Every kind of stage (LoRA training, merge export,
    evaluate, probe, VLMEvalKit), forgotten with its outputs, redone as Slurm jobs."""
    workdir, table, _ = demo
    run = RunDir(workdir / "run")
    steps = launch(load_study(workdir / "demo.yaml"), run.root, dry_run=True)
    undone = [step for step in steps if stage_subject(step.name).startswith("inclora/")]
    undone += [step for step in steps if step.name == "vlmeval llm-lora/checkpoint-30"]
    assert {step.kind for step in undone} == {"train", "export", "evaluate", "probe", "vlmeval"}
    state = run.read_state()
    for name in (name for step in undone for name in (step.name, *step.parts)):
        del state[name]
    run.state_path.write_text(json.dumps(state))
    for path in (run.checkpoints("inclora"), run.root / "predictions" / "inclora", run.root / "probes" / "inclora"):
        shutil.rmtree(path)
    run.predictions("llm-lora/checkpoint-30", "vlmeval:MMMU_DEV_VAL_tiny").unlink()
    logged = [step.name for step in undone if run.log(step.name).is_file()]  # a probe runs in process, unlogged
    for name in logged:
        run.log(name).unlink()

    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    args = ["launch", str(workdir / "demo.yaml"), "--run-dir", str(run.root), "--backend", "slurm"]
    submitted = CliRunner().invoke(app, args)
    assert submitted.exit_code == 0, submitted.output
    jobs = json.loads(slurm.jobs_path(run.root).read_text())
    assert set(jobs) == {step.name for step in undone}, "exactly the stages not done"
    slurm_cluster.wait_empty()
    assert {entry["status"] for entry in run.read_state().values()} == {"done"}
    assert all(run.log(name).is_file() for name in logged)
    for step in undone:
        assert (run.root / "logs" / f"slurm-{stage_slug(step.name)}-{jobs[step.name]['job_id']}.out").is_file()
    assert score_run(run) == table, "the same scores as the local backend"
