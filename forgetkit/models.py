"""Model registry: the short names users type, mapped to a weights location and LF chat template."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from forgetkit.digests import file_digest
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.knobs import shown


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
        """LLM layer count: the registry's, or `num_hidden_layers` in the model's config.json (a local folder's,
        the HF cache's, or fetched alone from the hub unless offline)."""
        if self.layers is not None:
            return self.layers
        data = self._config(fetch=True)
        count = data.get("num_hidden_layers") or data.get("text_config", {}).get("num_hidden_layers")
        if isinstance(count, int):
            return count
        raise ForgetkitError(
            f"cannot tell how many LLM layers {self.name} has (no num_hidden_layers in a config.json here, in the HF "
            f"cache or on the hub); download it (`hf download {self.path} config.json`) or name a local folder"
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

    def _config(self, fetch: bool = False) -> dict:
        """A local model's config.json, or a hub id's in the HF cache; for a hub id not cached yet, with `fetch` its
        config.json alone from the hub (unless offline), else empty."""
        folder = Path(self.path).expanduser()
        config = (folder if folder.is_dir() else cached_snapshot(self.path) or folder) / "config.json"
        if not config.is_file() and fetch and not folder.is_dir() and not hub_offline():
            config = _fetched_config(self.path) or config
        return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}


def _fetched_config(repo_id: str) -> Path | None:
    """Hub id `repo_id`'s config.json downloaded into the HF cache; None where the hub does not give it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "config.json", cache_dir=hub_cache()))
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError):
        return None


@dataclass(frozen=True)
class Family:
    """What every model of one family shares: LF's chat template for it, and the transformers class VLMEvalKit's
    stage, the tiny stand-in and (through LF's own loading) the logits stage load it as. Its vision tower /
    projector / LLM module groups are LF's `COMPOSITE_MODELS` entry for its `model_type` (`part_keys`): the
    names LF's freeze flags act on."""

    template: str
    hf_class: str

    @staticmethod
    def part_keys(model_type: str) -> dict[str, tuple[str, ...]]:
        """LF's module-name prefixes of each part (`vision_tower`, `projector`, `llm`) of a `model_type` model."""
        from llamafactory.model.model_utils.visual import COMPOSITE_MODELS

        composite = COMPOSITE_MODELS[model_type]
        return {
            "vision_tower": tuple(composite.vision_model_keys),
            "projector": tuple(composite.projector_keys),
            "llm": tuple(composite.language_model_keys),
        }


FAMILIES = {
    "qwen2_vl": Family("qwen2_vl", "Qwen2VLForConditionalGeneration"),
    "qwen2_5_vl": Family("qwen2_vl", "Qwen2_5_VLForConditionalGeneration"),
    "qwen3_vl": Family("qwen3_vl_nothink", "Qwen3VLForConditionalGeneration"),
    "llava": Family("llava", "LlavaForConditionalGeneration"),
    "internvl": Family("intern_vl", "InternVLForConditionalGeneration"),
}
"""Keyed by transformers' `model_type` in a model's config.json (the `kind` VLMEvalKit's stage names)."""


def family_of(spec: ModelSpec, purpose: str) -> str:
    """The FAMILIES key of `spec`'s model, or one line naming what `purpose` needs."""
    if spec.model_type in FAMILIES:
        return spec.model_type
    found = f"model type {spec.model_type!r}" if spec.model_type else "no model type (its config.json is not here)"
    raise ForgetkitError(
        f"{purpose} needs a model of a family forgetkit knows ({', '.join(FAMILIES)}); {spec.name} has {found}: "
        "use a registry model, or download the model first (`hf download ID`) so its config.json can be read"
    )


def _registered(name: str, hub_id: str, family: str, layers: int, vlmeval_entry: str) -> ModelSpec:
    return ModelSpec(name, hub_id, FAMILIES[family].template, layers, family, vlmeval_entry)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _registered("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", 28, "Qwen2-VL-2B-Instruct"),
        _registered("qwen2-vl-7b", "Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", 28, "Qwen2-VL-7B-Instruct"),
        _registered("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", 36, "Qwen2.5-VL-3B-Instruct"),
        _registered("qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 28, "Qwen2.5-VL-7B-Instruct"),
        _registered("qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct", "qwen3_vl", 28, "Qwen3-VL-2B-Instruct"),
        _registered("qwen3-vl-4b", "Qwen/Qwen3-VL-4B-Instruct", "qwen3_vl", 36, "Qwen3-VL-4B-Instruct"),
        _registered("qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl", 36, "Qwen3-VL-8B-Instruct"),
        _registered("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "llava", 32, "llava_v1.5_7b"),
        _registered("llava-1.5-13b", "llava-hf/llava-1.5-13b-hf", "llava", 40, "llava_v1.5_13b"),
        _registered("internvl3-1b", "OpenGVLab/InternVL3-1B-hf", "internvl", 24, "InternVL3-1B"),
        _registered("internvl3-2b", "OpenGVLab/InternVL3-2B-hf", "internvl", 28, "InternVL3-2B"),
        _registered("internvl3-8b", "OpenGVLab/InternVL3-8B-hf", "internvl", 28, "InternVL3-8B"),
    )
}
TINY = "tiny-qwen2.5-vl"
DEFAULT_MODEL = "qwen2.5-vl-3b"


def resolve_model(name_or_path: str, template: str | None = None) -> ModelSpec:
    """A registry name, `tiny-qwen2.5-vl` (built offline on first use), a local directory or a hub id.

    Anything not in the registry needs `template`, since LF cannot guess the chat format.
    """
    if name_or_path == TINY:
        from forgetkit.tiny_model import tiny_model_dir

        return _with_local_type(ModelSpec(TINY, str(tiny_model_dir()), template or "qwen2_vl"))
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        return replace(spec, template=template or spec.template)
    if template is None:
        known = ", ".join([*REGISTRY, TINY])
        raise ForgetkitError(
            f"unknown model {shown(name_or_path)}: use one of {known}, or give a local path / hub id with --template "
            "(LLaMA-Factory's chat template name, e.g. qwen2_vl or llava)"
        )
    if name_or_path.startswith((".", "/", "~")) and not Path(name_or_path).expanduser().is_dir():
        raise ForgetkitError(f"model directory {name_or_path} does not exist")
    return _with_local_type(ModelSpec(name_or_path, name_or_path, template))


def _with_local_type(spec: ModelSpec) -> ModelSpec:
    """`spec` with the model type its config.json names, fixed now: continual stages train from checkpoints
    of it that do not exist yet when the plan is made."""
    return replace(spec, model_type=spec._config().get("model_type"))


MODEL_FILES = (
    "*config.json", "*.safetensors", "*.safetensors.index.json", "*model*.bin", "*.bin.index.json",
    "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template*",
    "*.tiktoken", "*.py",
)  # fmt: skip
"""The files of a model folder that decide what it computes (config, weights, tokenizer, chat template, its own
code); not READMEs, trainer state or `training_args.bin`, which names the folder it was saved to."""
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_cache() -> Path:
    """The HF hub cache as `$HF_HUB_CACHE` or `$HF_HOME` name it now (huggingface_hub reads them once, at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether the hub may not be asked (`HF_HUB_OFFLINE`, or transformers' older `TRANSFORMERS_OFFLINE`)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or value.upper() in _TRUE


def cached_snapshot(repo_id: str) -> Path | None:
    """The HF cache's snapshot of hub id `repo_id` (the commit its `refs/main` names), complete or not; None when
    it is not cached or `repo_id` is no hub id. Never asks the hub."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=hub_cache(), local_files_only=True))
    except IncompleteSnapshotError as error:
        return Path(error.snapshot_path)
    except (HFValidationError, LocalEntryNotFoundError):
        return None


def local_model_dir(name_or_path: str | Path) -> Path:
    """The folder holding a model, for what forgetkit reads itself (config.json, weights) rather than through
    transformers: a local folder as it is, a hub id as its snapshot in the HF cache, downloaded there first
    unless offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return folder.resolve()
    repo_id, cache, offline = str(name_or_path), hub_cache(), hub_offline()
    unreachable = "the hub cannot be reached" + (" (offline: HF_HUB_OFFLINE)" if offline else "")
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=offline))
    except HFValidationError:
        raise ForgetkitError(
            f"model {shown(repo_id)} is neither a folder nor a hub id (owner/name); name an existing model folder"
        ) from None
    except IncompleteSnapshotError:
        raise ForgetkitError(
            f"model {repo_id} is only partly in the HF cache at {cache} and {unreachable}; "
            f"complete it with `hf download {repo_id}` or name a local folder"
        ) from None
    except LocalEntryNotFoundError:
        raise ForgetkitError(
            f"model {repo_id} is not in the HF cache at {cache} and {unreachable}; "
            f"download it with `hf download {repo_id}` or name a local folder"
        ) from None
    except RepositoryNotFoundError:
        raise ForgetkitError(
            f"model {repo_id} is not on the hub, or is gated or private; check the id, or `hf auth login` "
            "with an account that may read it"
        ) from None
    except HfHubHTTPError as error:
        reason = " ".join(str(error).split())[:200]
        raise ForgetkitError(
            f"downloading model {repo_id} into {cache} failed: {reason}; retry, or name a local folder"
        ) from None


def model_identity(name_or_path: str | Path) -> str:
    """What a stage computed from this model is keyed by, known without asking the hub: a local folder's content
    digest (its MODEL_FILES by name and sha256, wherever the folder lives and however its path is spelled), a
    cached hub id as `<id>@<snapshot commit>`, else the id as named."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.resolve().iterdir() if p.is_file() and _is_model_file(p.name))
        listing = {p.name: file_digest(p) for p in files}
        return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    snapshot = cached_snapshot(str(name_or_path))
    return f"{name_or_path}@{snapshot.name}" if snapshot else str(name_or_path)


def _is_model_file(name: str) -> bool:
    return not name.startswith(".") and any(fnmatch.fnmatch(name, pattern) for pattern in MODEL_FILES)


def check_checkpoint(model_path: Path, kind: str, adapter: Path | None) -> None:
    """Fail before VLMEvalKit's ~15 s import on a missing checkpoint, wrong kind or missing adapter."""
    if kind not in FAMILIES:
        raise ForgetkitError(f"unknown model kind {kind!r}; use one of {', '.join(FAMILIES)}")
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        raise ForgetkitError(f"{model_path} is not a model directory (no config.json); pass a saved checkpoint")
    found = read_json(config_file, dict, "pass a saved checkpoint").get("model_type")
    if found != kind:
        raise ForgetkitError(f"{model_path} holds a {found!r} model, not {kind!r}; pass kind to match")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise ForgetkitError(f"{adapter} is not a LoRA adapter (no adapter_config.json); pass the adapter directory")
