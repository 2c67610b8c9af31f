"""A study spec (`runs/*.yaml`) read and checked into a `Study`: data, eval, hardware, recipes and the
continual section. Relative paths are resolved against the spec file's folder. What the stages of a study
are and how they run is `forgetkit.study`'s; how a continual sequence trains is `forgetkit.continual`'s.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

from forgetkit.built_data import VLMEVAL
from forgetkit.errors import ForgetkitError
from forgetkit.knobs import Count, Flag, Size, Text, checked, shown
from forgetkit.presets import get_preset
from forgetkit.protocol import MLLM_CL_TEST, MLLM_CL_TRAIN, QUADRANTS
from forgetkit.recipes import CPU, Hardware, Method, Part, Recipe
from forgetkit.render import DECODINGS, EVAL_BATCH_SIZE, GREEDY, LF_DEFAULTS, MAX_NEW_TOKENS, SEED, DataSpec
from forgetkit.tracking import Tracker, trackers
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
    "report_to",
}
HARDWARE_PRESETS = {"cpu": CPU, "gpu": Hardware()}


@dataclass(frozen=True)
class EvalSpec:
    """Eval datasets, grouped by quadrant where the spec says (`quadrants: {ID^T-ID^I: [...], ...}`)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    datasets: tuple[Text, ...] = ()
    quadrants: dict[str, tuple[Text, ...]] = field(default_factory=dict)
    batch_size: Count = EVAL_BATCH_SIZE
    max_new_tokens: Count = MAX_NEW_TOKENS
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
    devices: tuple[Text, ...] = ()
    """The devices a checkpoint's eval rows are sharded over, one worker each (its `CUDA_VISIBLE_DEVICES`),
    merged back in row order; empty: every visible GPU on cuda, one worker on cpu."""
    chunk_rows: Count = 256
    """Rows an eval worker answers between two durable appends (rounded down to whole batches): a killed
    evaluation resumes at its first missing chunk, losing at most this many rows' work."""

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
    report_to: tuple[Tracker, ...] = ()
    """Where trainings log (LF's `report_to`: tensorboard, wandb offline, both; none by default), and where every
    checkpoint's scores follow (`forgetkit.tracking`)."""

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
        continual = parse_continual(raw["continual"], f"{path}: continual")
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
        seed=checked(Size, raw.get("seed", SEED), f"{path}: seed"),
        data=data,
        eval=eval_spec,
        hardware=_hardware(raw.get("hardware", "gpu"), path),
        recipes=recipes,
        spec_path=path,
        continual=continual,
        recipe_data=recipe_data,
        trust_remote_code=checked(Flag, raw.get("trust_remote_code", False), f"{path}: trust_remote_code"),
        report_to=trackers(raw.get("report_to", "none"), f"{path}: report_to"),
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


STRATEGIES = {"inclora": Method.lora, "seqfull": Method.full}
"""Strategy -> the fine-tuning method each of its tasks uses."""
KEYS = {"tasks", "train", "test", "eval", "sequences"}
EVALS = ("all", "seen")
"""After each task, test every task (the authors' generators; forward transfer needs it) or those seen so far."""


@dataclass(frozen=True)
class Sequence:
    name: str
    strategy: str
    replay: int | None
    recipes: tuple[Recipe, ...]
    """One per task, each resolved against that task's training set (Table 3's epochs differ per task)."""


@dataclass(frozen=True)
class Continual:
    tasks: tuple[str, ...]
    sequences: dict[str, Sequence]
    train: str = MLLM_CL_TRAIN
    test: str = MLLM_CL_TEST
    eval: str = "all"

    def train_set(self, index: int, replay: int | None) -> str:
        """Task `index`'s training set; with replay, every task after the first trains on its replay build."""
        name = self.train.format(task=self.tasks[index])
        return f"{name}_replay{replay}" if replay and index > 0 else name

    def test_set(self, task: str) -> str:
        return self.test.format(task=task)

    @property
    def test_sets(self) -> tuple[str, ...]:
        return tuple(self.test_set(task) for task in self.tasks)

    def tested_after(self, index: int) -> tuple[str, ...]:
        """The test sets the model answers after learning task `index`."""
        return self.test_sets if self.eval == "all" else self.test_sets[: index + 1]


