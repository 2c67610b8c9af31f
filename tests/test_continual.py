"""Continual learning in a study spec: the plan it expands to, and what a bad spec is told."""

from pathlib import Path

import pytest
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.presets import MLLM_CL_EPOCHS
from forgetkit.recipes import Method
from forgetkit.rundir import RunDir
from forgetkit.spec import layout, load_study
from forgetkit.study import plan

RUNS = Path(__file__).resolve().parents[1] / "runs"
SPEC = """\
name: cl
model: tiny-qwen2.5-vl
hardware: cpu
data: {dataset_dir: data}
continual:
  tasks: [rs, med, ad]
  sequences:
    inc: {strategy: inclora, lr: 1.0e-4, steps: 4, save_steps: 2}
    seq: {strategy: seqfull, replay: 20, lr: 1.0e-6, steps: 4, save_steps: 4}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_table3_spec_runs_each_paper_row_with_the_epochs_of_each_task() -> None:
    study = load_study(RUNS / "table3.yaml")
    assert study.model == "llava-1.5-7b" and not study.recipes
    assert study.continual.tasks == ("rs", "med", "ad", "sci", "fin")
    sequences = study.continual.sequences
    assert {name: s.strategy for name, s in sequences.items()} == {
        "inclora": "inclora",
        "inclora-replay20": "inclora",
        "seqfull": "seqfull",
        "seqfull-replay20": "seqfull",
    }
    assert [recipe.epochs for recipe in sequences["seqfull"].recipes] == list(MLLM_CL_EPOCHS.values())
    assert {recipe.method for recipe in sequences["inclora"].recipes} == {Method.lora}
    assert sequences["inclora-replay20"].recipes[0].lora_rank == 16


def test_replay_trains_every_task_after_the_first_on_its_replay_build(tmp_path: Path) -> None:
    continual = load_study(write(tmp_path, SPEC)).continual
    assert [continual.train_set(i, None) for i in range(3)] == [
        "mllmcl_rs_train",
        "mllmcl_med_train",
        "mllmcl_ad_train",
    ]
    assert [continual.train_set(i, 20) for i in range(3)] == [
        "mllmcl_rs_train",
        "mllmcl_med_train_replay20",
        "mllmcl_ad_train_replay20",
    ]


def test_inclora_trains_each_task_from_the_previous_merge_and_evaluates_every_seen_task(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, SPEC))
    run = RunDir(tmp_path / "run")
    planned = plan(study, run)
    steps = {step.name: step for step in planned}
    names = [name for step in planned for name in (step.name, *step.parts)]
    tests = ["mllmcl_rs_test", "mllmcl_med_test", "mllmcl_ad_test"]
    assert [name for name in names if name.startswith("predict zero-shot")] == [f"predict zero-shot {t}" for t in tests]
    assert [name for name in names if name.startswith(("train inc", "export inc", "predict inc"))] == [
        "train inc/task-1-rs",
        "export inc/task-1-rs-merged",
        *(f"predict inc/task-1-rs {t}" for t in tests),  # every task after every task, as the authors' evals
        "train inc/task-2-med",
        "export inc/task-2-med-merged",
        *(f"predict inc/task-2-med {t}" for t in tests),
        "train inc/task-3-ad",
        "export inc/task-3-ad-merged",
        *(f"predict inc/task-3-ad {t}" for t in tests),
    ]
    assert steps["export inc/task-1-rs-merged"].after == ("train inc/task-1-rs",)
    assert steps["train inc/task-2-med"].after == ("export inc/task-1-rs-merged",)
    assert steps["evaluate inc/task-2-med"].after == ("export inc/task-2-med-merged",)

    config = yaml.safe_load(steps["train inc/task-2-med"].action.args[2])
    assert config["model_name_or_path"] == str(run.checkpoints("inc/task-1-rs-merged"))
    assert config["finetuning_type"] == "lora" and config["dataset"] == "mllmcl_med_train"
    # the authors' IncLoRA: LoRA on the LLM, the projector (Qwen2.5-VL's visual.merger) trained in full beside it
    assert (config["lora_target"], config["additional_target"]) == ("all", "visual.merger")
    assert (config["freeze_vision_tower"], config["freeze_multi_modal_projector"]) == (True, True)
    export = yaml.safe_load(steps["export inc/task-2-med-merged"].action.args[2])
    assert export["model_name_or_path"] == str(run.checkpoints("inc/task-1-rs-merged"))
    assert export["adapter_name_or_path"] == str(run.checkpoints("inc/task-2-med"))
    assert export["export_dir"] == str(run.checkpoints("inc/task-2-med-merged.partial"))


def test_eval_seen_tests_only_the_tasks_learned_so_far(tmp_path: Path) -> None:
    raw = yaml.safe_load(SPEC)
    raw["continual"]["eval"] = "seen"
    planned = plan(load_study(write(tmp_path, yaml.safe_dump(raw))), RunDir(tmp_path / "run"))
    steps = [name for step in planned for name in (step.name, *step.parts)]
    assert [name for name in steps if name.startswith("predict inc")] == [
        "predict inc/task-1-rs mllmcl_rs_test",
        "predict inc/task-2-med mllmcl_rs_test",
        "predict inc/task-2-med mllmcl_med_test",
        *(f"predict inc/task-3-ad mllmcl_{t}_test" for t in ("rs", "med", "ad")),
    ]


def test_seqfull_trains_each_task_from_the_last_tasks_model(tmp_path: Path) -> None:
    study = load_study(write(tmp_path, SPEC))
    run = RunDir(tmp_path / "run")
    steps = {step.name: step for step in plan(study, run)}
    assert not any(name.startswith("export seq") for name in steps)
    config = yaml.safe_load(steps["train seq/task-3-ad"].action.args[2])
    assert config["model_name_or_path"] == str(run.checkpoints("seq/task-2-med"))
    assert config["finetuning_type"] == "full" and config["dataset"] == "mllmcl_ad_train_replay20"
    frozen = (config["freeze_vision_tower"], config["freeze_multi_modal_projector"], config["freeze_language_model"])
    assert frozen == (True, False, False)  # SeqFull trains the LLM and the projector, as the authors' configs
    assert steps["train seq/task-3-ad"].after == ("train seq/task-2-med",)


def test_the_run_records_each_sequences_stages_and_test_sets(tmp_path: Path) -> None:
    record = layout(load_study(write(tmp_path, SPEC)).continual)
    assert record["seq"] == {
        "strategy": "seqfull",
        "replay": 20,
        "tasks": ["rs", "med", "ad"],
        "stages": ["seq/task-1-rs", "seq/task-2-med", "seq/task-3-ad"],
        "tests": ["mllmcl_rs_test", "mllmcl_med_test", "mllmcl_ad_test"],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": []}, "tasks must list the task names"),
        ({"tasks": ["rs", "rs"]}, "names a task twice"),
        ({"train": "cl_train"}, "must contain {task}"),
        ({"sequences": {"x": {"strategy": "ewc"}}}, "strategy 'ewc' unknown; use inclora or seqfull"),
        ({"sequences": {"x": {"strategy": "seqfull", "replay": 0}}}, "replay 0 must be a positive number"),
        ({"sequences": {"x": {"strategy": "seqfull", "preset": "table3-a"}}}, "strategy seqfull trains with method"),
        ({"sequences": {"x y": {"strategy": "seqfull"}}}, "continual sequence name 'x y'"),
        ({"order": [1]}, "unknown key(s) ['order']"),
        ({"eval": "future"}, "eval 'future' unknown; use all"),
    ],
)
def test_bad_continual_sections_name_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    raw = yaml.safe_load(SPEC)
    raw["continual"] |= change
    with pytest.raises(ForgetkitError) as error:
        load_study(write(tmp_path, yaml.safe_dump(raw)))
    assert message in str(error.value)


def test_a_sequence_may_not_share_a_recipes_name(tmp_path: Path) -> None:
    raw = yaml.safe_load(SPEC) | {"recipes": {"inc": {"steps": 2}}, "eval": {"datasets": ["x"]}}
    with pytest.raises(ForgetkitError, match="name both a recipe and a continual sequence"):
        load_study(write(tmp_path, yaml.safe_dump(raw)))
