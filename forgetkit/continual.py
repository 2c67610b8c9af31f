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

from dataclasses import replace

from forgetkit.evals import eval_stages
from forgetkit.models import ModelSpec
from forgetkit.rundir import RunDir
from forgetkit.spec import Continual, Sequence, Study, stage_label
from forgetkit.stages.export import export_stage
from forgetkit.stages.stage import Stage
from forgetkit.stages.train import train_stage


def continual_stages(study: Study, run: RunDir, model: ModelSpec, base: str) -> list[Stage]:
    """Every sequence's stages in order: per task, train from the previous model (IncLoRA: then merge),
    then evaluate on the test sets `continual.eval` names."""
    assert study.continual is not None
    steps: list[Stage] = []
    for sequence in study.continual.sequences.values():
        steps.extend(_sequence_stages(study, run, model, study.continual, sequence, base))
    return steps


def _sequence_stages(
    study: Study, run: RunDir, model: ModelSpec, continual: Continual, sequence: Sequence, base: str
) -> list[Stage]:
    """`base` is the base model's identity; each stage's identity then carries the one before it."""
    steps: list[Stage] = []
    current, after, source = model.path, (), base
    for index, (task, recipe) in enumerate(zip(continual.tasks, sequence.recipes)):
        label = stage_label(sequence.name, index, task)
        data = replace(study.data, train=(continual.train_set(index, sequence.replay),), mix_probs=())
        train = train_stage(study, run, replace(model, path=current), label, recipe, data, source, after=after)
        steps.append(train)
        trained = run.checkpoints(label)
        if sequence.strategy == "inclora":
            merged = trained.with_name(trained.name + "-merged")
            export = export_stage(
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
        steps.extend(eval_stages(study, run, model, current, label, continual.tested_after(index), source, after=after))
    return steps
