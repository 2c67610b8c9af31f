"""A rerun after an edit, a rebuild or a refusal: each stage is identified by everything upstream of it, so
exactly what depends on a change is redone, and a refused launch writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from built_data import built

from forgetkit.errors import ForgetkitError
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stages.evaluate import member_done
from forgetkit.stages.stage import Stage
from forgetkit.study import launch, plan

DATASETS = ("train_set", "eval_set")
RECIPE_R = ["train r", "predict r/checkpoint-2 eval_set", "predict r/checkpoint-4 eval_set"]
"""Recipe r's training and the evals of its two checkpoints: what a change to r or its data redoes."""


def study_spec(folder: Path, lr: str = "1.0e-4", continual: bool = False) -> Path:
    spec = folder / "study.yaml"
    text = (
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {dataset_dir: data, train: [train_set]}\n"
        f"eval: {{datasets: [eval_set]}}\nrecipes: {{r: {{lr: {lr}, steps: 4, save_steps: 2}}}}\n"
    )
    if continual:
        text += "continual:\n  tasks: [t1, t2]\n  sequences: {inc: {strategy: inclora, steps: 2, save_steps: 2}}\n"
    spec.write_text(text)
    return spec


def all_done(run: RunDir, steps: list[Stage]) -> None:
    """Record every stage (and every eval set of an evaluate stage) done, with its outputs, as a finished
    launch leaves them."""
    for step in steps:
        run.mark(step.name, "done", step.digest)
        for member in step.action.members if step.kind == "evaluate" else ():
            run.mark(member.name, "done", member.digest)
            Path(member.target).parent.mkdir(parents=True, exist_ok=True)
            Path(member.target).write_text('{"predict": "A", "label": "A"}\n')
        if step.name.startswith("export "):
            (run.root / "checkpoints" / step.name.removeprefix("export ")).mkdir(parents=True)


def todo(study_path: Path, run: RunDir) -> list[str]:
    """What a launch would redo: stages, and an evaluate stage's sets one by one."""
    names = []
    for step in plan(load_study(study_path), run):
        if step.kind == "evaluate":
            names += [member.name for member in step.action.members if not member_done(run, member)]
        elif not step.done:
            names.append(step.name)
    return names


@pytest.fixture
def finished(tmp_path: Path) -> RunDir:
    """A study whose every stage is recorded done."""
    names = (*DATASETS, *(f"mllmcl_{t}_{s}" for t in ("t1", "t2") for s in ("train", "test")))
    built(tmp_path / "data", *names)
    run = RunDir(tmp_path / "run")
    all_done(run, plan(load_study(study_spec(tmp_path, continual=True)), run))
    assert todo(tmp_path / "study.yaml", run) == []
    return run


def test_an_edited_recipe_redoes_its_training_and_every_eval_of_its_checkpoints(
    finished: RunDir, tmp_path: Path
) -> None:
    study_spec(tmp_path, lr="2.0e-4", continual=True)
    assert todo(tmp_path / "study.yaml", finished) == RECIPE_R


def test_a_rebuilt_training_set_redoes_what_trained_on_it_and_nothing_else(finished: RunDir, tmp_path: Path) -> None:
    built(tmp_path / "data", "unrelated")
    assert todo(tmp_path / "study.yaml", finished) == []
    built(tmp_path / "data", "train_set", answers="BA")
    assert todo(tmp_path / "study.yaml", finished) == RECIPE_R


def test_a_retrained_continual_task_redoes_every_stage_after_it(finished: RunDir, tmp_path: Path) -> None:
    built(tmp_path / "data", "mllmcl_t2_train")
    built(tmp_path / "data", "mllmcl_t2_train")  # the same bytes again: still done
    assert todo(tmp_path / "study.yaml", finished) == []
    manifest = tmp_path / "data" / "mllmcl_t1_train.manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "content_hash": "rebuilt"}))
    assert todo(tmp_path / "study.yaml", finished) == [
        "train inc/task-1-t1",
        "export inc/task-1-t1-merged",
        "predict inc/task-1-t1 mllmcl_t1_test",
        "predict inc/task-1-t1 mllmcl_t2_test",
        "train inc/task-2-t2",
        "export inc/task-2-t2-merged",
        "predict inc/task-2-t2 mllmcl_t1_test",
        "predict inc/task-2-t2 mllmcl_t2_test",
    ]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def trained(run: RunDir, study_path: Path) -> None:
    """`train r` done with a saved checkpoint, as a first launch leaves it, plus the run's record."""
    steps = {step.name: step for step in plan(load_study(study_path), run)}
    run.mark("train r", "done", steps["train r"].digest)
    (run.checkpoints("r") / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints("r") / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (run.root / "spec.yaml").write_text(study_path.read_text())


def test_a_launch_refused_for_an_edited_recipe_leaves_the_run_directory_byte_identical(tmp_path: Path) -> None:
    built(tmp_path / "data", *DATASETS)
    run = RunDir(tmp_path / "run")
    trained(run, study_spec(tmp_path))
    before = snapshot(run.root)
    with pytest.raises(ForgetkitError, match="'train r' changed since its checkpoints"):
        launch(load_study(study_spec(tmp_path, lr="3.0e-4")), run.root)
    assert snapshot(run.root) == before


def test_a_launch_beside_a_running_one_leaves_the_run_directory_byte_identical(tmp_path: Path) -> None:
    built(tmp_path / "data", *DATASETS)
    run = RunDir(tmp_path / "run")
    trained(run, study_spec(tmp_path))
    study = load_study(study_spec(tmp_path, lr="3.0e-4"))
    with run.exclusive():
        before = snapshot(run.root)
        with pytest.raises(ForgetkitError, match="another forgetkit launch is running"):
            launch(study, run.root)
        with pytest.raises(ForgetkitError, match="a whole-study forgetkit launch is running"):
            launch(study, run.root, only="evaluate zero-shot")
        assert snapshot(run.root) == before


def test_one_stage_runs_once_at_a_time_and_beside_other_stages(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.stage_lock("predict zero-shot a"):
        with pytest.raises(ForgetkitError, match="stage 'predict zero-shot a' is already running"):
            with run.stage_lock("predict zero-shot a"):
                pass
        with run.stage_lock("predict zero-shot b"):
            pass
        with pytest.raises(ForgetkitError, match="another forgetkit launch is running"):
            with run.exclusive():
                pass


def test_a_killed_build_counts_as_not_built_until_it_is_rebuilt(tmp_path: Path) -> None:
    data = built(tmp_path / "data", *DATASETS)
    study = load_study(study_spec(tmp_path))
    (data / "eval_set.manifest.json").unlink()  # what a build killed midway leaves: files, no manifest
    (data / ".eval_set.json.x1y2.tmp").write_text("[")
    with pytest.raises(ForgetkitError, match=r"dataset 'eval_set' has no eval_set.manifest.json .* did not finish"):
        launch(study, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    built(data, "eval_set")
    assert not (data / ".eval_set.json.x1y2.tmp").exists()
    (data / "train_set.json").write_text("[]\n")
    with pytest.raises(ForgetkitError, match=r"dataset 'train_set': .*train_set.json changed since its build"):
        launch(study, tmp_path / "run")
