"""A study spec (`runs/*.yaml`) and the stages it runs: zero-shot eval, then per recipe train and
eval of every saved checkpoint, then the continual-learning sequences (`forgetkit.continual`), then scores.

Relative paths in a spec are resolved against the spec file's folder. Each stage records its
config hash in the run directory's state, so a rerun skips what is done and redoes what is not.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

from forgetkit import atomic
from forgetkit.built_data import check_built
from forgetkit.continual import Continual, continual_steps, layout, parse_continual
from forgetkit.doctor import require as require_environment
from forgetkit.errors import ForgetkitError
from forgetkit.knobs import Count, Flag, Size, Text, checked, shown
from forgetkit.models import ModelSpec, local_model_dir, resolve_model
from forgetkit.presets import get_preset
from forgetkit.recipes import CPU, Hardware, Method, Recipe
from forgetkit.render import DECODINGS, GREEDY, LF_DEFAULTS, DataSpec
from forgetkit.rundir import ZERO_SHOT, RunDir, checkpoint_dirs, is_complete_checkpoint, record_versions
from forgetkit.scoring import score_run
from forgetkit.steps import VLMEVAL, Step, base_identity, eval_steps, run_stage, train_step
from forgetkit.train_config import mixing, resolve_recipe
from forgetkit.yamlfile import load_yaml

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RECIPE_DATA_KEYS = ("train", "mix_ratio")
"""Keys of a spec's recipe that pick its own training data, so one study holds Fig. 4's arms and ratios."""
SPEC_KEYS = {
    "name",
    "model",
    "template",
    "seed",
    "data",
    "eval",
    "hardware",
    "recipes",
    "continual",
    "trust_remote_code",
}
DEFAULT_RUNS_DIR = Path("runs") / "out"
HARDWARE_PRESETS = {"cpu": CPU, "gpu": Hardware()}


QUADRANTS = ("ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I")
"""The 2x2 matrix of PROTOCOL.md §2: in/out-of-distribution text x image."""


@dataclass(frozen=True)
class EvalSpec:
    """Eval datasets, grouped by quadrant where the spec says (`quadrants: {ID^T-ID^I: [...], ...}`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    datasets: tuple[Text, ...] = ()
    quadrants: dict[str, tuple[Text, ...]] = field(default_factory=dict)
    batch_size: Count = 8
    max_new_tokens: Count = 16
    probe: Text | None = None
    """A held-out non-MCQ dataset (e.g. captions): every checkpoint's drift from the base is measured on it."""
    backend: Text = "auto"
    """Generation engine: `huggingface` (LF prediction via `llamafactory-cli`), `vllm` (LF's vLLM engine), or
    `auto`: vLLM when it is installed and the study runs on cuda."""
    scoring: Text = "generate"
    """`generate` (LF prediction, the paper's way) or `logits` (one forward pass over the option letters)."""
    decoding: Text = GREEDY
    """`greedy`, or `lf-defaults`: no generation keys, so LF's own defaults apply (sampling at temperature 0.95,
    top_p 0.7, 1024 new tokens; `max_new_tokens` is not used), seeded by the study's seed. The authors' eval
    configs set no generation keys, so their numbers come from `lf-defaults`."""
    vlmeval_min_pixels: Count | None = None
    vlmeval_max_pixels: Count | None = None
    """Image area limits of the `vlmeval:` benchmarks; None: VLMEvalKit's own for the model (its config entry:
    Qwen2.5-VL 1280x28x28 to 16384x28x28, which gave the paper's zero-shot MMMU and VMCBench; none for LLaVA)."""
    lmudata: Text = "lmudata"
    """VLMEvalKit's data folder (`$LMUData`), relative to data.dataset_dir: `<NAME>.tsv` per `vlmeval:NAME`."""

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "huggingface", "vllm"):
            raise ForgetkitError(f"backend {shown(self.backend)} unknown; use auto, huggingface or vllm")
        if self.scoring not in ("generate", "logits"):
            raise ForgetkitError(f"scoring {shown(self.scoring)} unknown; use generate or logits")
        if self.decoding not in DECODINGS:
            raise ForgetkitError(f"decoding {shown(self.decoding)} unknown; use {' or '.join(DECODINGS)}")
        if self.decoding == LF_DEFAULTS and (self.scoring == "logits" or self.backend == "vllm"):
            raise ForgetkitError(
                "decoding lf-defaults samples through LF's own prediction; use scoring: generate and "
                "backend: huggingface (or auto)"
            )
        unknown = sorted(set(self.quadrants) - set(QUADRANTS))
        if unknown:
            raise ForgetkitError(f"unknown quadrant(s) {shown(unknown)} in quadrants; use {', '.join(QUADRANTS)}")

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
    continual: Continual | None = None
    recipe_data: dict[str, DataSpec] = field(default_factory=dict)
    """Recipes that train on their own data (`train:`, `mix_ratio:` in the recipe) instead of `data`."""
    trust_remote_code: bool = False
    """Let every stage run the Python files the model names in its config (`auto_map`); off: only transformers'
    own model code runs, which is all Qwen2.5-VL and LLaVA need."""

    def data_for(self, recipe: str) -> DataSpec:
        return self.recipe_data.get(recipe, self.data)


