"""A study spec (`runs/*.yaml`) and the stages it runs: zero-shot eval, then per recipe train and
eval of every saved checkpoint, then scores.

Relative paths in a spec are resolved against the spec file's folder. Each stage records its
config hash in the run directory's state, so a rerun skips what is done and redoes what is not.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.models import ModelSpec, resolve_model
from forgetkit.presets import get_preset
from forgetkit.recipes import CPU, Hardware, Method, Recipe
from forgetkit.render import DataSpec, render_predict, render_train
from forgetkit.rundir import ZERO_SHOT, RunDir, checkpoint_dirs, config_hash, record_versions
from forgetkit.scoring import score_run
from forgetkit.stages import llamafactory
from forgetkit.stages.predict import predict
from forgetkit.stages.train import train
from forgetkit.train_config import resolve_recipe

SPEC_KEYS = {"name", "model", "template", "seed", "data", "eval", "hardware", "recipes"}
DEFAULT_RUNS_DIR = Path("runs") / "out"
HARDWARE_PRESETS = {"cpu": CPU, "gpu": Hardware()}


VLMEVAL = "vlmeval:"
VLMEVAL_KINDS = {"qwen2_vl": "qwen2_5_vl", "llava": "llava"}
"""LF chat template -> the model kind forgetkit's VLMEvalKit model class loads."""
QUADRANTS = ("ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I")
"""The 2x2 matrix of PROTOCOL.md §2: in/out-of-distribution text x image."""


@dataclass(frozen=True)
class EvalSpec:
    """Eval datasets, grouped by quadrant where the spec says (`quadrants: {ID^T-ID^I: [...], ...}`)."""

    datasets: tuple[str, ...] = ()
    quadrants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    batch_size: int = 8
    max_new_tokens: int = 16
    scoring: str = "generate"
    """`generate` (LF prediction, the paper's way) or `logits` (one forward pass over the option letters)."""
    lmudata: str = "lmudata"
    """VLMEvalKit's data folder (`$LMUData`), relative to data.dataset_dir: `<NAME>.tsv` per `vlmeval:NAME`."""

    def __post_init__(self) -> None:
        if self.scoring not in ("generate", "logits"):
            raise ForgetkitError(f"scoring {self.scoring!r} unknown; use generate or logits")
        unknown = sorted(set(self.quadrants) - set(QUADRANTS))
        if unknown:
            raise ForgetkitError(f"unknown quadrant(s) {unknown} in quadrants; use {', '.join(QUADRANTS)}")
        if not self.all_datasets:
            raise ForgetkitError("no datasets: give datasets, or quadrants mapping each quadrant to its datasets")

    @property
    def lf_datasets(self) -> tuple[str, ...]:
        """Sets LLaMA-Factory predicts and the letter matcher scores."""
        return tuple(name for name in self.all_datasets if not name.startswith(VLMEVAL))

    @property
    def vlmeval_datasets(self) -> tuple[str, ...]:
        """Benchmarks VLMEvalKit runs and scores (MMMU, VMCBench), named `vlmeval:NAME` in the spec."""
        return tuple(name.removeprefix(VLMEVAL) for name in self.all_datasets if name.startswith(VLMEVAL))

    @property
    def all_datasets(self) -> tuple[str, ...]:
        """Every dataset to evaluate, in spec order, each once."""
        grouped = [name for names in self.quadrants.values() for name in names]
        return tuple(dict.fromkeys([*self.datasets, *grouped]))


@dataclass(frozen=True)
class Study:
    name: str
    model: str
    template: str | None
    seed: int
    data: DataSpec
    eval: EvalSpec
    hardware: Hardware
    recipes: dict[str, Recipe]
    spec_path: Path


