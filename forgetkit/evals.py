"""The evaluation stages of one checkpoint: which stage kind answers each dataset (LF prediction, letter logits,
LF's vLLM engine, VLMEvalKit) and the drift probe. Each kind plans its own `Stage` in `forgetkit/stages/`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from forgetkit.built_data import VLMEVAL, data_identity
from forgetkit.models import ModelSpec
from forgetkit.render import render_predict
from forgetkit.rundir import ZERO_SHOT, RunDir
from forgetkit.stage_names import stage_name
from forgetkit.stages.chat_predict import chat_settings, generation_backend
from forgetkit.stages.evaluate import evaluate_stage, member, settings_config
from forgetkit.stages.probe import probe_stage
from forgetkit.stages.stage import Stage, base_identity
from forgetkit.stages.vlmeval.stage import vlmeval_stage

if TYPE_CHECKING:
    from forgetkit.spec import Study


def eval_stages(
    study: Study,
    run: RunDir,
    base: ModelSpec,
    model_path: str,
    checkpoint: str,
    datasets: tuple[str, ...],
    source: str,
    adapter: Path | None = None,
    after: tuple[str, ...] = (),
) -> list[Stage]:
    """One evaluate stage for the LF-format sets (LF prediction, letter logits or LF's vLLM engine, one model
    load for all), one VLMEvalKit run for the `vlmeval:` benchmarks, and the drift probe against `base` (the
    study's model, whose chat template every stage uses); a LoRA
    checkpoint is evaluated as `adapter` on `model_path`. `source` is the identity of what made the checkpoint
    (its training stage; the base model for zero-shot), part of every eval's identity with its dataset's."""
    template = base.template

    def reads(*names: str) -> tuple[str, ...]:
        return (source, *(data_identity(study.data.dataset_dir, name, study.eval.lmudata) for name in names))

    benchmarks = tuple(name for name in datasets if name.startswith(VLMEVAL))
    steps = []
    if benchmarks:
        steps.append(vlmeval_stage(study, run, model_path, base, checkpoint, benchmarks, adapter, reads(*benchmarks)))
    members = []
    for dataset in (name for name in datasets if not name.startswith(VLMEVAL)):
        kind = "logits" if study.eval.scoring == "logits" else generation_backend(study)
        if kind == "vllm":
            settings = chat_settings(
                study.data, study.eval.max_new_tokens, study.trust_remote_code, model_path, template, dataset, adapter
            )
            config = settings_config(settings)
            members.append(member(run, "chat", checkpoint, dataset, config, reads(dataset)))
            continue
        text = render_predict(
            model_path,
            template,
            dataset,
            study.data,
            run.scratch(stage_name("predict", checkpoint, dataset)),
            study.hardware,
            batch_size=study.eval.batch_size,
            max_new_tokens=study.eval.max_new_tokens,
            adapter=adapter,
            decoding=study.eval.decoding,
            seed=study.seed,
            trust_remote_code=study.trust_remote_code,
        )
        answered = "logits" if kind == "logits" else "predict"
        members.append(member(run, answered, checkpoint, dataset, text, reads(dataset)))
    if members:
        steps.append(evaluate_stage(study, run, checkpoint, members))
    if study.eval.probe and checkpoint != ZERO_SHOT:
        upstream = (base_identity(base), *reads(study.eval.probe))
        steps.append(probe_stage(study, run, base, model_path, checkpoint, adapter, upstream))
    return [replace(step, after=after) for step in steps]