def load_study(path: Path) -> Study:
    if not path.is_file():
        raise ForgetkitError(f"study spec {path} does not exist")
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ForgetkitError(f"{path}: a study spec is a YAML mapping with keys {sorted(SPEC_KEYS)}")
    unknown = sorted(map(str, set(raw) - SPEC_KEYS))
    if unknown:
        raise ForgetkitError(f"{path}: unknown key(s) {shown(unknown)}; known: {sorted(SPEC_KEYS)}")
    for required in ("name", "model", "data"):
        if required not in raw:
            raise ForgetkitError(f"{path}: missing required key {required!r}")
    if "recipes" not in raw and "continual" not in raw:
        raise ForgetkitError(f"{path}: nothing to train; give recipes, continual, or both")
    name = checked(Text, raw["name"], f"{path}: name")
    _check_name(name, f"{path}: name")
    data_raw = dict(_mapping(raw["data"], f"{path}: data"))
    if "train" in data_raw:
        data_raw["train"] = _names(data_raw["train"], f"{path}: data.train")
    if isinstance(data_raw.get("mix_probs"), list):
        data_raw["mix_probs"] = [str(p) for p in data_raw["mix_probs"]]
    data = _dataclass_from(DataSpec, data_raw, f"{path}: data")
    data = dataclasses.replace(data, dataset_dir=str((path.parent / data.dataset_dir).resolve()))
    eval_raw = raw.get("eval") or {}
    if isinstance(eval_raw, dict):
        eval_raw = dict(eval_raw)
        if eval_raw.get("probe") is not None:
            eval_raw["probe"] = _names(eval_raw["probe"], f"{path}: eval.probe")[0]
        eval_raw["datasets"] = _names(eval_raw.get("datasets", ()), f"{path}: eval.datasets")
        quadrants = eval_raw.get("quadrants", {})
        if not isinstance(quadrants, dict):
            raise ForgetkitError(f"{path}: eval.quadrants maps quadrant names ({', '.join(QUADRANTS)}) to datasets")
        eval_raw["quadrants"] = {str(q): _names(v, f"{path}: eval.quadrants.{shown(q)}") for q, v in quadrants.items()}
    eval_spec = _dataclass_from(EvalSpec, eval_raw, f"{path}: eval")
    raw_recipes = raw.get("recipes", {})
    if not isinstance(raw_recipes, dict) or ("recipes" in raw and not raw_recipes):
        raise ForgetkitError(f"{path}: recipes must map recipe names to their settings")
    if raw_recipes and not eval_spec.all_datasets:
        raise ForgetkitError(f"{path}: eval: no datasets; give eval.datasets or eval.quadrants")
    recipes, recipe_data = {}, {}
    for recipe_name, values in raw_recipes.items():
        _check_name(recipe_name, f"{path}: recipe name")
        where = f"{path}: recipes.{recipe_name}"
        if not isinstance(values, dict | None):
            raise ForgetkitError(f"{where} must be a mapping of recipe settings")
        settings = dict(values or {})
        own = {key: settings.pop(key) for key in RECIPE_DATA_KEYS if key in settings}
        recipe_train = _names(own["train"], f"{where}.train") if "train" in own else data.train
        recipes[str(recipe_name)] = _recipe(settings, where, recipe_train)
        if own:
            recipe_data[str(recipe_name)] = _recipe_data(data, recipe_train, own.get("mix_ratio"), settings, where)
    continual = None
    if "continual" in raw:
        continual = parse_continual(raw["continual"], f"{path}: continual", _recipe)
        for sequence in continual.sequences:
            _check_name(sequence, f"{path}: continual sequence name")
        for index, dataset in enumerate(continual.test_sets):
            _check_name(dataset, f"{path}: continual.tasks[{index}] makes the dataset name")
        for sequence in continual.sequences.values():
            for index in range(len(continual.tasks)):
                _check_name(continual.train_set(index, sequence.replay), f"{path}: continual training set")
        clash = sorted(set(continual.sequences) & set(recipes))
        if clash:
            raise ForgetkitError(f"{path}: {clash} name both a recipe and a continual sequence; rename one")
    return Study(
        name=name,
        model=_model_path(checked(Text, raw["model"], f"{path}: model"), path),
        template=checked(Text | None, raw.get("template"), f"{path}: template"),
        seed=checked(Size, raw.get("seed", 42), f"{path}: seed"),
        data=data,
        eval=eval_spec,
        hardware=_hardware(raw.get("hardware", "gpu"), path),
        recipes=recipes,
        spec_path=path,
        continual=continual,
        recipe_data=recipe_data,
        trust_remote_code=checked(Flag, raw.get("trust_remote_code", False), f"{path}: trust_remote_code"),
    )


