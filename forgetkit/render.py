"""Recipes → LLaMA-Factory YAML through the Jinja templates in `templates/`, checked by LF itself.

Every template value goes through the `yaml` filter, so a path or dataset name holding `:`, a
newline or `{{` stays one scalar and cannot add keys. `trust_remote_code` is off unless a caller turns it
on: with it, transformers imports and runs the Python files a model folder or hub repo names in its
`auto_map`, so only a model whose code the user trusts should get it.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import ConfigDict

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import Count, Text
from forgetkit.lf_quiet import quiet
from forgetkit.models import ModelSpec
from forgetkit.recipes import Hardware, Recipe
from forgetkit.resources import bundled

DEEPSPEED = {"z2": "ds_z2_config.json", "z3": "ds_z3_config.json"}
GREEDY = "greedy"
LF_DEFAULTS = "lf-defaults"
DECODINGS = (GREEDY, LF_DEFAULTS)
"""How prediction decodes: greedy, or LF's own generation defaults (what the authors' eval configs left on)."""
MAX_NEW_TOKENS = 16
"""How many tokens greedy prediction (LF and VLMEvalKit) may write: a letter or a short answer fits."""
EVAL_BATCH_SIZE = 8
"""Rows per forward pass when a checkpoint is evaluated (prediction, letter logits, the drift probe)."""
SEED = 42
"""A study's seed when its spec gives none: training's data order and init, LF's sampling under lf-defaults."""