def stage_label(sequence: str, index: int, task: str) -> str:
    """`<sequence>/task-<n>-<task>`: the model after learning task n, as checkpoints and predictions name it."""
    return f"{sequence}/task-{index + 1}-{task}"


def parse_continual(raw: Any, where: str) -> Continual:
    if not isinstance(raw, dict):
        raise ForgetkitError(f"{where} must be a mapping with keys {sorted(KEYS)}")
    unknown = sorted(map(str, set(raw) - KEYS))
    if unknown:
        raise ForgetkitError(f"{where}: unknown key(s) {shown(unknown)}; known: {sorted(KEYS)}")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
        raise ForgetkitError(f"{where}.tasks must list the task names in training order, e.g. [rs, med, ad, sci, fin]")
    if len(set(tasks)) != len(tasks):
        raise ForgetkitError(f"{where}.tasks names a task twice: {shown(tasks)}")
    patterns = {
        key: str(raw.get(key, default)) for key, default in (("train", Continual.train), ("test", Continual.test))
    }
    for key, pattern in patterns.items():
        if "{task}" not in pattern:
            raise ForgetkitError(f"{where}.{key} {shown(pattern)} must contain {{task}}, e.g. mllmcl_{{task}}_{key}")
    sequences = raw.get("sequences")
    if not isinstance(sequences, dict) or not sequences:
        raise ForgetkitError(f"{where}.sequences must map sequence names to {{strategy: inclora|seqfull, ...}}")
    evaluate = raw.get("eval", "all")
    if evaluate not in EVALS:
        raise ForgetkitError(f"{where}.eval {shown(evaluate)} unknown; use all (every task after every task) or seen")
    continual = Continual(tuple(tasks), {}, **patterns, eval=evaluate)
    parsed = {
        str(name): _sequence(str(name), values, f"{where}.sequences.{name}", continual)
        for name, values in sequences.items()
    }
    return replace(continual, sequences=parsed)


def _sequence(name: str, values: Any, where: str, continual: Continual) -> Sequence:
    if not isinstance(values, dict):
        raise ForgetkitError(f"{where} must be a mapping: strategy, replay, then recipe settings or preset")
    settings = dict(values)
    strategy = settings.pop("strategy", None)
    if strategy not in STRATEGIES:
        raise ForgetkitError(f"{where}: strategy {shown(strategy)} unknown; use {' or '.join(STRATEGIES)}")
    replay = settings.pop("replay", None)
    if replay is not None and (not isinstance(replay, int) or isinstance(replay, bool) or replay < 1):
        raise ForgetkitError(f"{where}: replay {shown(replay)} must be a positive number of rows per earlier task")
    if "preset" not in settings:
        settings.setdefault("part", Part.llm_projector.value)
        settings.setdefault("method", STRATEGIES[strategy].value)
    recipes = tuple(
        _recipe(settings, where, (continual.train_set(index, replay),)) for index in range(len(continual.tasks))
    )
    if recipes[0].method is not STRATEGIES[strategy]:
        raise ForgetkitError(
            f"{where}: strategy {strategy} trains with method {STRATEGIES[strategy].value}, "
            f"but its recipe says {recipes[0].method.value}; pick a matching preset or method"
        )
    return Sequence(name, strategy, replay, recipes)


def layout(continual: Continual) -> dict[str, dict]:
    """What `continual.json` in the run directory records: per sequence, its stages in order and the
    task test sets, so the task x stage accuracy matrix can be read out of the scores."""
    return {
        name: {
            "strategy": sequence.strategy,
            "replay": sequence.replay,
            "tasks": list(continual.tasks),
            "stages": [stage_label(name, index, task) for index, task in enumerate(continual.tasks)],
            "tests": list(continual.test_sets),
        }
        for name, sequence in continual.sequences.items()
    }