def _recipe_data(data: DataSpec, train: tuple[str, ...], ratio: Any, settings: dict, where: str) -> DataSpec:
    """A recipe's own training data: its datasets, mixed by its `mix_ratio` (one number for every dataset after
    the first, or one each) or its preset's (Fig. 4's 0.5)."""
    if ratio is not None and len(train) < 2:
        raise ForgetkitError(f"{where}.mix_ratio mixes the datasets after the first; give train: two or more datasets")
    ratios = tuple(str(r) for r in ratio) if isinstance(ratio, list) else (str(ratio),) * (len(train) - 1)
    preset = get_preset(str(settings["preset"])) if "preset" in settings else None
    try:
        probs = mixing(preset, train, ratios if ratio is not None else ())
    except ForgetkitError as err:
        raise ForgetkitError(f"{where}: {err}") from None
    return dataclasses.replace(data, train=train, mix_probs=probs)


def _model_path(model: str, spec: Path) -> str:
    """A registry name or hub id as given; a relative path (`./model`, `../ckpt`) against the spec's folder."""
    return str((spec.parent / model).resolve()) if model.startswith(("./", "../")) else model


def _check_name(name: Any, where: str) -> None:
    """Study, recipe, sequence and dataset names become file and folder names in the run directory."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ForgetkitError(f"{where} {shown(name)} must be letters, digits, '.', '_' or '-'")


def _mapping(values: Any, where: str) -> dict:
    if not isinstance(values, dict):
        raise ForgetkitError(f"{where} must be a mapping, got {shown(values)}")
    return values


def _dataclass_from(cls: type, values: Any, where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(_mapping(values, where)) - known))
    if unknown:
        raise ForgetkitError(f"{where}: unknown key(s) {shown(unknown)}; known: {sorted(known)}")
    return checked(cls, values, where)


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
    """A dataset name or a list of them; each becomes a file name (`predictions/<checkpoint>/<name>.jsonl`)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, str) for v in names):
        raise ForgetkitError(f"{where} must be a dataset name or a list of names, got {shown(value)}")
    for name in names:
        _check_name(name.removeprefix(VLMEVAL), where)
    return tuple(names)


def _hardware(value: Any, path: Path) -> Hardware:
    if isinstance(value, str):
        if value not in HARDWARE_PRESETS:
            raise ForgetkitError(
                f"{path}: hardware {shown(value)} unknown; use {sorted(HARDWARE_PRESETS)} or a mapping"
            )
        return HARDWARE_PRESETS[value]
    return _dataclass_from(Hardware, value, f"{path}: hardware")


def default_run_dir(study: Study) -> Path:
    return DEFAULT_RUNS_DIR / study.name


def plan(study: Study, run: RunDir) -> list[Step]:
    """Every stage of the study in order: zero-shot evals (eval sets and continual task test sets, Table 3's
    zero-shot row), per recipe training and the eval of each checkpoint (the checkpoints training will
    save, or has saved), then the continual sequences. Nothing runs here."""
    model = resolve_model(study.model, study.template)
    base = base_identity(model)
    zero_shot = study.eval.all_datasets + (study.continual.test_sets if study.continual else ())
    steps = eval_steps(study, run, model, model.path, ZERO_SHOT, tuple(dict.fromkeys(zero_shot)), base)
    for recipe_name, recipe in study.recipes.items():
        train = train_step(study, run, model, recipe_name, recipe, study.data_for(recipe_name), base)
        steps.append(train)
        steps.extend(_checkpoint_eval_steps(study, run, model, recipe_name, recipe, train))
    if study.continual is not None:
        steps.extend(continual_steps(study, run, model, base))
    return steps


def launch(study: Study, run_dir: Path, dry_run: bool = False, only: str | None = None) -> dict | list[Step]:
    """Run every stage not already done, then score; return {checkpoint: {dataset: score}}.

    With `dry_run`, return the plan without running or writing anything. With `only`, run that one stage
    (what a scheduler's job does) and return the plan.
    """
    run = RunDir(run_dir)
    if dry_run:
        return plan(study, run)
    check_data(study)
    local_model_dir(resolve_model(study.model, study.template).path)  # a hub id is keyed by its cached commit
    if only is not None:
        with run.stage_lock(only):
            return _launch_one(study, run, plan(study, run), only)
    with run.exclusive():
        return _launch_all(study, run, plan(study, run))


