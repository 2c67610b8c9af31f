"""Experiment tracking the way LLaMA-Factory users already log: a study's `report_to` (LF's key: `none`,
`tensorboard`, `wandb` or a list of both) makes every training report its loss there as LF does, and each
checkpoint's scores go into the same tracked run at the checkpoint's training step, so the forgetting curves sit
next to the loss.

Everything stays offline: TensorBoard event files and W&B offline runs under `<run>/tracking/` (`wandb sync
<run>/tracking/wandb` uploads them; W&B syncs a run's offline parts in order into one run). A tracked run is
named by the run directory and the training's digest, so a retrained recipe starts a new one; what was logged
is recorded in `tracking/logged.json`, so a rescore logs only what changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.knobs import shown
from forgetkit.report.terminal import quadrant_means
from forgetkit.rundir import ZERO_SHOT, RunDir, checkpoint_dirs, waiting_lock
from forgetkit.stage_names import stage_kind, stage_subject


class Tracker(str, Enum):
    tensorboard = "tensorboard"
    wandb = "wandb"


NONE = "none"
PACKAGE = {Tracker.tensorboard: "tensorboard", Tracker.wandb: "wandb"}
"""The package each tracker needs, and the name of forgetkit's extra that installs it."""
STEP = "train/global_step"
"""The x-axis HF's W&B callback logs the loss against; scores are logged against it too."""
SCORES = "forgetkit"
"""The prefix of every logged score: `forgetkit/<dataset>`, `forgetkit/quadrant/<Q>`, `forgetkit/change/<Q>`."""


def trackers(value: Any, where: str) -> tuple[Tracker, ...]:
    """A spec's `report_to` as LF takes it: `none`, one tracker, or a list of them."""
    names = value if isinstance(value, list) else [value]
    if names == [NONE]:
        return ()
    known = {tracker.value: tracker for tracker in Tracker}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ForgetkitError(
            f"{where}: {shown(unknown[0] if unknown else value)} is no tracker; give none, "
            f"{', '.join(known)} or a list of them"
        )
    return tuple(dict.fromkeys(known[name] for name in names))


def require(report_to: tuple[Tracker, ...]) -> None:
    """Stop before anything runs when a tracker's package is missing (HF would fail inside the training)."""
    for tracker in report_to:
        package = PACKAGE[tracker]
        if importlib.util.find_spec(package) is None:
            raise ForgetkitError(
                f"report_to: {tracker.value} needs the {package} package; "
                f"install it with: pip install -c constraints.txt -e '.[{package}]'"
            )


def lf_value(report_to: tuple[Tracker, ...]) -> str | list[str]:
    """`report_to` as LF's YAML takes it."""
    return [tracker.value for tracker in report_to] if report_to else NONE


def tracking_dir(run: RunDir) -> Path:
    return run.root / "tracking"


def run_id(run: RunDir, training_digest: str) -> str:
    """The tracked run of one training: W&B's run id, and the TensorBoard folder under the training's label."""
    return hashlib.sha256(f"{run.root}\n{training_digest}".encode()).hexdigest()[:16]


def tensorboard_dir(run: RunDir, label: str, training_digest: str) -> Path:
    return tracking_dir(run) / "tensorboard" / label / run_id(run, training_digest)


@dataclass(frozen=True)
class Tracking:
    """Where one training reports: its tracker, the W&B project (the study's name), its label and digest."""

    report_to: tuple[Tracker, ...]
    project: str
    label: str
    digest: str

    def training_env(self, run: RunDir) -> dict[str, str]:
        """The environment LF's trainer reads its trackers' settings from (HF's TensorBoard and W&B callbacks);
        a W&B mode the user set (`WANDB_MODE=online`) is kept, offline otherwise."""
        env = {}
        if Tracker.tensorboard in self.report_to:
            folder = tensorboard_dir(run, self.label, self.digest)
            folder.mkdir(parents=True, exist_ok=True)
            env["TENSORBOARD_LOGGING_DIR"] = str(folder)
        if Tracker.wandb in self.report_to:
            tracking_dir(run).mkdir(parents=True, exist_ok=True)
            env |= {
                "WANDB_MODE": _wandb_mode(),
                "WANDB_DIR": str(tracking_dir(run)),
                "WANDB_PROJECT": self.project,
                "WANDB_RUN_ID": run_id(run, self.digest),
                "WANDB_RESUME": "allow",
            }
        return env


Points = dict[int, dict[str, float]]
"""{training step: {metric: value}} of one tracked run."""


