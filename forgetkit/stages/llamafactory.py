"""Run `llamafactory-cli` on a rendered config, log everything, show its progress, fail in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.errors import ForgetkitError

TRAINER_LOG = "trainer_log.jsonl"


class StageFailed(ForgetkitError):
    """A tool exited non-zero; the message names the stage, the likely cause and the full log."""


def cli_path() -> str:
    """The `llamafactory-cli` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("llamafactory-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("llamafactory-cli")
    if found is None:
        raise ForgetkitError("llamafactory-cli not found; install forgetkit's dependencies (pip install -e .)")
    return found


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def command_line(command: str, config: Path) -> str:
    """The shell line a stage runs, as recorded in the run directory and shown by `launch --dry-run`."""
    return f"llamafactory-cli {command} {config}"


def run(command: str, config_text: str, config: Path, log: Path, output_dir: Path, desc: str) -> None:
    """Save `config_text` as `config`, then `llamafactory-cli COMMAND CONFIG` with its output in `log`
    and a progress bar fed by LF's trainer log."""
    atomic.write_text(config, config_text)
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [cli_path(), command, str(config)]
    with open(log, "w", encoding="utf-8") as handle, tqdm(desc=desc, unit="step", leave=True) as bar:
        handle.write(f"$ {' '.join(args)}\n")
        handle.flush()
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=subprocess_env())
        try:
            while process.poll() is None:
                _update(bar, output_dir / TRAINER_LOG)
                time.sleep(0.5)
        except BaseException:
            process.terminate()
            process.wait()
            raise
        _update(bar, output_dir / TRAINER_LOG)
    if process.returncode != 0:
        raise StageFailed(f"{desc} failed (exit {process.returncode}): {last_error(log)}; full log: {log}")


def _update(bar: tqdm, trainer_log: Path) -> None:
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


def last_error(log: Path) -> str:
    """The most telling line of a failed tool's output: its last exception line, else its last line."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.split(":", 1)[0].endswith(("Error", "Exception")):
            return line[:500]
    return lines[-1][:500] if lines else "no output"
