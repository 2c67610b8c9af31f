"""Predict stage through LLaMA-Factory's inference engines (`llamafactory.chat.ChatModel`): its vLLM
engine on a GPU, the same code with its HF engine anywhere else.

`llamafactory-cli train` with `do_predict` generates with HF only; LF's vLLM batch script is not in
its wheel. ChatModel with `infer_backend: vllm` is LF's own vLLM path: its template, multimodal
plugin and image pixel limits, so prompts match LF prediction. All rows are sent at once and vLLM
batches them. Decoding is greedy (`temperature: 0`, which both engines read as no sampling; LF's vLLM
defaults sample at 0.95). Runs as its own process (`python -m forgetkit.stages.chat_predict
SETTINGS.json`), so the GPU memory vLLM holds is freed when it ends. Writes LF-shaped
`generated_predictions.jsonl` rows: prompt, predict, label.
"""

from __future__ import annotations

import asyncio
import json
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import dataset_entry
from forgetkit.jsonfile import read_json
from forgetkit.rundir import RunDir
from forgetkit.stages.process import run_logged
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    from forgetkit.spec import Study
import importlib.util

from forgetkit.render import LF_DEFAULTS

SHAREGPT_DEFAULTS = {
    "messages": "conversations",
    "images": "images",
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
}
"""LF's defaults for a sharegpt dataset_info entry (`llamafactory.data.parser.DatasetAttr`)."""


def engine_args(settings: dict[str, Any]) -> dict[str, Any]:
    """ChatModel arguments: the model (and LoRA adapter), the template, the engine, greedy decoding, and whether
    the model's own code may run (the study's `trust_remote_code`)."""
    args = {
        "model_name_or_path": settings["model"],
        "template": settings["template"],
        "infer_backend": settings["backend"],
        "image_max_pixels": settings["image_max_pixels"],
        "max_new_tokens": settings["max_new_tokens"],
        "do_sample": False,
        "temperature": 0.0,
        "vllm_maxlen": settings["cutoff_len"] + settings["max_new_tokens"],
        "trust_remote_code": settings["trust_remote_code"],
    }
    if settings.get("adapter"):
        args |= {"adapter_name_or_path": settings["adapter"], "finetuning_type": "lora"}
    return args


def eval_rows(dataset_dir: Path, dataset: str) -> list[dict[str, Any]]:
    """A sharegpt eval set as LF reads it: the prompt turns, image paths (against the data folder, LF's
    default media_dir) and the last assistant turn as the label."""
    entry = dataset_entry(dataset_dir, dataset)
    if entry.get("formatting") != "sharegpt":
        raise ForgetkitError(f"dataset {dataset!r} is not sharegpt-formatted; the vLLM predict stage reads sharegpt")
    keys = SHAREGPT_DEFAULTS | entry.get("columns", {}) | entry.get("tags", {})
    raw = read_json(dataset_dir / entry["file_name"], list, f"rebuild dataset {dataset!r}")
    rows = []
    for index, row in enumerate(raw):
        turns = row.get(keys["messages"]) or []
        if not turns or turns[-1].get(keys["role_tag"]) != keys["assistant_tag"]:
            raise ForgetkitError(f"{entry['file_name']} row {index}: the last turn must be the assistant's answer")
        messages = [
            {
                "role": "user" if turn[keys["role_tag"]] == keys["user_tag"] else "assistant",
                "content": turn[keys["content_tag"]],
            }
            for turn in turns[:-1]
        ]
        images = [str(_media(dataset_dir, path)) for path in row.get(keys["images"]) or []]
        rows.append({"messages": messages, "images": images, "label": turns[-1][keys["content_tag"]]})
    return rows


def _media(dataset_dir: Path, path: str) -> Path:
    resolved = dataset_dir / path
    return resolved if resolved.is_file() else Path(path)


def predict_rows(settings: dict[str, Any]) -> list[dict[str, str]]:
    from llamafactory.chat import ChatModel

    rows = eval_rows(Path(settings["dataset_dir"]), settings["dataset"])
    chat = ChatModel(engine_args(settings))

    async def answer(row: dict[str, Any]) -> str:
        responses = await chat.achat(row["messages"], images=row["images"] or None)
        return responses[0].response_text

    async def answer_all() -> list[str]:
        return await asyncio.gather(*(answer(row) for row in rows))

    texts = asyncio.run(answer_all())
    return [
        {"prompt": row["messages"][-1]["content"], "predict": text, "label": row["label"]}
        for row, text in zip(rows, texts)
    ]


def chat_predict(run: RunDir, stage: str, settings: dict[str, Any], target: Path) -> Path:
    """Run this module in its own process on `settings`; its output lands atomically at `target`."""
    config = run.config(stage).with_suffix(".json")
    atomic.write_json(config, settings | {"output": str(target)})
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", __name__, str(config)]
    run_logged(command, run.log(stage), desc=stage, unit="set", watch=lambda bar: None, failure=stage)
    return target


def main(argv: list[str]) -> None:
    settings = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    atomic.write_jsonl(Path(settings["output"]), predict_rows(settings))


if __name__ == "__main__":
    main(sys.argv[1:])


def generation_backend(study: Study) -> str:
    """The engine that generates eval answers: the spec's, or for `auto` vLLM where it can run."""
    if study.eval.backend != "auto":
        return study.eval.backend
    if study.eval.decoding == LF_DEFAULTS:
        return "huggingface"
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and study.hardware.device == "cuda" else "huggingface"


def chat_stage(
    study: Study,
    run: RunDir,
    model_path: str,
    template: str,
    stage: str,
    dataset: str,
    adapter: Path | None,
    target: Path,
    upstream: tuple[str, ...],
) -> Stage:
    """Greedy generation through LF's vLLM engine, with the same template and image limits as LF prediction."""
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
    return Stage(stage, command, digest, run.is_done(stage, digest) and target.is_file(), action)