def score_points(
    table: Mapping[str, Mapping[str, dict]], quadrants: Mapping[str, list[str]], trainings: Mapping[str, Path]
) -> dict[str, Points]:
    """{training label: its points} from a scores table: `LABEL/checkpoint-N` at step N, a continual task's
    final model (scored under its label) at its last checkpoint's step, and the zero-shot scores at step 0 of
    every recipe's training. Each point holds every dataset's accuracy, the means of the quadrants fully
    scored, and each quadrant mean's change from zero-shot."""
    means = quadrant_means(dict(table), dict(quadrants))
    base = means.get(ZERO_SHOT, {})

    def metrics(checkpoint: str) -> dict[str, float]:
        values = {f"{SCORES}/{dataset}": row["accuracy"] for dataset, row in table[checkpoint].items()}
        for quadrant, mean in means.get(checkpoint, {}).items():
            values[f"{SCORES}/quadrant/{quadrant}"] = mean
            if quadrant in base:
                values[f"{SCORES}/change/{quadrant}"] = mean - base[quadrant]
        return values

    points: dict[str, Points] = {}
    zero_shot = metrics(ZERO_SHOT) if ZERO_SHOT in table else None
    for checkpoint in table:
        label, _, name = checkpoint.rpartition("/checkpoint-")
        if label in trainings and name.isdigit():
            points.setdefault(label, {})[int(name)] = metrics(checkpoint)
            if zero_shot is not None:
                points[label][0] = zero_shot
        elif checkpoint in trainings and (saved := checkpoint_dirs(trainings[checkpoint])):
            points.setdefault(checkpoint, {})[int(saved[-1].name.removeprefix("checkpoint-"))] = metrics(checkpoint)
    return points


def log_scores(
    run: RunDir, report_to: tuple[Tracker, ...], project: str, table: Mapping[str, Mapping[str, dict]]
) -> int:
    """Log the scores in `table` not logged yet (or changed since) into each training's tracked run (W&B's
    `project`), with the quadrant means of the run's quadrants.json; return
    how many values were logged. From the first step with a new value on, the run's whole recorded series is
    logged again in step order: TensorBoard drops a tag's points from a step that is logged again onwards, so
    a rescored checkpoint replaces its old points instead of leaving them beside the new. Scheduler jobs
    logging side by side take turns on a lock."""
    if not report_to:
        return 0
    trainings = {
        stage_subject(name): entry["config_hash"]
        for name, entry in run.read_state().items()
        if stage_kind(name) == "train" and entry.get("config_hash")
    }
    folders = {label: run.checkpoints(label) for label in trainings}
    points = score_points(table, run.quadrants(), folders)
    count = 0
    with waiting_lock(tracking_dir(run) / ".lock"):
        logged_path = tracking_dir(run) / "logged.json"
        logged = read_json(logged_path, dict, "delete it to log every score again") if logged_path.is_file() else {}
        for label, by_step in points.items():
            tracked = run_id(run, trainings[label])
            series = {int(step): dict(values) for step, values in logged.get(tracked, {}).items()}
            changed = [
                step
                for step, values in by_step.items()
                if any(series.get(step, {}).get(k) != v for k, v in values.items())
            ]
            if not changed:
                continue
            for step, values in by_step.items():
                series.setdefault(step, {}).update(values)
            again = {step: values for step, values in sorted(series.items()) if step >= min(changed)}
            for tracker in report_to:
                _WRITERS[tracker](run, project, label, trainings[label], again)
            logged[tracked] = {str(step): values for step, values in sorted(series.items())}
            atomic.write_json(logged_path, logged)
            count += sum(map(len, again.values()))
    return count


def _write_tensorboard(run: RunDir, project: str, label: str, digest: str, points: Points) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tensorboard_dir(run, label, digest)))
    for step, values in sorted(points.items()):
        for name, value in values.items():
            writer.add_scalar(name, value, step)
    writer.close()


def _write_wandb(run: RunDir, project: str, label: str, digest: str, points: Points) -> None:
    import wandb

    settings = wandb.Settings(silent=True)
    folder = str(tracking_dir(run))
    with wandb.init(
        dir=folder,
        project=project,
        id=run_id(run, digest),
        name=label,
        resume="allow",
        mode=_wandb_mode(),
        settings=settings,
    ) as tracked:
        tracked.define_metric(STEP)
        tracked.define_metric(f"{SCORES}/*", step_metric=STEP)
        for step, values in sorted(points.items()):
            tracked.log({STEP: step, **values})


def _wandb_mode() -> str:
    """Offline, unless the user chose a mode (`WANDB_MODE=online`)."""
    return os.environ.get("WANDB_MODE", "offline")


_WRITERS = {Tracker.tensorboard: _write_tensorboard, Tracker.wandb: _write_wandb}
