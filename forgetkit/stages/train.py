"""Train stage: the real `llamafactory-cli train`; rerunning resumes from LF's last checkpoint."""

from __future__ import annotations

from pathlib import Path

from forgetkit.rundir import RunDir, checkpoint_dirs
from forgetkit.stages import llamafactory


def train(run: RunDir, stage: str, config_text: str, output_dir: Path) -> list[Path]:
    """Train into `output_dir`; return the saved checkpoints in step order."""
    llamafactory.run("train", config_text, run.config(stage), run.log(stage), output_dir, desc=stage)
    return checkpoint_dirs(output_dir)