@dataclass(frozen=True)
class DataSpec:
    """Where LF finds the datasets (a folder with `dataset_info.json`) and how inputs are sized.

    `image_max_pixels` 262144 (512x512) and `cutoff_len` 16384 are what the authors' released configs
    use (train and eval alike). `mix_probs`, one per training dataset, switches on LF's `interleave_over`
    mixing (`forgetkit.mixing`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    dataset_dir: Text = "data"
    train: tuple[Text, ...] = ("imagenet_vqa_train",)
    cutoff_len: Count = 16384
    image_max_pixels: Count = 262144
    mix_probs: tuple[Text, ...] = ()

    def __post_init__(self) -> None:
        if self.mix_probs and len(self.mix_probs) != len(self.train):
            raise ForgetkitError(f"{len(self.mix_probs)} mixing probabilities for {len(self.train)} datasets")


def to_yaml(value: Any) -> str:
    """One YAML flow scalar: strings double-quoted and escaped, floats in a form YAML 1.1 reads as float."""
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(
        value,
        default_style='"' if isinstance(value, str) else None,
        default_flow_style=True,
        width=2**31 - 1,
        allow_unicode=True,
    )
    return text.removesuffix("\n...\n").strip()


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(bundled("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["yaml"] = to_yaml
    return env


def _render(template_name: str, **context: Any) -> str:
    return environment().get_template(template_name).render(**context)


def render_train(
    model: ModelSpec,
    recipe: Recipe,
    data: DataSpec,
    output_dir: str | Path,
    hardware: Hardware,
    seed: int = SEED,
    logging_steps: int = 10,
    deepspeed: str | None = None,
    trust_remote_code: bool = False,
    report_to: str | list[str] = "none",
    run_name: str | None = None,
) -> str:
    """LF training YAML; `deepspeed` is `z2`, `z3` (the ZeRO configs shipped in templates/) or a JSON path;
    `report_to` is LF's (none, or tracker names) and `run_name` the tracked run's name."""
    per_device, accumulation = hardware.split(recipe)
    return _render(
        "train.yaml.j2",
        model=model,
        recipe=recipe,
        data=data,
        hardware=hardware,
        output_dir=str(output_dir),
        per_device_batch_size=per_device,
        accumulation=accumulation,
        seed=seed,
        logging_steps=logging_steps,
        layers=model.num_layers() if recipe.finetuning_type == "freeze" else None,
        additional_target=model.projector_modules() if recipe.projector_beside_lora else (),
        deepspeed=deepspeed_config(deepspeed) if deepspeed else None,
        trust_remote_code=trust_remote_code,
        report_to=report_to,
        run_name=run_name,
    )


def deepspeed_config(name_or_path: str) -> str:
    """`z2`/`z3` → the shipped ZeRO-2/3 JSON; anything else must be an existing DeepSpeed JSON."""
    if name_or_path in DEEPSPEED:
        return str(bundled(f"templates/deepspeed/{DEEPSPEED[name_or_path]}"))
    if not Path(name_or_path).is_file():
        raise ForgetkitError(f"--deepspeed {name_or_path}: use z2, z3 or the path of a DeepSpeed JSON config")
    return str(Path(name_or_path).resolve())


def render_predict(
    model_path: str | Path,
    template: str,
    dataset: str,
    data: DataSpec,
    output_dir: str | Path,
    hardware: Hardware,
    batch_size: int = EVAL_BATCH_SIZE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    adapter: str | Path | None = None,
    decoding: str = GREEDY,
    seed: int = SEED,
    trust_remote_code: bool = False,
) -> str:
    """Prediction, greedy by default; the image pixel limit is the training one, so eval sees what training saw.

    `adapter` evaluates a LoRA checkpoint on top of `model_path` without merging it. `decoding` lf-defaults
    writes no generation keys (LF's sampling defaults, `max_new_tokens` unused), seeded by `seed`.
    """
    return _render(
        "predict.yaml.j2",
        model_path=str(model_path),
        template=template,
        dataset=dataset,
        data=data,
        hardware=hardware,
        output_dir=str(output_dir),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        adapter=str(adapter) if adapter is not None else None,
        lf_defaults=decoding == LF_DEFAULTS,
        seed=seed,
        trust_remote_code=trust_remote_code,
    )


def render_export(
    model_path: str | Path,
    adapter: str | Path,
    template: str,
    export_dir: str | Path,
    trust_remote_code: bool = False,
) -> str:
    """`llamafactory-cli export`: merge a LoRA adapter into its base model (IncLoRA's step between tasks)."""
    return _render(
        "export.yaml.j2",
        model_path=str(model_path),
        adapter=str(adapter),
        template=template,
        export_dir=str(export_dir),
        trust_remote_code=trust_remote_code,
    )


def validate(text: str) -> dict[str, Any]:
    """Parse the YAML and run it through LF's own argument parser; raise LF's message if it refuses.

    Training and prediction configs go through `get_train_args`, export configs (`export_dir`) through
    `get_infer_args`, as `llamafactory-cli` does. LF's parser cannot see a GPU here, so a bf16 config is
    checked with `use_cpu` set on a copy.
    """
    config = yaml.safe_load(text)
    if not isinstance(config, dict):
        raise ForgetkitError("rendered config is not a YAML mapping")
    checked = dict(config)
    if checked.get("deepspeed"):
        _check_deepspeed_json(checked["deepspeed"])
        if importlib.util.find_spec("deepspeed") is None:
            del checked["deepspeed"]  # LF's parser insists on the package; the cluster has it, this machine may not
    if checked.get("bf16") or checked.get("fp16"):
        import torch

        if not torch.cuda.is_available():
            checked["use_cpu"] = True
    from llamafactory.hparams import get_infer_args, get_train_args

    with quiet():
        try:
            if "export_dir" in checked:
                get_infer_args(checked)
            else:
                get_train_args(checked)
        except (ValueError, TypeError) as err:
            raise ForgetkitError(f"LLaMA-Factory rejects the config: {err}") from None
    return config


def _check_deepspeed_json(path: str) -> None:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ForgetkitError(f"DeepSpeed config {path} is unreadable ({err}); pass a valid JSON file") from None
    if "zero_optimization" not in config:
        raise ForgetkitError(f"DeepSpeed config {path} has no zero_optimization section")
