"""A planned stage: its name, command, identity and whether the run directory has it done, and running it
with its state recorded. Each stage kind's module under `forgetkit/stages/` plans its own `Stage`s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from forgetkit.errors import ForgetkitError
from forgetkit.models import ModelSpec, model_identity
from forgetkit.rundir import RunDir, config_hash
from forgetkit.stage_names import stage_kind


@dataclass(frozen=True)
class Stage:
    """One stage of a study: what it is, the command that runs it, and whether the run directory has it done."""

    name: str
    command: str
    digest: str
    done: bool
    action: Callable[[], object]
    requires: Path | None = None
    """A checkpoint that must exist by the time the stage runs (planned before training saved it)."""
    after: tuple[str, ...] = ()
    """Names of the steps whose outputs this one reads."""
    parts: tuple[str, ...] = ()
    """Names the stage records in the run's state besides its own: an evaluate stage's sets, each done on its own."""

    @property
    def kind(self) -> str:
        return stage_kind(self.name)


def identity(config: str, *upstream: str) -> str:
    """A stage's identity: its own config and the identities of what it reads (the model it starts from, the
    stage that made its checkpoint, its data), so a change anywhere upstream redoes exactly what depends on it."""
    return config_hash("\n".join((config, *upstream)))


def base_identity(model: ModelSpec) -> str:
    """The study's base model: a local folder by its files' contents, a cached hub id by its snapshot's commit."""
    return model_identity(model.path)


def run_stage(run: RunDir, step: Stage, requeued: int = 0) -> None:
    """Run one step, recording running / done / failed (with the one-line reason) in the run's state, and how
    often a scheduler requeued the job running it."""
    run.mark(step.name, "running", step.digest, command=step.command, requeued=requeued)
    try:
        step.action()
    except ForgetkitError as err:
        run.mark(step.name, "failed", step.digest, reason=str(err), command=step.command, requeued=requeued)
        raise
    run.mark(step.name, "done", step.digest, command=step.command, requeued=requeued)


def format_plan(steps: list[Stage]) -> str:
    """The `launch --dry-run` listing: one line per stage, done or to do, with its command."""
    todo = sum(not step.done for step in steps)
    lines = [f"{len(steps)} stages, {len(steps) - todo} done, {todo} to run:"]
    for step in steps:
        lines.append(f"  [{'done' if step.done else 'todo'}] {step.name}\n         {step.command}")
        lines += [f"         + {part}" for part in step.parts]
    return "\n".join(lines)
