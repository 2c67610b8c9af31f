"""Predict stage: LF batch generation over one eval dataset; keeps only `generated_predictions.jsonl`."""

from __future__ import annotations

import contextlib
import os
import shutil
from functools import partial
from pathlib import Path

from forgetkit.errors import ForgetkitError
from forgetkit.rundir import RunDir
from forgetkit.stages import llamafactory
from forgetkit.stages.stage import Stage, identity

PREDICTIONS = "generated_predictions.jsonl"


def predict(run: RunDir, stage: str, config_text: str, scratch: Path, target: Path) -> Path:
    """Run LF prediction into `scratch` (LF's output_dir), then move its predictions to `target`."""
    shutil.rmtree(scratch, ignore_errors=True)
    llamafactory.run("train", config_text, run.config(stage), run.log(stage), scratch, desc=stage)
    produced = scratch / PREDICTIONS
    if not produced.is_file():
        raise ForgetkitError(f"{stage}: LLaMA-Factory finished without writing {produced}; see {run.log(stage)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(produced, target)
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()
    return target


def predict_stage(run: RunDir, stage: str, config_text: str, target: Path, upstream: tuple[str, ...]) -> Stage:
    """`llamafactory-cli train` of a predict YAML (`do_predict`), keyed by the YAML and what it reads."""
    digest = identity(config_text, *upstream)
    return Stage(
        stage,
        llamafactory.command_line("train", run.config(stage)),
        digest,
        run.is_done(stage, digest) and target.is_file(),
        partial(predict, run, stage, config_text, run.scratch(stage), target),
    )
