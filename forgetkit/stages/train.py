"""Train stage: the real `llamafactory-cli train`; rerunning resumes from LF's last checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

from forgetkit.rundir import RunDir, checkpoint_dirs, is_complete_checkpoint
from forgetkit.stages import llamafactory


def train(run: RunDir, stage: str, config_text: str, output_dir: Path) -> list[Path]:
    """Train into `output_dir`; return the saved checkpoints in step order."""
    drop_unresumable(output_dir)
    llamafactory.run("train", config_text, run.config(stage), run.log(stage), output_dir, desc=stage)
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
