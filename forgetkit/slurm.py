"""`forgetkit launch --backend slurm`: each stage not yet done becomes one `sbatch` job, submitted in plan order
with `--dependency=afterok:` on the jobs of the stages whose outputs it reads, so Slurm itself orders the study.

Every job runs `forgetkit launch SPEC --run-dir RUN --stage NAME`: the same code as a local launch, recording
its stage in the run directory's state, so submitting again sends only what is still not done.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.recipes import Hardware
from forgetkit.rundir import stage_slug
from forgetkit.stage_names import KINDS, stage_kind, stage_subject
from forgetkit.stages.stage import Stage

RESERVED = ("job-name", "output", "dependency")
"""sbatch options forgetkit sets itself."""
PREEMPT_WARNING_S = 300
"""A training job's warning before its time limit (`--signal=B:USR1@300`, `--sbatch train:signal=...` to change):
enough for the job to requeue itself and stop; the next run resumes from the last complete checkpoint."""
RESTARTS = "SLURM_RESTART_COUNT"
"""How many times Slurm has requeued the job running now (unset before the first requeue)."""


@dataclass(frozen=True)
class Job:
    """One stage as a Slurm job (or, with `members`, a job array running one stage per task): its batch script
    and the jobs, submitted along with it, it must wait for."""

    stage: str
    script: Path
    text: str
    after: tuple[str, ...]
    members: tuple[str, ...] = ()
    """An array job's stages, task I running members[I]; empty for a one-stage job named `stage`."""

    @property
    def stages(self) -> tuple[str, ...]:
        return self.members or (self.stage,)


def parse_options(items: list[str]) -> dict[str, str]:
    """`--sbatch` values: `KEY=VALUE` (an sbatch long option) for every job, `KIND:KEY=VALUE` for one stage kind."""
    options: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        kind, _, name = key.rpartition(":")
        name = name.lstrip("-")
        if not equals or not value or "\n" in value or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
            raise ForgetkitError(
                f"--sbatch {item!r} is not KEY=VALUE with an sbatch long option as KEY, e.g. --sbatch gres=gpu:8"
            )
        if kind and kind not in KINDS:
            raise ForgetkitError(f"--sbatch {item!r}: stage kind {kind!r} unknown; use one of {', '.join(KINDS)}")
        if name in RESERVED:
            raise ForgetkitError(f"--sbatch {item!r}: forgetkit sets --{name} itself; leave it out")
        options[f"{kind}:{name}" if kind else name] = value
    return options


def plan_jobs(
    steps: list[Stage],
    spec: Path,
    run_dir: Path,
    options: Mapping[str, str],
    hardware: Hardware | None = None,
    eval_arrays: bool = False,
) -> list[Job]:
    """The job of every stage not done, in plan order, each waiting only for stages that are not done either.

    Scripts are named `RUN/slurm/<NN>-<stage>.sbatch` after the stage's place in the plan. Nothing is written.
    With `hardware.nodes` above 1, a training job spans that many nodes (`_multi_node`). With `eval_arrays`, the
    evaluations of one training's checkpoints still to do, per kind, are one job array (`_array_job`).
    """
    spec, run_dir = spec.absolute(), run_dir.absolute()
    done = {step.name for step in steps if step.done}
    width = max(2, len(str(len(steps))))
    arrays = _array_groups(steps) if eval_arrays else {}
    job_of: dict[str, str] = {}
    result: list[Job] = []
    for index, step in enumerate(steps, 1):
        if step.done or step.name in job_of:
            continue
        after = tuple(dict.fromkeys(job_of.get(name, name) for name in step.after if name not in done))
        unplanned = set(after) - {job.stage for job in result}
        if unplanned:
            raise ValueError(f"the plan lists {step.name!r} before {sorted(unplanned)}, which it depends on")
        if step.name in arrays:
            members = arrays[step.name]
            job = _array_job(members, f"{index:0{width}d}", spec, run_dir, _options_for(step.name, options), after)
            job_of |= dict.fromkeys(members, job.stage)
            result.append(job)
            continue
        script = run_dir / "slurm" / f"{index:0{width}d}-{stage_slug(step.name)}.sbatch"
        nodes = hardware if hardware is not None and hardware.nodes > 1 and step.kind == "train" else None
        command = [*_launch(spec, run_dir), step.name]
        body = _multi_node(command, nodes) if nodes is not None else [f"exec {shlex.join(command)}"]
        directives: dict[str, str] = {}
        if nodes is not None:
            directives |= {"nodes": str(nodes.nodes), "ntasks-per-node": "1", "gpus-per-node": str(nodes.devices)}
        if step.kind == "train":
            directives |= {"requeue": "", "signal": f"B:USR1@{PREEMPT_WARNING_S}"}
            body = _requeued_on_warning(body)
        log = f"{run_dir / 'logs'}/slurm-{stage_slug(step.name)}-%j.out"
        text = _script(stage_slug(step.name), log, directives | _options_for(step.name, options), body)
        result.append(Job(step.name, script, text, after))
    return result