def _launch_all(study: Study, run: RunDir, steps: list[Step]) -> dict:
    trains = [step for step in steps if step.name.startswith("train ")]
    for step in trains:
        _check_unchanged(run, step)
    prepare(study, run)
    for step in steps:
        if not step.done and (step.requires is None or is_complete_checkpoint(step.requires)):
            _run_stage(study, run, step)
    model = resolve_model(study.model, study.template)
    by_name = {step.name: step for step in trains}
    for recipe_name, recipe in study.recipes.items():  # checkpoints training saved beyond the planned ones
        for step in _checkpoint_eval_steps(study, run, model, recipe_name, recipe, by_name[f"train {recipe_name}"]):
            if not step.done:
                _run_stage(study, run, step)
    return score_run(run)


def check_data(study: Study) -> None:
    """Stop before anything runs (or is submitted) when a dataset the study reads is not built, or its build
    did not finish, or a file changed since."""
    check_built(study.data.dataset_dir, datasets_read(study), study.eval.lmudata)


def datasets_read(study: Study) -> tuple[str, ...]:
    """Every dataset a stage of the study reads: training sets, eval sets, continual tasks' sets, the probe's."""
    names = [*study.eval.all_datasets, *(n for recipe in study.recipes for n in study.data_for(recipe).train)]
    if study.continual is not None:
        continual = study.continual
        for sequence in continual.sequences.values():
            names += [continual.train_set(index, sequence.replay) for index in range(len(continual.tasks))]
        names += continual.test_sets
    names += [study.eval.probe] if study.eval.probe else []
    return tuple(dict.fromkeys(names))


def prepare(study: Study, run: RunDir) -> None:
    """The run directory's record of what was launched: spec, versions, quadrants, continual layout."""
    run.create()
    atomic.write_text(run.root / "spec.yaml", study.spec_path.read_text(encoding="utf-8"))
    record_versions(run)
    atomic.write_json(run.quadrants_path, {q: list(names) for q, names in study.eval.quadrants.items()})
    if study.continual is not None:
        atomic.write_json(run.continual_path, layout(study.continual))


def _run_stage(study: Study, run: RunDir, step: Step) -> None:
    """`run_stage`, once the environment passed the doctor's required checks (a broken install stops
    here with the doctor's line, not inside a stage's log)."""
    require_environment(study.hardware.device)
    run_stage(run, step)


def _launch_one(study: Study, run: RunDir, steps: list[Step], name: str) -> list[Step]:
    by_name = {step.name: step for step in steps}
    if name not in by_name:
        raise ForgetkitError(f"no stage {name!r} in this study; `forgetkit launch SPEC --dry-run` lists them")
    step = by_name[name]
    missing = [after for after in step.after if not by_name[after].done]
    if missing:
        raise ForgetkitError(f"stage {name!r} needs {', '.join(missing)} done first")
    if step.name.startswith("train "):
        _check_unchanged(run, step)
    if not step.done:
        prepare(study, run)
        _run_stage(study, run, step)
    return steps


def _check_unchanged(run: RunDir, step: Step) -> None:
    """Refuse to train into checkpoints a different config (or base model, or data) made."""
    output_dir = run.checkpoints(step.name.removeprefix("train "))
    previous = run.read_state().get(step.name)
    if previous and previous.get("config_hash") != step.digest and checkpoint_dirs(output_dir):
        raise ForgetkitError(
            f"{step.name!r} changed since its checkpoints in {output_dir} were trained; "
            "launch into a new --run-dir or delete that folder"
        )


def _checkpoint_eval_steps(
    study: Study, run: RunDir, model: ModelSpec, recipe_name: str, recipe: Recipe, train: Step
) -> list[Step]:
    """Evals of the checkpoints on disk, or before training of those LF will save (every save_steps and the last)."""
    output_dir = run.checkpoints(recipe_name)
    saved = checkpoint_dirs(output_dir)
    if not saved and recipe.steps is not None:
        planned = list(range(recipe.save_steps, recipe.steps + 1, recipe.save_steps))
        saved = [output_dir / f"checkpoint-{n}" for n in sorted(set(planned) | {recipe.steps})]
    steps = []
    for checkpoint in saved:
        label = f"{recipe_name}/{checkpoint.name}"
        datasets = study.eval.all_datasets
        if recipe.method is Method.lora:
            evals = eval_steps(study, run, model, model.path, label, datasets, train.digest, adapter=checkpoint)
        else:
            evals = eval_steps(study, run, model, str(checkpoint), label, datasets, train.digest)
        steps.extend(dataclasses.replace(step, requires=checkpoint, after=(train.name,)) for step in evals)
    return steps
