"""Continual learning in a study spec (PROTOCOL.md §4, paper §5): tasks learned one after another.

    continual:
      tasks: [rs, med, ad, sci, fin]          # in order; datasets as `build-data mllm-cl` names them
      sequences:
        inclora: {strategy: inclora, preset: table3-a}
        seqfull-replay20: {strategy: seqfull, replay: 20, preset: table3-d}

`inclora` trains a LoRA per task on the LLM, with the projector trained in full beside it, merges both
into the model it was trained on (`llamafactory-cli export`) and starts the next task from the merge;
`seqfull` fine-tunes the LLM and the projector in full, task after task. Both are the authors' released
configs (the vision tower stays frozen); a sequence's `part` overrides it.
`replay: N` trains every task after the first on `<train>_replay<N>` (the task's rows plus N of every
earlier task's, built by `build-data mllm-cl --param replay=N`). After each task the model is
evaluated on the test set of every task (`eval: all`, the default, as the authors' eval generators
do; this gives forward transfer) or of the tasks seen so far (`eval: seen`), so the run keeps the
task x stage accuracy matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import shown
from forgetkit.models import ModelSpec
from forgetkit.recipes import Method, Part, Recipe
from forgetkit.rundir import RunDir
from forgetkit.steps import Step, eval_steps, export_step, train_step

if TYPE_CHECKING:
    from forgetkit.study import Study

STRATEGIES = {"inclora": Method.lora, "seqfull": Method.full}
"""Strategy -> the fine-tuning method each of its tasks uses."""
KEYS = {"tasks", "train", "test", "eval", "sequences"}
EVALS = ("all", "seen")
"""After each task, test every task (the authors' generators; forward transfer needs it) or those seen so far."""
RecipeResolver = Callable[[dict, str, tuple[str, ...]], Recipe]


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
    train: str = "mllmcl_{task}_train"
    test: str = "mllmcl_{task}_test"
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


def parse_continual(raw: Any, where: str, resolve: RecipeResolver) -> Continual:
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
        str(name): _sequence(str(name), values, f"{where}.sequences.{name}", continual, resolve)
        for name, values in sequences.items()
    }
    return replace(continual, sequences=parsed)


def _sequence(name: str, values: Any, where: str, continual: Continual, resolve: RecipeResolver) -> Sequence:
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
        resolve(settings, where, (continual.train_set(index, replay),)) for index in range(len(continual.tasks))
    )
    if recipes[0].method is not STRATEGIES[strategy]:
        raise ForgetkitError(
            f"{where}: strategy {strategy} trains with method {STRATEGIES[strategy].value}, "
            f"but its recipe says {recipes[0].method.value}; pick a matching preset or method"
        )
    return Sequence(name, strategy, replay, recipes)


def continual_steps(study: Study, run: RunDir, model: ModelSpec, base: str) -> list[Step]:
    """Every sequence's stages in order: per task, train from the previous model (IncLoRA: then merge),
    then evaluate on the test sets `continual.eval` names."""
    assert study.continual is not None
    steps: list[Step] = []
    for sequence in study.continual.sequences.values():
        steps.extend(_sequence_steps(study, run, model, study.continual, sequence, base))
    return steps


def _sequence_steps(
    study: Study, run: RunDir, model: ModelSpec, continual: Continual, sequence: Sequence, base: str
) -> list[Step]:
    """`base` is the base model's identity; each stage's identity then carries the one before it."""
    steps: list[Step] = []
    current, after, source = model.path, (), base
    for index, (task, recipe) in enumerate(zip(continual.tasks, sequence.recipes)):
        label = stage_label(sequence.name, index, task)
        data = replace(study.data, train=(continual.train_set(index, sequence.replay),), mix_probs=())
        train = train_step(study, run, replace(model, path=current), label, recipe, data, source, after=after)
        steps.append(train)
        trained = run.checkpoints(label)
        if sequence.strategy == "inclora":
            merged = trained.with_name(trained.name + "-merged")
            export = export_step(
                run,
                current,
                trained,
                model.template,
                merged,
                after=(train.name,),
                sources=(source, train.digest),
                trust_remote_code=study.trust_remote_code,
            )
            steps.append(export)
            current, after, source = str(merged), (export.name,), export.digest
        else:
            current, after, source = str(trained), (train.name,), train.digest
        steps.extend(eval_steps(study, run, model, current, label, continual.tested_after(index), source, after=after))
    return steps


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