def _launch(spec: Path, run_dir: Path) -> list[str]:
    """What every study job runs, less the stage's name: `forgetkit launch SPEC --run-dir RUN --stage`."""
    return [sys.executable, "-m", "forgetkit", "launch", str(spec), "--run-dir", str(run_dir), "--stage"]


ARRAY_KINDS = ("evaluate", "vlmeval", "probe")
"""Stage kinds whose checkpoint stages `--eval-arrays` puts in one job array per training."""


def _array_groups(steps: list[Stage]) -> dict[str, tuple[str, ...]]:
    """First stage -> all stages of each (training, kind) with two or more evaluations not done: the members of
    one array. Only stages that wait for nothing but their training join, so the array waits for it alone."""
    groups: dict[tuple[str, str], list[str]] = {}
    for step in steps:
        if not step.done and step.kind in ARRAY_KINDS and len(step.after) == 1:
            groups.setdefault((step.after[0], step.kind), []).append(step.name)
    return {names[0]: tuple(names) for names in groups.values() if len(names) > 1}


def _array_job(
    members: tuple[str, ...], number: str, spec: Path, run_dir: Path, options: Mapping[str, str], after: tuple[str, ...]
) -> Job:
    """One array task per stage: task I runs `forgetkit launch ... --stage` of members[I]."""
    kind, subject = stage_kind(members[0]), stage_subject(members[0])
    name = f"{kind} {subject.partition('/')[0]} checkpoints"
    command = _launch(spec, run_dir)
    body = [
        f"stages=({' '.join(shlex.quote(member) for member in members)})",
        f'exec {shlex.join(command)} "${{stages[$SLURM_ARRAY_TASK_ID]}}"',
    ]
    log = f"{run_dir / 'logs'}/slurm-{stage_slug(name)}-%A_%a.out"
    text = _script(stage_slug(name), log, {"array": f"0-{len(members) - 1}"} | options, body)
    return Job(name, run_dir / "slurm" / f"{number}-{stage_slug(name)}.sbatch", text, after, members)


def build_jobs(argv: list[str], shards: int, out: Path, name: str, options: Mapping[str, str]) -> list[Job]:
    """A sharded CLIP build as two jobs: an array of `shards` tasks, task I running `forgetkit <argv> --shard
    I/shards` (each encodes its share of the embedding cache), and, after all of them succeed, the same build
    without `--shard`, which finds every shard cached and writes the dataset. Scripts go to `out/slurm/`."""
    folder = out.absolute() / "slurm"
    command = shlex.join([sys.executable, "-m", "forgetkit", *argv])
    share = _script(
        f"{name}-shards",
        f"{folder / 'logs'}/{name}-%A_%a.out",
        {"array": f"0-{shards - 1}"} | options,
        [f'exec {command} --shard "$SLURM_ARRAY_TASK_ID/{shards}"'],
    )
    final = _script(name, f"{folder / 'logs'}/{name}-%j.out", dict(options), [f"exec {command}"])
    return [
        Job(f"{name} shards", folder / f"{name}-shards.sbatch", share, ()),
        Job(name, folder / f"{name}.sbatch", final, (f"{name} shards",)),
    ]


def _options_for(stage: str, options: Mapping[str, str]) -> dict[str, str]:
    """Options for every job, overridden by those given for this stage's kind."""
    prefix = stage_kind(stage) + ":"
    shared = {key: value for key, value in options.items() if ":" not in key}
    return shared | {key.removeprefix(prefix): value for key, value in options.items() if key.startswith(prefix)}


def _script(name: str, log: str, directives: Mapping[str, str], body: list[str]) -> str:
    """A batch script named `forgetkit-NAME`, logging to `log` (`%j`-style patterns kept), running `body` from the
    directory forgetkit was launched in.

    sbatch reads `#SBATCH` arguments with shell-like quoting and treats `%` in file names as a pattern."""
    folder, _, pattern = log.rpartition("/")
    options = {"job-name": f"forgetkit-{name}", "output": folder.replace("%", "%%") + "/" + pattern} | directives
    flags = (f"--{key}={value}" if value else f"--{key}" for key, value in options.items())
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(flag)}" for flag in flags)]
    return "\n".join([*lines, f"cd {shlex.quote(os.getcwd())}", *body]) + "\n"


def _requeued_on_warning(body: list[str]) -> list[str]:
    """`body` with its last line (`exec ...`) run in the background, so the batch shell can take Slurm's warning
    signal (USR1) and requeue the job: Slurm then stops the training and runs the job again, same id, later."""
    *setup, last = body
    return [
        *setup,
        "trap 'scontrol requeue \"$SLURM_JOB_ID\"' USR1",
        last.removeprefix("exec ") + " &",
        "child=$!",
        'wait "$child"; status=$?',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done',
        'exit "$status"',
    ]


