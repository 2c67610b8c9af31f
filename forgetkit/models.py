"""Model registry: the short names users type, mapped to a weights location and LF chat template."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from forgetkit.errors import ForgetkitError


@dataclass(frozen=True)
class ModelSpec:
    """`layers` (LLM decoder layers) lets freeze tuning name every layer; None = read from the model's config."""

    name: str
    path: str
    template: str
    layers: int | None = None
    model_type: str | None = None
    """transformers' `model_type` (e.g. qwen2_5_vl): the registry's, or a local model's config.json's."""
    vlmeval_entry: str | None = None
    """The model's entry in VLMEvalKit's `vlmeval/config.py`, whose image limits its benchmarks run with."""

    def num_layers(self) -> int:
        """LLM layer count: the registry's, or `num_hidden_layers` in a local model's config.json."""
        if self.layers is not None:
            return self.layers
        data = self._config()
        count = data.get("num_hidden_layers") or data.get("text_config", {}).get("num_hidden_layers")
        if isinstance(count, int):
            return count
        raise ForgetkitError(
            f"cannot tell how many LLM layers {self.name} has (no num_hidden_layers in its config.json); "
            "use a registry model or a local model directory"
        )

    def projector_modules(self) -> tuple[str, ...]:
        """The multimodal projector's module names, as LLaMA-Factory keys them for this model type
        (`visual.merger` for Qwen2.5-VL, `multi_modal_projector` for LLaVA): what LoRA's
        `additional_target` names to train the projector in full."""
        from llamafactory.model.model_utils.visual import COMPOSITE_MODELS

        model_type = self.model_type
        if model_type not in COMPOSITE_MODELS:
            raise ForgetkitError(
                f"LLaMA-Factory knows no multimodal projector for {self.name} (model_type {model_type!r}); "
                "use a registry model or a local directory of a model LF supports"
            )
        return tuple(COMPOSITE_MODELS[model_type].projector_keys)

    def _config(self) -> dict:
        """A local model's config.json; empty for a hub id."""
        config = Path(self.path).expanduser() / "config.json"
        return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_vl", 36, "qwen2_5_vl", "Qwen2.5-VL-3B-Instruct"
        ),
        ModelSpec(
            "qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_vl", 28, "qwen2_5_vl", "Qwen2.5-VL-7B-Instruct"
        ),
        ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", 32, "llava", "llava_v1.5_7b"),
    )
}
TINY = "tiny-qwen2.5-vl"
DEFAULT_MODEL = "qwen2.5-vl-3b"


def resolve_model(name_or_path: str, template: str | None = None) -> ModelSpec:
    """A registry name, `tiny-qwen2.5-vl` (built offline on first use), a local directory or a hub id.

    Anything not in the registry needs `template`, since LF cannot guess the chat format.
    """
    if name_or_path == TINY:
        from forgetkit.testing.tiny_model import tiny_model_dir

        return _with_local_type(ModelSpec(TINY, str(tiny_model_dir()), template or "qwen2_vl"))
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        return replace(spec, template=template or spec.template)
    if template is None:
        known = ", ".join([*REGISTRY, TINY])
        raise ForgetkitError(
            f"unknown model {name_or_path!r}: use one of {known}, or give a local path / hub id with --template "
            "(LLaMA-Factory's chat template name, e.g. qwen2_vl or llava)"
        )
    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise ForgetkitError(f"model directory {name_or_path} does not exist")
    return _with_local_type(ModelSpec(name_or_path, name_or_path, template))


def _with_local_type(spec: ModelSpec) -> ModelSpec:
    """`spec` with the model type its config.json names, fixed now: continual stages train from checkpoints
    of it that do not exist yet when the plan is made."""
    return replace(spec, model_type=spec._config().get("model_type"))
