"""Model registry: the short names users type, mapped to a weights location and LF chat template."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from forgetkit.errors import ForgetkitError


@dataclass(frozen=True)
class ModelSpec:
    """`layers` (LLM decoder layers) lets freeze tuning name every layer; None = read from the model's config."""

    name: str
    path: str
    template: str
    layers: int | None = None

    def num_layers(self) -> int:
        """LLM layer count: the registry's, or `num_hidden_layers` in a local model's config.json."""
        if self.layers is not None:
            return self.layers
        config = Path(self.path).expanduser() / "config.json"
        if config.is_file():
            data = json.loads(config.read_text(encoding="utf-8"))
            count = data.get("num_hidden_layers") or data.get("text_config", {}).get("num_hidden_layers")
            if isinstance(count, int):
                return count
        raise ForgetkitError(
            f"cannot tell how many LLM layers {self.name} has (no num_hidden_layers in {config}); "
            "use a registry model or a local model directory"
        )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_vl", 36),
        ModelSpec("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_vl", 28),
        ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", 32),
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

        return ModelSpec(TINY, str(tiny_model_dir()), template or "qwen2_vl")
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        return ModelSpec(spec.name, spec.path, template or spec.template, spec.layers)
    if template is None:
        known = ", ".join([*REGISTRY, TINY])
        raise ForgetkitError(
            f"unknown model {name_or_path!r}: use one of {known}, or give a local path / hub id with --template "
            "(LLaMA-Factory's chat template name, e.g. qwen2_vl or llava)"
        )
    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise ForgetkitError(f"model directory {name_or_path} does not exist")
    return ModelSpec(name_or_path, name_or_path, template)
