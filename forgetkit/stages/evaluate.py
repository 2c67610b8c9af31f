"""Evaluate stage: every LF-format eval set of one checkpoint in one process per device, the model loaded
once (`forgetkit.stages.eval_worker`).

The run's state stays per (checkpoint, set): each set is a member with its own name (`predict CKPT SET`,
`logits CKPT SET`), identity and config, so a rerun redoes exactly the sets that are missing or changed,
and inside a set only its missing rows. With several devices, one worker per device (its
`CUDA_VISIBLE_DEVICES`) takes every count-th chunk of each set; the parts merge in row order.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.rundir import RunDir
from forgetkit.stage_names import stage_name
from forgetkit.stages import rowlog
from forgetkit.stages.process import Command, run_side_by_side, subprocess_env
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    from tqdm import tqdm

    from forgetkit.spec import Study

WORKER = "forgetkit.stages.eval_worker"
STATE_KIND = {"predict": "predict", "logits": "logits", "chat": "predict"}
"""The stage kind each way of answering records its sets under (LF's vLLM engine predicts, too)."""


@dataclass(frozen=True)
class Member:
    """One eval set of the checkpoint: `kind` is how it is answered (predict: LF prediction, logits: letter
    logits, chat: LF's ChatModel engine); `config` is the predict YAML (chat: its settings JSON) that keys it."""

    kind: str
    name: str
    dataset: str
    config: str
    target: str
    digest: str
    command: str


def member(run: RunDir, kind: str, checkpoint: str, dataset: str, config: str, upstream: tuple[str, ...]) -> Member:
    """The set's member, keyed as its own stage was before sets shared a process, so finished runs stay done."""
    name = stage_name(STATE_KIND[kind], checkpoint, dataset)
    digest = identity(("logits\n" if kind == "logits" else "") + config, *upstream)
    target = str(run.predictions(checkpoint, dataset))
    return Member(kind, name, dataset, config, target, digest, command_line(run, checkpoint))


def member_done(run: RunDir, member: Member) -> bool:
    return run.is_done(member.name, member.digest) and Path(member.target).is_file()


def command_line(run: RunDir, checkpoint: str) -> str:
    return f"python -m {WORKER} {job_path(run, checkpoint)} SHARD COUNT"


def job_path(run: RunDir, checkpoint: str) -> Path:
    return run.config(stage_name("evaluate", checkpoint)).with_suffix(".json")


def evaluate_stage(study: Study, run: RunDir, checkpoint: str, members: list[Member]) -> Stage:
    """One stage for the checkpoint's sets; done when every member is."""
    digest = identity("evaluate", *(m.digest for m in members))
    done = all(member_done(run, m) for m in members)
    evaluation = Evaluation(run, checkpoint, members, study.hardware.device, eval_devices(study), study.eval.chunk_rows)
    name, parts = stage_name("evaluate", checkpoint), tuple(m.name for m in members)
    return Stage(name, command_line(run, checkpoint), digest, done, evaluation, parts=parts)


def eval_devices(study: Study) -> tuple[str, ...]:
    """The study's `eval.devices`, else on cuda every visible GPU (one worker each); () is one worker as is."""
    if study.eval.devices:
        return study.eval.devices
    if study.hardware.device != "cuda":
        return ()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(device for device in visible.split(",") if device.strip())
    import torch

    return tuple(str(index) for index in range(torch.cuda.device_count()))


@dataclass(frozen=True)
class Evaluation:
    """An evaluate stage's action: the workers on the members not done, then a check that each set was merged
    and recorded."""

    run: RunDir
    checkpoint: str
    members: list[Member]
    device: str
    devices: tuple[str, ...]
    chunk_rows: int

    def __call__(self) -> None:
        run, checkpoint = self.run, self.checkpoint
        stage = stage_name("evaluate", checkpoint)
        todo = [m for m in self.members if not member_done(run, m)]
        for m in todo:
            atomic.write_text(run.config(m.name).with_suffix(".json" if m.kind == "chat" else ".yaml"), m.config)
        job = {"run": str(run.root), "device": self.device, "chunk_rows": self.chunk_rows}
        atomic.write_json(job_path(run, checkpoint), job | {"members": [asdict(m) for m in todo]})
        workers = self.devices or (None,)
        commands = []
        for shard, visible in enumerate(workers):
            env = subprocess_env() | ({"CUDA_VISIBLE_DEVICES": visible} if visible is not None else {})
            log = run.log(stage) if len(workers) == 1 else run.log(stage).with_suffix(f".worker{shard}.log")
            args = [sys.executable, "-m", WORKER, str(job_path(run, checkpoint)), str(shard), str(len(workers))]
            commands.append(Command(args, log, env))
        watch = partial(_count_done, run=run, todo=todo)
        run_side_by_side(commands, desc=stage, unit="set", watch=watch, failure=stage)
        for m in todo:
            if member_done(run, m):
                rowlog.remove(run.scratch(m.name))  # no worker writes into it any more
        missing = [m.dataset for m in todo if not member_done(run, m)]
        if missing:
            raise ForgetkitError(f"{stage}: its workers ended without {', '.join(missing)}; see {run.log(stage)}")


def _count_done(bar: tqdm, run: RunDir, todo: list[Member]) -> None:
    bar.total = len(todo)
    bar.n = sum(member_done(run, m) for m in todo)
    bar.refresh()


def settings_config(settings: dict) -> str:
    """A chat member's config: its engine settings as sorted JSON (what keys it)."""
    return json.dumps(settings, sort_keys=True)
