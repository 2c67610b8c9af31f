"""Model registry: the short names users type, mapped to a weights location and LF chat template."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgetkit.errors import ForgetkitError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str
    template: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_vl"),
        ModelSpec("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_vl"),
        ModelSpec("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava"),
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
        return ModelSpec(spec.name, spec.path, template or spec.template)
    if template is None:
        known = ", ".join([*REGISTRY, TINY])
        raise ForgetkitError(
            f"unknown model {name_or_path!r}: use one of {known}, or give a local path / hub id with --template "
            "(LLaMA-Factory's chat template name, e.g. qwen2_vl or llava)"
        )
    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise ForgetkitError(f"model directory {name_or_path} does not exist")
    return ModelSpec(name_or_path, name_or_path, template)
