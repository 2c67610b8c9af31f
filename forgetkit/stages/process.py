"""Run one external tool the way every stage does: full output in a log, a progress bar, one-line failure."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from forgetkit.errors import ForgetkitError


class StageFailed(ForgetkitError):
    """A tool exited non-zero; the message names the stage, the likely cause and the full log."""


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _die_with_parent() -> None:
    """Linux: the tool is killed when forgetkit dies, even by kill -9, so a rerun never races an orphan
    still writing the same checkpoints."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass(frozen=True)
class Command:
    """One process of a stage: its arguments, its log and its environment (None: `subprocess_env()`)."""

    args: list[str]
    log: Path
    env: dict[str, str] | None = None


def run_logged(
    args: list[str],
    log: Path,
    *,
    desc: str,
    unit: str,
    watch: Callable[[tqdm], None],
    failure: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run `args` with stdout and stderr in `log` (first line: the command); `watch(bar)` updates the
    progress bar from whatever the tool writes as it runs. A non-zero exit raises `StageFailed` naming
    `failure`, the telling line of the log and the log itself; an interrupt stops the tool."""
    run_side_by_side([Command(args, log, env)], desc=desc, unit=unit, watch=watch, failure=failure, cwd=cwd)


def run_side_by_side(
    commands: list[Command],
    *,
    desc: str,
    unit: str,
    watch: Callable[[tqdm], None],
    failure: str,
    cwd: Path | None = None,
) -> None:
    """`run_logged` for processes that run at once (one per device) under one progress bar; the first that
    fails stops the others."""
    handles = []
    for command in commands:
        command.log.parent.mkdir(parents=True, exist_ok=True)
        handles.append(open(command.log, "w", encoding="utf-8"))  # noqa: SIM115 - closed below, after the processes
    processes: list[subprocess.Popen] = []
    stopped: set[int] = set()
    try:
        with tqdm(desc=desc, unit=unit, leave=True) as bar:
            for command, handle in zip(commands, handles):
                handle.write(f"$ {' '.join(command.args)}\n")
                handle.flush()
                processes.append(
                    subprocess.Popen(
                        command.args,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env=command.env or subprocess_env(),
                        cwd=cwd,
                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                    )
                )
            while any(process.poll() is None for process in processes) and not _failed(processes):
                watch(bar)
                time.sleep(0.2)
            watch(bar)
    finally:
        for index, process in enumerate(processes):
            if process.poll() is None:
                process.terminate()
                process.wait()
                stopped.add(index)
        for handle in handles:
            handle.close()
    for index, (command, process) in enumerate(zip(commands, processes)):
        if process.returncode != 0 and index not in stopped:
            log = command.log
            raise StageFailed(f"{failure} failed (exit {process.returncode}): {last_error(log)}; full log: {log}")


def _failed(processes: list[subprocess.Popen]) -> bool:
    return any(process.poll() not in (None, 0) for process in processes)


def last_error(log: Path) -> str:
    """The most telling line of a failed tool's output: its last exception line, else its last line."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.split(":", 1)[0].endswith(("Error", "Exception")):
            return line[:500]
    return lines[-1][:500] if lines else "no output"
