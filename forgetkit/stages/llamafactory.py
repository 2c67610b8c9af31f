"""Run `llamafactory-cli` on a rendered config, log everything, show its progress, fail in one line."""

from __future__ import annotations

import json
import shutil
import sys
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.stages.process import run_logged, subprocess_env

TRAINER_LOG = "trainer_log.jsonl"


def cli_path() -> str:
    """The `llamafactory-cli` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("llamafactory-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("llamafactory-cli")
    if found is None:
        raise ForgetkitError("llamafactory-cli not found; install forgetkit's dependencies (pip install -e .)")
    return found


def command_line(command: str, config: Path) -> str:
    """The shell line a stage runs, as recorded in the run directory and shown by `launch --dry-run`."""
    return f"llamafactory-cli {command} {config}"


def run(
    command: str,
    config_text: str,
    config: Path,
    log: Path,
    output_dir: Path,
    desc: str,
    env: dict[str, str] | None = None,
) -> None:
    """Save `config_text` as `config`, then `llamafactory-cli COMMAND CONFIG` with its output in `log`
    and a progress bar fed by LF's trainer log; `env` is added to the tool's environment."""
    atomic.write_text(config, config_text)
    args = [cli_path(), command, str(config)]
    run_logged(
        args,
        log,
        desc=desc,
        unit="step",
        watch=partial(_update, trainer_log=output_dir / TRAINER_LOG),
        failure=desc,
        env=subprocess_env() | env if env else None,
    )


def _update(bar: tqdm, trainer_log: Path) -> None:
    """LF's trainer_log.jsonl: one line per logged step with current and total steps."""
    try:
        last = trainer_log.read_text(encoding="utf-8").strip().rsplit("\n", 1)[-1]
        progress = json.loads(last)
    except (OSError, ValueError, IndexError):
        return
    total, current = progress.get("total_steps"), progress.get("current_steps")
    if isinstance(total, int) and isinstance(current, int):
        bar.total = total
        bar.n = current
        postfix = {"loss": progress["loss"]} if "loss" in progress else {}
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()
