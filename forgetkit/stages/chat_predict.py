"""Prediction through LLaMA-Factory's inference engines (`llamafactory.chat.ChatModel`): its vLLM engine
on a GPU, the same code with its HF engine anywhere else; `forgetkit.stages.eval_worker` drives it.

`llamafactory-cli train` with `do_predict` generates with HF only; LF's vLLM batch script is not in
its wheel. ChatModel with `infer_backend: vllm` is LF's own vLLM path: its template, multimodal
plugin and image pixel limits, so prompts match LF prediction. Rows are sent a chunk at a time and
vLLM batches them. Decoding is greedy (`temperature: 0`, which both engines read as no sampling; LF's
vLLM defaults sample at 0.95). Rows are LF-shaped `generated_predictions.jsonl` rows: prompt, predict, label.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit.errors import ForgetkitError
from forgetkit.exporters import dataset_entry
from forgetkit.jsonfile import read_json
from forgetkit.render import LF_DEFAULTS, DataSpec

if TYPE_CHECKING:
    from forgetkit.spec import Study

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
    if settings["backend"] == "vllm":
        args["vllm_config"] = {"tensor_parallel_size": 1}  # one engine per visible GPU; LF's default spans them all
    if settings.get("adapter"):
        args |= {"adapter_name_or_path": settings["adapter"], "finetuning_type": "lora"}
        args["vllm_max_lora_rank"] = vllm_lora_rank(Path(settings["adapter"]))
    return args


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The `max_lora_rank` values vLLM's engine accepts (LF's default is 32, which refuses a rank-64 adapter)."""


def vllm_lora_rank(adapter: Path) -> int:
    """The smallest rank vLLM accepts that holds the adapter's own (`r` in its adapter_config.json)."""
    config = adapter / "adapter_config.json"
    rank = read_json(config, dict, "pass a PEFT LoRA adapter folder").get("r") if config.is_file() else None
    if not isinstance(rank, int):
        return VLLM_LORA_RANKS[2]
    return next((allowed for allowed in VLLM_LORA_RANKS if allowed >= rank), rank)


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


def generation_backend(study: Study) -> str:
    """The engine that generates eval answers: the spec's, or for `auto` vLLM where it can run."""
    if study.eval.backend != "auto":
        return study.eval.backend
    if study.eval.decoding == LF_DEFAULTS:
        return "huggingface"
    has_vllm = importlib.util.find_spec("vllm") is not None
    return "vllm" if has_vllm and study.hardware.device == "cuda" else "huggingface"


def chat_settings(
    data: DataSpec,
    max_new_tokens: int,
    trust_remote_code: bool,
    model_path: str,
    template: str,
    dataset: str,
    adapter: Path | None,
) -> dict[str, Any]:
    """What LF's engine needs to answer `dataset` as LF prediction would: model, template, image limits, lengths."""
    return {
        "backend": "vllm",
        "model": model_path,
        "adapter": str(adapter) if adapter else None,
        "template": template,
        "dataset_dir": data.dataset_dir,
        "dataset": dataset,
        "image_max_pixels": data.image_max_pixels,
        "cutoff_len": data.cutoff_len,
        "max_new_tokens": max_new_tokens,
        "trust_remote_code": trust_remote_code,
    }
