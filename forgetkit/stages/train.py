"""Train stage: the real `llamafactory-cli train`; rerunning resumes from LF's last checkpoint."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from forgetkit.rundir import RunDir, checkpoint_dirs, is_complete_checkpoint
from forgetkit.stage_names import stage_name
from forgetkit.stages import llamafactory
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    from forgetkit.spec import Study
from forgetkit.built_data import data_identity
from forgetkit.models import ModelSpec
from forgetkit.recipes import Recipe
from forgetkit.render import DataSpec, render_train
from forgetkit.tracking import Tracking, lf_value


def train(run: RunDir, stage: str, config_text: str, output_dir: Path, tracking: Tracking) -> list[Path]:
    """Train into `output_dir`, reporting where `tracking` says; return the saved checkpoints in step order."""
    drop_unresumable(output_dir)
    env = tracking.training_env(run)
    llamafactory.run("train", config_text, run.config(stage), run.log(stage), output_dir, desc=stage, env=env)
    return checkpoint_dirs(output_dir)


def drop_unresumable(output_dir: Path) -> None:
    """Remove what a killed training leaves that HF cannot resume from: checkpoints cut off mid-save (HF
    would pick the newest folder and fail on it), and the whole folder when no checkpoint is complete
    (LF refuses a non-empty output_dir it cannot resume)."""
    if not output_dir.is_dir():
        return
    for folder in output_dir.glob("checkpoint-*"):
        if folder.is_dir() and not is_complete_checkpoint(folder):
            shutil.rmtree(folder)
    if not checkpoint_dirs(output_dir):
        shutil.rmtree(output_dir)


def train_stage(
    study: Study,
    run: RunDir,
    model: ModelSpec,
    label: str,
    recipe: Recipe,
    data: DataSpec,
    source: str,
    after: tuple[str, ...] = (),
) -> Stage:
    """`llamafactory-cli train` of `model` (whose identity is `source`) into `checkpoints/<label>`; a rerun resumes
    from LF's last checkpoint. Where it reports (`study.report_to`) is no part of its identity: turning tracking
    on or off retrains nothing."""
    output_dir = run.checkpoints(label)
    logging_steps = min(10, max(1, recipe.steps // 10)) if recipe.steps is not None else 10
    render = partial(
        render_train,
        model,
        recipe,
        data,
        output_dir,
        study.hardware,
        seed=study.seed,
        logging_steps=logging_steps,
        deepspeed=study.hardware.deepspeed,
        trust_remote_code=study.trust_remote_code,
    )
    stage = stage_name("train", label)
    untracked = render()
    digest = identity(untracked, source, *(data_identity(data.dataset_dir, name) for name in data.train))
    text = render(report_to=lf_value(study.report_to), run_name=label) if study.report_to else untracked
    return Stage(
        stage,
        llamafactory.command_line("train", run.config(stage)),
        digest,
        run.is_done(stage, digest),
        partial(train, run, stage, text, output_dir, Tracking(study.report_to, study.name, label, digest)),
        after=after,
    )