def load_study(path: Path) -> Study:
    if not path.is_file():
        raise ForgetkitError(f"study spec {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ForgetkitError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ForgetkitError(f"{path}: a study spec is a YAML mapping with keys {sorted(SPEC_KEYS)}")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ForgetkitError(f"{path}: unknown key(s) {unknown}; known: {sorted(SPEC_KEYS)}")
    for required in ("name", "model", "data", "eval", "recipes"):
        if required not in raw:
            raise ForgetkitError(f"{path}: missing required key {required!r}")
    name = str(raw["name"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ForgetkitError(f"{path}: name {name!r} must be letters, digits, '.', '_' or '-'")
    data = _dataclass_from(DataSpec, raw["data"], f"{path}: data")
    data = DataSpec(
        dataset_dir=str((path.parent / data.dataset_dir).resolve()),
        train=tuple([data.train] if isinstance(data.train, str) else data.train),
        mix_probs=tuple(str(p) for p in data.mix_probs),
        cutoff_len=data.cutoff_len,
        image_max_pixels=data.image_max_pixels,
    )
    eval_raw = dict(raw["eval"]) if isinstance(raw["eval"], dict) else raw["eval"]
    if isinstance(eval_raw, dict):
        eval_raw["datasets"] = _names(eval_raw.get("datasets", ()), f"{path}: eval.datasets")
        quadrants = eval_raw.get("quadrants", {})
        if not isinstance(quadrants, dict):
            raise ForgetkitError(f"{path}: eval.quadrants maps quadrant names ({', '.join(QUADRANTS)}) to datasets")
        eval_raw["quadrants"] = {str(q): _names(v, f"{path}: eval.quadrants.{q}") for q, v in quadrants.items()}
    eval_spec = _dataclass_from(EvalSpec, eval_raw, f"{path}: eval")
    if not isinstance(raw["recipes"], dict) or not raw["recipes"]:
        raise ForgetkitError(f"{path}: recipes must map recipe names to their settings")
    recipes = {}
    for recipe_name, values in raw["recipes"].items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(recipe_name)):
            raise ForgetkitError(f"{path}: recipe name {recipe_name!r} must be letters, digits, '.', '_' or '-'")
        recipes[str(recipe_name)] = _recipe(values or {}, f"{path}: recipes.{recipe_name}", data.train)
    return Study(
        name=name,
        model=str(raw["model"]),
        template=raw.get("template"),
        seed=int(raw.get("seed", 42)),
        data=data,
        eval=eval_spec,
        hardware=_hardware(raw.get("hardware", "gpu"), path),
        recipes=recipes,
        spec_path=path,
    )


def _dataclass_from(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ForgetkitError(f"{where} must be a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ForgetkitError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except (TypeError, ForgetkitError) as err:
        raise ForgetkitError(f"{where}: {err}") from None


def _recipe(values: Any, where: str, datasets: tuple[str, ...]) -> Recipe:
    """A recipe mapping; `preset: NAME` starts from that preset (see --list-presets), other keys override."""
    if not isinstance(values, dict):
        raise ForgetkitError(f"{where} must be a mapping of recipe settings")
    if "preset" not in values:
        return Recipe.from_dict(values, where)
    rest = {key: value for key, value in values.items() if key != "preset"}
    try:
        return resolve_recipe(get_preset(str(values["preset"])), rest, datasets, f"preset {values['preset']}")
    except ForgetkitError as err:
        raise ForgetkitError(f"{where}: {err}") from None


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A dataset name or a list of them."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ForgetkitError(f"{where} must be a dataset name or a list of names")
    return tuple(value)


def _hardware(value: Any, path: Path) -> Hardware:
    if isinstance(value, str):
        if value not in HARDWARE_PRESETS:
            raise ForgetkitError(f"{path}: hardware {value!r} unknown; use {sorted(HARDWARE_PRESETS)} or a mapping")
        return HARDWARE_PRESETS[value]
    return _dataclass_from(Hardware, value, f"{path}: hardware")


def default_run_dir(study: Study) -> Path:
    return DEFAULT_RUNS_DIR / study.name


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


def plan(study: Study, run: RunDir) -> list[Step]:
    """Every stage of the study in order: zero-shot evals, then per recipe training and the eval of each
    checkpoint (the checkpoints training will save, or has saved). Nothing runs here."""
    model = resolve_model(study.model, study.template)
    steps = _eval_steps(study, run, model.path, model.template, ZERO_SHOT)
    for recipe_name, recipe in study.recipes.items():
        steps.append(_train_step(study, run, model, recipe_name, recipe))
        steps.extend(_checkpoint_eval_steps(study, run, model, recipe_name, recipe))
    return steps


def launch(study: Study, run_dir: Path, dry_run: bool = False) -> dict[str, dict[str, dict]] | list[Step]:
    """Run every stage not already done, then score; return {checkpoint: {dataset: score}}.

    With `dry_run`, return the plan without running or writing anything.
    """
    run = RunDir(run_dir)
    if dry_run:
        return plan(study, run)
    if not (Path(study.data.dataset_dir) / "dataset_info.json").is_file():
        raise ForgetkitError(
            f"no dataset_info.json in {study.data.dataset_dir}; build the data first "
            "(forgetkit build-data ...) or fix data.dataset_dir in the spec"
        )
    run.create()
    shutil.copyfile(study.spec_path, run.root / "spec.yaml")
    record_versions(run)
    atomic.write_json(run.quadrants_path, {q: list(names) for q, names in study.eval.quadrants.items()})
    model = resolve_model(study.model, study.template)
    for step in plan(study, run):
        if step.name.startswith("train "):
            _check_unchanged(run, step, run.checkpoints(step.name.removeprefix("train ")))
        if not step.done and (step.requires is None or step.requires.is_dir()):
            _run_stage(run, step)
    for recipe_name, recipe in study.recipes.items():  # checkpoints training saved beyond the planned ones
        for step in _checkpoint_eval_steps(study, run, model, recipe_name, recipe):
            if not step.done:
                _run_stage(run, step)
    return score_run(run)


def _train_step(study: Study, run: RunDir, model: ModelSpec, recipe_name: str, recipe: Recipe) -> Step:
    output_dir = run.checkpoints(recipe_name)
    logging_steps = min(10, max(1, recipe.steps // 10)) if recipe.steps is not None else 10
    text = render_train(
        model, recipe, study.data, output_dir, study.hardware, seed=study.seed, logging_steps=logging_steps
    )
    stage = f"train {recipe_name}"
    digest = config_hash(text)
    return Step(
        stage,
        llamafactory.command_line("train", run.config(stage)),
        digest,
        run.is_done(stage, digest),
        partial(train, run, stage, text, output_dir),
    )


def _check_unchanged(run: RunDir, step: Step, output_dir: Path) -> None:
    previous = run.read_state().get(step.name)
    if previous and previous.get("config_hash") != step.digest and checkpoint_dirs(output_dir):
        raise ForgetkitError(
            f"recipe {step.name.removeprefix('train ')!r} changed since its checkpoints in {output_dir} were trained; "
            "launch into a new --run-dir or delete that folder"
        )


def _checkpoint_eval_steps(study: Study, run: RunDir, model: ModelSpec, recipe_name: str, recipe: Recipe) -> list[Step]:
    """Evals of the checkpoints on disk, or before training of those LF will save (every save_steps and the last)."""
    output_dir = run.checkpoints(recipe_name)
    saved = checkpoint_dirs(output_dir)
    if not saved and recipe.steps is not None:
        planned = list(range(recipe.save_steps, recipe.steps + 1, recipe.save_steps))
        saved = [output_dir / f"checkpoint-{n}" for n in sorted(set(planned) | {recipe.steps})]
    steps = []
    for checkpoint in saved:
        label = f"{recipe_name}/{checkpoint.name}"
        if recipe.method is Method.lora:
            evals = _eval_steps(study, run, model.path, model.template, label, adapter=checkpoint)
        else:
            evals = _eval_steps(study, run, str(checkpoint), model.template, label)
        steps.extend(dataclasses.replace(step, requires=checkpoint) for step in evals)
    return steps


def _eval_steps(
    study: Study, run: RunDir, model_path: str, template: str, checkpoint: str, adapter: Path | None = None
) -> list[Step]:
    """One LF prediction per eval dataset, one VLMEvalKit run for the `vlmeval:` benchmarks; a LoRA
    checkpoint is evaluated as `adapter` on the base model."""
    steps = (
        [_vlmeval_step(study, run, model_path, template, checkpoint, adapter)] if study.eval.vlmeval_datasets else []
    )
    for dataset in study.eval.lf_datasets:
        stage = f"predict {checkpoint} {dataset}"
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
        )
        target = run.predictions(checkpoint, dataset)
        if study.eval.scoring == "logits":
            steps.append(_logits_step(study, run, model_path, template, checkpoint, dataset, text, adapter, target))
            continue
        digest = config_hash(text)
        steps.append(
            Step(
                stage,
                llamafactory.command_line("train", run.config(stage)),
                digest,
                run.is_done(stage, digest) and target.is_file(),
                partial(predict, run, stage, text, scratch, target),
            )
        )
    return steps


def _logits_step(
    study: Study,
    run: RunDir,
    model_path: str,
    template: str,
    checkpoint: str,
    dataset: str,
    predict_config: str,
    adapter: Path | None,
    target: Path,
) -> Step:
    """Letter-logit scoring on exactly the inputs LF's prediction would see (its config is the cache key)."""
    from forgetkit.stages.logits import score_by_logits

    stage = f"logits {checkpoint} {dataset}"
    digest = config_hash("logits\n" + predict_config)
    action = partial(
        score_by_logits,
        model_path,
        study.data.dataset_dir,
        dataset,
        template,
        adapter=adapter,
        image_max_pixels=study.data.image_max_pixels,
        cutoff_len=study.data.cutoff_len,
        bf16=study.hardware.bf16,
        device="cuda" if study.hardware.bf16 else "cpu",
        batch_size=study.eval.batch_size,
        output=target,
    )
    command = f"forgetkit logits scoring of {model_path} on {dataset} (in process)"
    return Step(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)


def _vlmeval_step(
    study: Study, run: RunDir, model_path: str, template: str, checkpoint: str, adapter: Path | None
) -> Step:
    from forgetkit.stages.vlmeval_eval import RUNNER

    if template not in VLMEVAL_KINDS:
        raise ForgetkitError(
            f"vlmeval: benchmarks need a qwen2_vl or llava model; this study's template is {template!r}"
        )
    names = study.eval.vlmeval_datasets
    stage = f"vlmeval {checkpoint}"
    settings = {
        "model": model_path,
        "adapter": str(adapter) if adapter else None,
        "kind": VLMEVAL_KINDS[template],
        "datasets": names,
        "image_max_pixels": study.data.image_max_pixels,
        "max_new_tokens": study.eval.max_new_tokens,
        "device": "cpu" if not study.hardware.bf16 else "cuda",
    }
    digest = config_hash(json.dumps(settings, sort_keys=True))
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
        image_max_pixels=settings["image_max_pixels"],
        max_new_tokens=settings["max_new_tokens"],
    )
    for name, target in zip(settings["datasets"], targets):
        items = [json.loads(line) for line in predictions_path(scratch, name).read_text(encoding="utf-8").splitlines()]
        rows = [{"predict": i["prediction"], "label": i["answer"], "correct": i["correct"]} for i in items]
        atomic.write_jsonl(target, rows)
    shutil.rmtree(scratch, ignore_errors=True)


def _run_stage(run: RunDir, step: Step) -> None:
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
