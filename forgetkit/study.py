"""The stages a study (`forgetkit.spec`) runs: zero-shot eval, then per recipe train and eval of every
saved checkpoint, then the continual-learning sequences (`forgetkit.continual`), then scores.

Each stage records its config hash in the run directory's state, so a rerun skips what is done and
redoes what is not.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from forgetkit import atomic
from forgetkit.built_data import check_built
from forgetkit.continual import continual_stages
from forgetkit.doctor import require as require_environment
from forgetkit.errors import ForgetkitError
from forgetkit.evals import eval_stages
from forgetkit.models import ModelSpec, local_model_dir, resolve_model
from forgetkit.recipes import Method, Recipe
from forgetkit.rundir import ZERO_SHOT, RunDir, checkpoint_dirs, is_complete_checkpoint, record_versions
from forgetkit.scoring import score_checkpoints, score_run
from forgetkit.slurm import restart_count
from forgetkit.spec import Study, layout
from forgetkit.stage_names import stage_name, stage_subject
from forgetkit.stages.stage import Stage, base_identity, run_stage
from forgetkit.stages.train import train_stage
from forgetkit.tracking import log_scores
from forgetkit.tracking import require as require_tracker

DEFAULT_RUNS_DIR = Path("runs") / "out"


def default_run_dir(study: Study) -> Path:
    return DEFAULT_RUNS_DIR / study.name


def plan(study: Study, run: RunDir) -> list[Stage]:
    """Every stage of the study in order: zero-shot evals (eval sets and continual task test sets, Table 3's
    zero-shot row), per recipe training and the eval of each checkpoint (the checkpoints training will
    save, or has saved), then the continual sequences. Nothing runs here."""
    model = resolve_model(study.model, study.template)
    base = base_identity(model)
    zero_shot = study.eval.all_datasets + (study.continual.test_sets if study.continual else ())
    steps = eval_stages(study, run, model, model.path, ZERO_SHOT, tuple(dict.fromkeys(zero_shot)), base)
    for recipe_name, recipe in study.recipes.items():
        train = train_stage(study, run, model, recipe_name, recipe, study.data_for(recipe_name), base)
        steps.append(train)
        steps.extend(_checkpoint_eval_stages(study, run, model, recipe_name, recipe, train))
    if study.continual is not None:
        steps.extend(continual_stages(study, run, model, base))
    return steps


def launch(study: Study, run_dir: Path, dry_run: bool = False, only: str | None = None) -> dict | list[Stage]:
    """Run every stage not already done, then score; return {checkpoint: {dataset: score}}.

    With `dry_run`, return the plan without running or writing anything. With `only`, run that one stage
    (what a scheduler's job does) and return the plan.
    """
    run = RunDir(run_dir)
    if dry_run:
        return plan(study, run)
    check_data(study)
    require_tracker(study.report_to)
    local_model_dir(resolve_model(study.model, study.template).path)  # a hub id is keyed by its cached commit
    if only is not None and int(os.environ.get("NODE_RANK") or 0) > 0:
        return _join_training(run, plan(study, run), only)
    if only is not None:
        with run.stage_lock(only):
            return _launch_one(study, run, plan(study, run), only)
    with run.exclusive():
        return _launch_all(study, run, plan(study, run))


def _launch_all(study: Study, run: RunDir, steps: list[Stage]) -> dict:
    trains = [step for step in steps if step.kind == "train"]
    for step in trains:
        _check_unchanged(run, step)
    prepare(study, run)
    for step in steps:
        if not step.done and (step.requires is None or is_complete_checkpoint(step.requires)):
            _run_stage(study, run, step)
    model = resolve_model(study.model, study.template)
    by_name = {step.name: step for step in trains}
    for recipe_name, recipe in study.recipes.items():  # checkpoints training saved beyond the planned ones
        train = by_name[stage_name("train", recipe_name)]
        for step in _checkpoint_eval_stages(study, run, model, recipe_name, recipe, train):
            if not step.done:
                _run_stage(study, run, step)
    table = score_run(run)
    log_scores(run, study.report_to, study.name, table)
    return table


def check_data(study: Study) -> None:
    """Stop before anything runs (or is submitted) when a dataset the study reads is not built, or its build
    did not finish, or a file changed since."""
    check_built(study.data.dataset_dir, datasets_read(study), study.eval.lmudata)


def datasets_read(study: Study) -> tuple[str, ...]:
    """Every dataset a stage of the study reads: training sets, eval sets, continual tasks' sets, the probe's."""
    names = [*study.eval.all_datasets, *(n for recipe in study.recipes for n in study.data_for(recipe).train)]
    if study.continual is not None:
        continual = study.continual
        for sequence in continual.sequences.values():
            names += [continual.train_set(index, sequence.replay) for index in range(len(continual.tasks))]
        names += continual.test_sets
    names += [study.eval.probe] if study.eval.probe else []
    return tuple(dict.fromkeys(names))


def prepare(study: Study, run: RunDir) -> None:
    """The run directory's record of what was launched: spec, versions, quadrants, continual layout."""
    run.create()
    atomic.write_text(run.root / "spec.yaml", study.spec_path.read_text(encoding="utf-8"))
    record_versions(run)
    atomic.write_json(run.quadrants_path, {q: list(names) for q, names in study.eval.quadrants.items()})
    if study.continual is not None:
        atomic.write_json(run.continual_path, layout(study.continual))


def _run_stage(study: Study, run: RunDir, step: Stage) -> None:
    """`run_stage`, once the environment passed the doctor's required checks (a broken install stops
    here with the doctor's line, not inside a stage's log)."""
    require_environment(study.hardware.device)
    run_stage(run, step, requeued=restart_count())


def _launch_one(study: Study, run: RunDir, steps: list[Stage], name: str) -> list[Stage]:
    by_name = {step.name: step for step in steps}
    if name not in by_name:
        raise ForgetkitError(f"no stage {name!r} in this study; `forgetkit launch SPEC --dry-run` lists them")
    step = by_name[name]
    missing = [after for after in step.after if not by_name[after].done]
    if missing:
        raise ForgetkitError(f"stage {name!r} needs {', '.join(missing)} done first")
    if step.kind == "train":
        _check_unchanged(run, step)
    if not step.done:
        prepare(study, run)
        _run_stage(study, run, step)
        if step.kind in ("evaluate", "vlmeval") and study.report_to:
            table = score_checkpoints(run, {ZERO_SHOT, stage_subject(step.name)})
            log_scores(run, study.report_to, study.name, table)
    return steps


def _join_training(run: RunDir, steps: list[Stage], name: str) -> list[Stage]:
    """A multi-node training's node other than the first: LF's launcher joins the first node's rendezvous; the
    first node holds the stage's lock and records it."""
    step = next((step for step in steps if step.name == name), None)
    if step is None or step.kind != "train":
        raise ForgetkitError(f"NODE_RANK is set, but {name!r} is no training stage of this study; unset NODE_RANK")
    step.action()
    return steps


def _check_unchanged(run: RunDir, step: Stage) -> None:
    """Refuse to train into checkpoints a different config (or base model, or data) made."""
    output_dir = run.checkpoints(stage_subject(step.name))
    previous = run.read_state().get(step.name)
    if previous and previous.get("config_hash") != step.digest and checkpoint_dirs(output_dir):
        raise ForgetkitError(
            f"{step.name!r} changed since its checkpoints in {output_dir} were trained; "
            "launch into a new --run-dir or delete that folder"
        )


def _checkpoint_eval_stages(
    study: Study, run: RunDir, model: ModelSpec, recipe_name: str, recipe: Recipe, train: Stage
) -> list[Stage]:
    """Evals of the checkpoints on disk, or before training of those LF will save (every save_steps and the last)."""
    output_dir = run.checkpoints(recipe_name)
    saved = checkpoint_dirs(output_dir)
    if not saved and recipe.steps is not None:
        planned = list(range(recipe.save_steps, recipe.steps + 1, recipe.save_steps))
        saved = [output_dir / f"checkpoint-{n}" for n in sorted(set(planned) | {recipe.steps})]
    steps = []
    for checkpoint in saved:
        label = f"{recipe_name}/{checkpoint.name}"
        datasets = study.eval.all_datasets
        if recipe.method is Method.lora:
            evals = eval_stages(study, run, model, model.path, label, datasets, train.digest, adapter=checkpoint)
        else:
            evals = eval_stages(study, run, model, str(checkpoint), label, datasets, train.digest)
        steps.extend(dataclasses.replace(step, requires=checkpoint, after=(train.name,)) for step in evals)
    return steps