def restart_count() -> int:
    """How often Slurm requeued the job this process runs in (0 outside Slurm or before any requeue)."""
    value = os.environ.get(RESTARTS, "")
    return int(value) if value.isdigit() else 0


def _multi_node(command: list[str], hardware: Hardware) -> list[str]:
    """One task per node, each running the stage with LF's launcher told the rendezvous (torchrun across nodes):
    `NNODES` and `MASTER_ADDR` (the allocation's first host) from Slurm, `NODE_RANK` = the task's node, and
    `NPROC_PER_NODE` = the spec's GPUs per node. Node rank 0 records the stage; the others only train."""
    node = "NODE_RANK=$SLURM_NODEID exec " + shlex.join(command)
    return [
        'export NNODES="$SLURM_JOB_NUM_NODES"',
        f"export NPROC_PER_NODE={hardware.devices}",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'export MASTER_PORT="${MASTER_PORT:-29500}"',
        "export FORCE_TORCHRUN=1",
        f"exec srun --kill-on-bad-exit=1 bash -c {shlex.quote(node)}",
    ]


def sbatch_command(job: Job, ids: Mapping[str, str]) -> list[str]:
    """`sbatch --parsable [--dependency=afterok:ID:ID] SCRIPT`; a job whose dependency fails is cancelled
    (`--kill-on-invalid-dep`) rather than left pending forever."""
    command = ["sbatch", "--parsable"]
    if job.after:
        command += ["--dependency=afterok:" + ":".join(ids[stage] for stage in job.after), "--kill-on-invalid-dep=yes"]
    return [*command, str(job.script)]


def dry_run_lines(jobs: list[Job]) -> list[str]:
    """The submissions as shell lines, each job id in a variable named after its script (`J07=$(sbatch ...)`)."""
    names = {job.stage: "J" + job.script.name.split("-", 1)[0] for job in jobs}
    lines = []
    for job in jobs:
        *options, script = sbatch_command(job, {stage: "$" + name for stage, name in names.items()})
        lines.append(f"{names[job.stage]}=$({' '.join(options)} {shlex.quote(script)})")
    return lines


def jobs_path(run_dir: Path) -> Path:
    """stage -> {job_id, script} of the latest submission of each stage."""
    return run_dir / "slurm" / "jobs.json"


def submit(jobs: list[Job], run_dir: Path, record_path: Path | None = None) -> dict[str, str]:
    """Write each job's script and submit it after the jobs it waits for; return stage -> Slurm job id.

    The record (`jobs_path(run_dir)` unless given) is rewritten after every submission, so a failure midway still
    records what Slurm has queued.
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ForgetkitError(
            "--backend slurm needs sbatch, i.e. a Slurm login node, and none is on PATH; "
            "add --dry-run to see the scripts and sbatch commands without submitting"
        )
    record_path = record_path or jobs_path(run_dir.absolute())
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    _refuse_while_queued(record, run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    for job in jobs:
        atomic.write_text(job.script, job.text)
        result = subprocess.run([sbatch, *sbatch_command(job, ids)[1:]], capture_output=True, text=True)
        if result.returncode != 0:
            raise ForgetkitError(
                f"sbatch {job.script} failed: {_last_line(result)} (jobs submitted so far: {record_path})"
            )
        job_id = result.stdout.strip().split(";", 1)[0]
        if not re.fullmatch(r"\d+", job_id):
            raise ForgetkitError(f"sbatch {job.script} printed {result.stdout.strip()!r}, not a job id")
        ids[job.stage] = job_id
        for task, stage in enumerate(job.stages):
            entry = {"job_id": job_id, "array_task": task} if job.members else {"job_id": job_id}
            record[stage] = entry | {"script": str(job.script)}
        atomic.write_json(record_path, record)
    return ids


def _refuse_while_queued(record: Mapping[str, dict], run_dir: Path) -> None:
    """Submitting again while an earlier submission's jobs are queued would run their stages twice, two trainings
    writing into one checkpoint folder; squeue tells which of the recorded jobs Slurm still has."""
    squeue = shutil.which("squeue")
    if not record or squeue is None:
        return
    result = subprocess.run(
        [squeue, "--noheader", "--format=%F", f"--user={getpass.getuser()}"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ForgetkitError(f"squeue failed ({_last_line(result)}); cannot tell whether {run_dir}'s jobs still run")
    queued = set(result.stdout.split())
    waiting = [f"{entry['job_id']} ({stage})" for stage, entry in record.items() if entry["job_id"] in queued]
    if waiting:
        raise ForgetkitError(
            f"{len(waiting)} job(s) submitted earlier for {run_dir} are still queued or running, e.g. {waiting[0]}; "
            "wait for them (or scancel them) and submit again"
        )


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    """A Slurm client's reason for failing: the last line of its stderr."""
    return (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
