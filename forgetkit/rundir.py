"""The run directory: one folder holding everything a study produced, and which stages are done.

Layout (stages talk only through these files, so any stage can be rerun alone):
  spec.yaml                      the study spec as launched
  state.json                     stage name -> {"status", "config_hash"}
  configs/<stage>.yaml           every LLaMA-Factory config exactly as run
  logs/<stage>.log               every tool's full output
  checkpoints/<recipe>/          LF's output_dir (checkpoint-N folders)
  checkpoints/<sequence>/task-<n>-<task>[-merged]/   continual learning: each task's training (and its merge)
  continual.json                 each continual sequence's stages and task test sets
  predictions/<checkpoint>/<dataset>.jsonl   LF's generated_predictions.jsonl, one per eval
  probes/<checkpoint>.json       drift of each checkpoint from the base on held-out prompts (eval.probe)
  scores.json                    accuracy of every checkpoint x dataset
  versions.json                  Python and package versions (forgetkit, LF, transformers, torch, vlmeval...)
  state.json entries also keep each stage's command line
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json

ZERO_SHOT = "zero-shot"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_STAGE = re.compile(r"^(?:checkpoint|task)-(\d+)")


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def is_complete_checkpoint(path: Path) -> bool:
    """HF's Trainer writes `trainer_state.json` last when it saves a checkpoint; without it the save was cut off."""
    return (path / "trainer_state.json").is_file()


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """LF/HF `checkpoint-N` folders completely saved, in step order."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and p.is_dir() and is_complete_checkpoint(p)
    ]
    return [p for _, p in sorted(found)]


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __post_init__(self) -> None:
        # Configs embed the run's paths and stages are identified by their hash: one run directory, however
        # it is spelled (relative, absolute, through a symlink), must be one set of stages.
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    def create(self) -> RunDir:
        for sub in ("configs", "logs", "checkpoints", "predictions"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @property
    def scores_path(self) -> Path:
        return self.root / "scores.json"

    @property
    def quadrants_path(self) -> Path:
        """quadrant -> eval datasets, as the study spec grouped them."""
        return self.root / "quadrants.json"

    @property
    def continual_path(self) -> Path:
        """Per continual sequence: its stages in order and the task test sets (the accuracy matrix's axes)."""
        return self.root / "continual.json"

    def continual(self) -> dict[str, dict]:
        return _optional_json(self.continual_path)

    def quadrants(self) -> dict[str, list[str]]:
        return _optional_json(self.quadrants_path)

    def config(self, stage: str) -> Path:
        return self.root / "configs" / f"{stage_slug(stage)}.yaml"

    def log(self, stage: str) -> Path:
        return self.root / "logs" / f"{stage_slug(stage)}.log"

    def checkpoints(self, recipe: str) -> Path:
        return self.root / "checkpoints" / recipe

    def predictions(self, checkpoint: str, dataset: str) -> Path:
        return self.root / "predictions" / checkpoint / f"{dataset}.jsonl"

    def probe(self, checkpoint: str) -> Path:
        """The drift probe of a checkpoint against the base model (`forgetkit.stages.probe`)."""
        return self.root / "probes" / f"{checkpoint}.json"

    def scratch(self, stage: str) -> Path:
        return self.root / "scratch" / stage_slug(stage)

    def prediction_files(self) -> list[tuple[str, str, Path]]:
        """(checkpoint, dataset, file) for every prediction file, zero-shot first, then by name and step."""
        base = self.root / "predictions"
        if not base.is_dir():
            raise ForgetkitError(f"{self.root} is not a forgetkit run directory (no predictions/ folder)")
        found = []
        for path in base.rglob("*.jsonl"):
            checkpoint = path.parent.relative_to(base).as_posix()
            found.append((checkpoint, path.stem, path))
        return sorted(found, key=lambda item: (_checkpoint_order(item[0]), item[1]))

    def read_state(self) -> dict[str, dict]:
        if not self.state_path.exists():
            return {}
        state = read_json(self.state_path, dict, "delete it to recheck every stage")
        if not all(isinstance(entry, dict) for entry in state.values()):
            raise ForgetkitError(
                f"{self.state_path} holds a stage that is not an object; delete it to recheck every stage"
            )
        return state

    def is_done(self, stage: str, digest: str) -> bool:
        entry = self.read_state().get(stage)
        return bool(entry) and entry.get("status") == "done" and entry.get("config_hash") == digest

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held while `launch` runs a whole study here: a second launch, or a scheduler's stage, on the same
        run would train into the same checkpoints."""
        busy = f"another forgetkit launch is running in {self.root}; wait for it or use another --run-dir"
        self.root.mkdir(parents=True, exist_ok=True)
        return _locked(self.root, fcntl.LOCK_EX, busy)

    @contextmanager
    def stage_lock(self, stage: str) -> Iterator[None]:
        """Held while one stage runs alone (`launch --stage`, a scheduler's job): other stages may run beside
        it, a whole-study launch and the same stage may not."""
        launching = f"a whole-study forgetkit launch is running in {self.root}; wait for it to finish"
        running = f"stage {stage!r} is already running in {self.root}; wait for it to finish"
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root, fcntl.LOCK_SH, launching):
            with _locked(self.root / ".locks" / f"{stage_slug(stage)}.lock", fcntl.LOCK_EX, running):
                yield

    def mark(
        self, stage: str, status: str, digest: str, reason: str = "", command: str = "", requeued: int = 0
    ) -> None:
        """Record a stage's status; a lock keeps stages running side by side (scheduler jobs) from losing entries.
        `requeued`: how often the scheduler restarted the job running it (a preempted training)."""
        entry = {"status": status, "config_hash": digest}
        entry |= {"command": command} if command else {}
        entry |= {"reason": reason} if reason else {}
        entry |= {"requeued": requeued} if requeued else {}
        with waiting_lock(self.root / ".state.lock"):
            state = self.read_state()
            state[stage] = entry
            atomic.write_json(self.state_path, state)


VERSIONED = ("forgetkit", "llamafactory", "transformers", "torch", "peft", "datasets", "ms-vlmeval", "open_clip_torch")


def record_versions(run: RunDir) -> dict[str, str | None]:
    """`versions.json`: the Python and package versions a run used, so its results can be reproduced."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    atomic.write_json(run.root / "versions.json", versions)
    return versions


@contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on the file `path`, waiting for it: processes updating one shared file take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _locked(path: Path, mode: int, busy: str) -> Iterator[None]:
    """`flock` on `path` (a folder is locked as itself, so a refused launch leaves no lock file behind) without
    waiting; `busy` is the error when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY) if path.is_dir() else os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ForgetkitError(busy) from None
        yield
    finally:
        os.close(fd)


def _optional_json(path: Path) -> dict:
    """What `launch` recorded in `path`, or nothing for a study without that section."""
    fix = "launch the study again to rewrite it"
    return read_json(path, dict, fix) if path.is_file() else {}


def stage_slug(stage: str) -> str:
    """A stage name as a file name: configs, logs, scratch folders and job scripts are named by it."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stage)


def _checkpoint_order(checkpoint: str) -> tuple:
    if checkpoint == ZERO_SHOT:
        return (0, "", 0)
    recipe, _, step = checkpoint.rpartition("/")
    match = _STAGE.match(step)
    return (1, recipe, int(match.group(1)) if match else 0)
