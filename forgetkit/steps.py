"""The stages a study plans, each wrapping one real tool: train, LoRA export (merge), LF prediction,
letter-logit scoring, VLMEvalKit. A `Step` knows its command, its config hash, whether the run
directory has it done, and which steps must finish first (what a scheduler's dependencies need).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from forgetkit import atomic
from forgetkit.built_data import VLMEVAL, data_identity
from forgetkit.errors import ForgetkitError
from forgetkit.models import TEMPLATE_KINDS, ModelSpec, model_identity
from forgetkit.recipes import Recipe
from forgetkit.render import LF_DEFAULTS, DataSpec, render_export, render_predict, render_train
from forgetkit.rundir import ZERO_SHOT, RunDir, config_hash
from forgetkit.stage_names import stage_kind, stage_name
from forgetkit.stages import llamafactory
from forgetkit.stages.predict import predict
from forgetkit.stages.train import train

if TYPE_CHECKING:
    from forgetkit.spec import Study


@dataclass(frozen=True)
class Step:
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


def train_step(
    study: Study,
    run: RunDir,
    model: ModelSpec,
    label: str,
    recipe: Recipe,
    data: DataSpec,
    source: str,
    after: tuple[str, ...] = (),
) -> Step:
    """`llamafactory-cli train` of `model` (whose identity is `source`) into `checkpoints/<label>`; a rerun resumes
    from LF's last checkpoint."""
    output_dir = run.checkpoints(label)
    logging_steps = min(10, max(1, recipe.steps // 10)) if recipe.steps is not None else 10
    text = render_train(
        model,
        recipe,
        data,
        output_dir,
        study.hardware,
        seed=study.seed,
        logging_steps=logging_steps,
        trust_remote_code=study.trust_remote_code,
    )
    stage = stage_name("train", label)
    digest = identity(text, source, *(data_identity(data.dataset_dir, name) for name in data.train))
    return Step(
        stage,
        llamafactory.command_line("train", run.config(stage)),
        digest,
        run.is_done(stage, digest),
        partial(train, run, stage, text, output_dir),
        after=after,
    )


def export_step(
    run: RunDir,
    base: str,
    adapter: Path,
    template: str,
    merged: Path,
    after: tuple[str, ...],
    sources: tuple[str, ...],
    trust_remote_code: bool = False,
) -> Step:
    """`llamafactory-cli export`: merge `adapter` into `base` as `merged` (IncLoRA's hand-over between tasks);
    `sources` are the identities of the base and of the training that made the adapter."""
    from forgetkit.stages.export import export

    stage = stage_name("export", merged.relative_to(run.root / "checkpoints").as_posix())
    text = render_export(base, adapter, template, merged.with_name(merged.name + ".partial"), trust_remote_code)
    digest = identity(text, *sources)
    return Step(
        stage,
        llamafactory.command_line("export", run.config(stage)),
        digest,
        run.is_done(stage, digest) and merged.is_dir(),
        partial(export, run, stage, text, Path(base), adapter, merged),
        after=after,
    )


def eval_steps(
    study: Study,
    run: RunDir,
    base: ModelSpec,
    model_path: str,
    checkpoint: str,
    datasets: tuple[str, ...],
    source: str,
    adapter: Path | None = None,
    after: tuple[str, ...] = (),
) -> list[Step]:
    """One LF prediction (or logits scoring) per dataset, one VLMEvalKit run for the `vlmeval:` benchmarks, and
    the drift probe against `base` (the study's model, whose chat template every stage uses); a LoRA
    checkpoint is evaluated as `adapter` on `model_path`. `source` is the identity of what made the checkpoint
    (its training stage; the base model for zero-shot), part of every eval's identity with its dataset's."""
    template = base.template

    def reads(*names: str) -> tuple[str, ...]:
        return (source, *(data_identity(study.data.dataset_dir, name, study.eval.lmudata) for name in names))

    benchmarks = tuple(name for name in datasets if name.startswith(VLMEVAL))
    steps = []
    if benchmarks:
        steps.append(_vlmeval_step(study, run, model_path, base, checkpoint, benchmarks, adapter, reads(*benchmarks)))
    for dataset in (name for name in datasets if not name.startswith(VLMEVAL)):
        stage = stage_name("predict", checkpoint, dataset)
        scratch = run.scratch(stage)
        text = render_predict(
            model_path,
            template,
            dataset,
            study.data,
            scratch,
            study.hardware,
            batch_size=study.eval.batch_size,
            max_new_tokens=study.eval.max_new_tokens,
            adapter=adapter,
            decoding=study.eval.decoding,
            seed=study.seed,
            trust_remote_code=study.trust_remote_code,
        )
        target = run.predictions(checkpoint, dataset)
        upstream = reads(dataset)
        if study.eval.scoring == "logits":
            steps.append(_logits_step(study, run, model_path, checkpoint, dataset, text, target, upstream))
            continue
        if generation_backend(study) == "vllm":
            steps.append(_chat_step(study, run, model_path, template, stage, dataset, adapter, target, upstream))
            continue
        digest = identity(text, *upstream)
        steps.append(
            Step(
                stage,
                llamafactory.command_line("train", run.config(stage)),
                digest,
                run.is_done(stage, digest) and target.is_file(),
                partial(predict, run, stage, text, scratch, target),
            )
        )
    if study.eval.probe and checkpoint != ZERO_SHOT:
        upstream = (base_identity(base), *reads(study.eval.probe))
        steps.append(_probe_step(study, run, base, model_path, checkpoint, adapter, upstream))
    return [replace(step, after=after) for step in steps]


def _probe_step(
    study: Study,
    run: RunDir,
    base: ModelSpec,
    model_path: str,
    checkpoint: str,
    adapter: Path | None,
    upstream: tuple[str, ...],
) -> Step:
    """Drift of the checkpoint (a full model, or an adapter on `model_path`) from the study's base model."""
    from forgetkit.stages.probe import probe

    settings = {
        "base": base.path,
        "checkpoint": str(adapter or model_path),
        "checkpoint_base": model_path if adapter else None,
        "dataset_dir": study.data.dataset_dir,
        "dataset": study.eval.probe,
        "template": base.template,
        "image_max_pixels": study.data.image_max_pixels,
        "cutoff_len": study.data.cutoff_len,
        "bf16": study.hardware.bf16,
        "device": study.hardware.device,
        "batch_size": study.eval.batch_size,
        "trust_remote_code": study.trust_remote_code,
    }
    stage = stage_name("probe", checkpoint)
    target = run.probe(checkpoint)
    digest = identity(json.dumps(settings, sort_keys=True), *upstream)
    action = partial(
        probe,
        settings["base"],
        settings["checkpoint"],
        settings["dataset_dir"],
        settings["dataset"],
        base.template,
        image_max_pixels=settings["image_max_pixels"],
        cutoff_len=settings["cutoff_len"],
        bf16=settings["bf16"],
        device=settings["device"],
        batch_size=settings["batch_size"],
        checkpoint_base=settings["checkpoint_base"],
        output=target,
        trust_remote_code=settings["trust_remote_code"],
    )
    command = f"forgetkit probe {base.path} {settings['checkpoint']} --dataset {study.eval.probe} (in process)"
    return Step(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)


def generation_backend(study: Study) -> str:
    """The engine that generates eval answers: the spec's, or for `auto` vLLM where it can run."""
    if study.eval.backend != "auto":
        return study.eval.backend
    if study.eval.decoding == LF_DEFAULTS:
        return "huggingface"
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and study.hardware.device == "cuda" else "huggingface"


def _chat_step(
    study: Study,
    run: RunDir,
    model_path: str,
    template: str,
    stage: str,
    dataset: str,
    adapter: Path | None,
    target: Path,
    upstream: tuple[str, ...],
) -> Step:
    """Greedy generation through LF's vLLM engine, with the same template and image limits as LF prediction."""
    from forgetkit.stages.chat_predict import chat_predict

    settings = {
        "backend": "vllm",
        "model": model_path,
        "adapter": str(adapter) if adapter else None,
        "template": template,
        "dataset_dir": study.data.dataset_dir,
        "dataset": dataset,
        "image_max_pixels": study.data.image_max_pixels,
        "cutoff_len": study.data.cutoff_len,
        "max_new_tokens": study.eval.max_new_tokens,
        "trust_remote_code": study.trust_remote_code,
    }
    digest = identity(json.dumps(settings, sort_keys=True), *upstream)
    command = f"python -m forgetkit.stages.chat_predict {run.config(stage).with_suffix('.json')}"
    action = partial(chat_predict, run, stage, settings, target)
    return Step(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)


def _logits_step(
    study: Study,
    run: RunDir,
    model_path: str,
    checkpoint: str,
    dataset: str,
    predict_config: str,
    target: Path,
    upstream: tuple[str, ...],
) -> Step:
    """Letter-logit scoring on exactly the inputs LF's prediction would see: built from its config, which keys it."""
    from forgetkit.stages.logits import score_predict_config

    stage = stage_name("logits", checkpoint, dataset)
    digest = identity("logits\n" + predict_config, *upstream)
    action = partial(score_predict_config, predict_config, study.hardware.device, study.eval.batch_size, target)
    command = f"forgetkit logits scoring of {model_path} on {dataset} (in process)"
    return Step(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)


def _vlmeval_step(
    study: Study,
    run: RunDir,
    model_path: str,
    base: ModelSpec,
    checkpoint: str,
    datasets: tuple[str, ...],
    adapter: Path | None,
    upstream: tuple[str, ...],
) -> Step:
    from forgetkit.stages.vlmeval_eval import RUNNER

    names = tuple(name.removeprefix(VLMEVAL) for name in datasets)

    if base.template not in TEMPLATE_KINDS:
        raise ForgetkitError(
            f"vlmeval: benchmarks need a qwen2_vl or llava model; this study's template is {base.template!r}"
        )
    pixels = (study.eval.vlmeval_min_pixels, study.eval.vlmeval_max_pixels)
    if None in pixels and base.vlmeval_entry is None:
        raise ForgetkitError(
            f"vlmeval: {base.name} has no VLMEvalKit config entry to take its image limits from; "
            "set eval.vlmeval_min_pixels and eval.vlmeval_max_pixels in the spec"
        )
    stage = stage_name("vlmeval", checkpoint)
    settings = {
        "model": model_path,
        "adapter": str(adapter) if adapter else None,
        "kind": TEMPLATE_KINDS[base.template],
        "datasets": names,
        "vlmeval_entry": base.vlmeval_entry if None in pixels else None,
        "image_min_pixels": pixels[0],
        "image_max_pixels": pixels[1],
        "max_new_tokens": study.eval.max_new_tokens,
        "device": study.hardware.device,
    }
    digest = identity(json.dumps(settings, sort_keys=True), *upstream)
    targets = [run.predictions(checkpoint, f"{VLMEVAL}{name}") for name in names]
    return Step(
        stage,
        f"python -m {RUNNER} --config {run.scratch(stage)}/vlmeval_config.json --judge exact_matching",
        digest,
        run.is_done(stage, digest) and all(target.is_file() for target in targets),
        partial(_vlmeval, study, run, stage, settings, targets),
    )


def _vlmeval(study: Study, run: RunDir, stage: str, settings: dict, targets: list[Path]) -> None:
    """VLMEvalKit's own runner and judge; its per-item verdicts are kept as this checkpoint's predictions."""
    from forgetkit.stages.vlmeval_eval import predictions_path, run_vlmeval

    scratch = run.scratch(stage)
    lmudata = Path(study.data.dataset_dir) / study.eval.lmudata
    run_vlmeval(
        Path(settings["model"]),
        settings["datasets"],
        lmudata,
        scratch,
        run.log(stage),
        kind=settings["kind"],
        adapter=Path(settings["adapter"]) if settings["adapter"] else None,
        device=settings["device"],
        vlmeval_entry=settings["vlmeval_entry"],
        image_min_pixels=settings["image_min_pixels"],
        image_max_pixels=settings["image_max_pixels"],
        max_new_tokens=settings["max_new_tokens"],
    )
    for name, target in zip(settings["datasets"], targets):
        items = [json.loads(line) for line in predictions_path(scratch, name).read_text(encoding="utf-8").splitlines()]
        rows = [{"predict": i["prediction"], "label": i["answer"], "correct": i["correct"]} for i in items]
        atomic.write_jsonl(target, rows)
    atomic.write_text(run.config(stage).with_suffix(".json"), (scratch / "vlmeval_config.json").read_text("utf-8"))
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()


def run_stage(run: RunDir, step: Step) -> None:
    """Run one step, recording running / done / failed (with the one-line reason) in the run's state."""
    run.mark(step.name, "running", step.digest, command=step.command)
    try:
        step.action()
    except ForgetkitError as err:
        run.mark(step.name, "failed", step.digest, reason=str(err), command=step.command)
        raise
    run.mark(step.name, "done", step.digest, command=step.command)


def format_plan(steps: list[Step]) -> str:
    """The `launch --dry-run` listing: one line per stage, done or to do, with its command."""
    todo = sum(not step.done for step in steps)
    lines = [f"{len(steps)} stages, {len(steps) - todo} done, {todo} to run:"]
    lines += [f"  [{'done' if step.done else 'todo'}] {step.name}\n         {step.command}" for step in steps]
    return "\n".join(lines)
