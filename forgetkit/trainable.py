"""Which parameters a LLaMA-Factory training config really trains, found by running LF's own loading code.

Freeze flags are easy to get backwards (the paper's released generator called a run "full-llm" while it
trained the vision tower and projector with the LLM frozen), and reading the flags cannot show what LF makes
of them: freeze tuning matches module names by substring, LoRA's `all` expands to whatever linear layers LF
finds, `patch_target_modules` drops frozen towers. So the config is parsed by `get_train_args` and a model is
loaded with `load_model(..., is_trainable=True)`, as LF's trainer does, and `requires_grad` is read off
every parameter.

The model loaded is a stand-in: the tiny offline model of the config's family (`tiny_model_dir(family=...)`),
built from that family's transformers config class, so its parameter names are the real model's and parts
and module kinds carry over. Its LLM has 2 layers; pass the real model's `num_layers` when
`freeze_trainable_layers` matters, and the stand-in gets that many (the extra ones randomly initialised, which
does not matter for `requires_grad`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from forgetkit.errors import ForgetkitError
from forgetkit.lf_quiet import quiet
from forgetkit.models import Family
from forgetkit.tiny_model import tiny_model_dir

if TYPE_CHECKING:
    import torch

PARTS = ("vision_tower", "projector", "llm")
"""A model's parts, each a group of LF's module names (`Family.part_keys`; Qwen2.5-VL's: `visual.patch_embed` +
`visual.blocks`, `visual.merger`, `language_model` + `lm_head`)."""

_ADAPTER_SEGMENTS = frozenset({"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"})
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class TrainableSet:
    """What trains after LF set the model up: parts, and inside the LLM, module kinds and layers.

    A module kind is the module path inside an LLM layer (`self_attn.q_proj`, `mlp.gate_proj`,
    `input_layernorm`) or outside the layers (`embed_tokens`, `norm`, `lm_head`); a LoRA adapter counts
    for the module it wraps. Parameter counts are the stand-in's, so compare them, not their size.
    """

    full_parts: frozenset[str]
    """Parts with a trainable parameter of their own (full or freeze tuning, LoRA's `additional_target`)."""
    lora_parts: frozenset[str]
    """Parts with trainable LoRA adapter weights."""
    full_modules: frozenset[str]
    """LLM module kinds whose own weights train, in at least one layer."""
    lora_modules: frozenset[str]
    """LLM module kinds that carry trainable LoRA adapters, in at least one layer."""
    llm_modules: frozenset[str]
    """Every LLM module kind of the model, trained or not."""
    layers: frozenset[int]
    """LLM layers holding at least one trainable parameter."""
    num_layers: int
    trainable: Mapping[str, int]
    """Trainable parameter count per part (adapters included); 0 for a frozen part."""
    total: Mapping[str, int]
    """All parameters per part (adapters included)."""

    @property
    def parts(self) -> frozenset[str]:
        """Parts that train at all, fully or through adapters."""
        return self.full_parts | self.lora_parts

    @property
    def frozen(self) -> frozenset[str]:
        return frozenset(PARTS) - self.parts

    def describe(self) -> str:
        """One line for error messages, e.g. `trains llm (full: all modules, all 2 layers); frozen: projector`."""
        trained = ", ".join(f"{part} ({self._how(part)})" for part in PARTS if part in self.parts)
        frozen = ", ".join(part for part in PARTS if part in self.frozen)
        return f"trains {trained or 'nothing'}" + (f"; frozen: {frozen}" if frozen else "")

    __str__ = describe

    def _how(self, part: str) -> str:
        if part != "llm":
            methods = " + ".join(
                m for m, parts in (("full", self.full_parts), ("lora", self.lora_parts)) if part in parts
            )
            partly = self.trainable[part] < self.total[part] and part not in self.lora_parts
            return methods + (f", {self.trainable[part]} of {self.total[part]} parameters" if partly else "")
        full = "all modules" if self.full_modules == self.llm_modules else ", ".join(sorted(self.full_modules))
        methods = [f"full: {full}"] if self.full_modules else []
        methods += [f"lora: {', '.join(sorted(self.lora_modules))}"] if self.lora_modules else []
        return "; ".join(methods) + (f"; {self._layer_text()}" if self.layers else "")

    def _layer_text(self) -> str:
        if len(self.layers) == self.num_layers:
            return f"all {self.num_layers} layers"
        runs: list[list[int]] = []
        for layer in sorted(self.layers):
            if runs and layer == runs[-1][-1] + 1:
                runs[-1].append(layer)
            else:
                runs.append([layer])
        spans = ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
        return f"layers {spans} of {self.num_layers}"


def trainable_parameters(
    config: Mapping[str, Any], num_layers: int | None = None, family: str = "qwen2_5_vl"
) -> TrainableSet:
    """Load the config's training setup with LF (on `family`'s tiny stand-in, on CPU) and report what trains.

    `config` is a training config as `yaml.safe_load` reads it; `family` its model's `model_type` (a FAMILIES
    key). The model path is replaced by the stand-in's, the GPU settings (bf16/fp16/pure_bf16, `deepspeed`) by
    CPU ones and `output_dir` by a temporary folder, so the same config that will run on the cluster is
    checked here without side effects. `num_layers`: the real model's LLM layer count, so
    `freeze_trainable_layers` selects the same layers as it will there. LF's refusals (unknown keys, a freeze
    module it cannot find) become `ForgetkitError`.
    """
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    with tempfile.TemporaryDirectory(prefix="forgetkit-trainable-") as scratch:
        model_dir = tiny_model_dir(family=family)
        if num_layers is not None:
            model_dir = _with_layers(model_dir, num_layers, Path(scratch) / "model")
        args = {key: value for key, value in config.items() if key != "deepspeed"}
        args.update(
            model_name_or_path=str(model_dir),
            output_dir=str(Path(scratch) / "output"),
            bf16=False,
            fp16=False,
            pure_bf16=False,
            use_cpu=True,
        )
        try:
            with quiet():
                model_args, _, _, finetuning_args, _ = get_train_args(args)
            with quiet():  # a second block: get_train_args switched transformers' logging to INFO
                tokenizer = load_tokenizer(model_args)["tokenizer"]
                model = load_model(tokenizer, model_args, finetuning_args, is_trainable=True)
        except (ValueError, TypeError) as err:
            raise ForgetkitError(f"LLaMA-Factory cannot set up the config: {err}") from None
        return _collect(model.named_parameters(), Family.part_keys(family))


def _with_layers(tiny: Path, num_layers: int, out: Path) -> Path:
    """The stand-in with `num_layers` LLM layers: the tiny model's files linked, its config.json edited."""
    if num_layers < 1:
        raise ForgetkitError(f"num_layers must be positive, got {num_layers}")
    out.mkdir()
    for file in tiny.iterdir():
        if file.name != "config.json":
            (out / file.name).symlink_to(file)
    config = json.loads((tiny / "config.json").read_text(encoding="utf-8"))
    text = config["text_config"]
    text["num_hidden_layers"] = num_layers
    if "layer_types" in text:
        text["layer_types"] = ["full_attention"] * num_layers
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@dataclass(frozen=True)
class _Place:
    part: str
    module: str | None
    """LLM module kind; None outside the LLM."""
    layer: int | None
    adapter: bool


def _place(name: str, part_keys: Mapping[str, tuple[str, ...]]) -> _Place | None:
    """Part, LLM module kind and layer of one parameter, from its name with PEFT's renaming folded back.

    PEFT puts `base_model.model.` in front, moves a wrapped weight to `<module>.base_layer.weight`, names
    adapters `<module>.lora_A.<adapter>.weight`, and keeps an `additional_target` module as a trainable
    `<module>.modules_to_save.<adapter>.…` beside a frozen `<module>.original_module.…` copy (None: it is not
    a parameter of the model being trained, only PEFT's backup of one). Parts follow LF's own keys for the
    family (`part_keys`), matched as whole name segments; an unknown name is an error, never a silent guess.
    """
    path: list[str] = []
    adapter = False
    segments = iter(name.removeprefix(_PEFT_PREFIX).split("."))
    for segment in segments:
        if segment in _ADAPTER_SEGMENTS:
            adapter = True
            break
        if segment == "original_module":
            return None
        if segment == "modules_to_save":
            next(segments)  # the adapter's name
        elif segment != "base_layer":
            path.append(segment)
    if not adapter:
        path.pop()  # weight / bias
    for part in ("projector", "vision_tower"):
        if any(_find(path, key) is not None for key in part_keys[part]):
            return _Place(part, None, None, adapter)
    for key in part_keys["llm"]:
        start = _find(path, key)
        if start is None:
            continue
        wanted = key.split(".")
        inner = path[start + len(wanted) :] or wanted[-1:]  # a module inside the LLM, or the key's own module
        if len(inner) > 2 and inner[0] == "layers" and inner[1].isdigit():
            return _Place("llm", ".".join(inner[2:]), int(inner[1]), adapter)
        return _Place("llm", ".".join(inner), None, adapter)
    raise ForgetkitError(f"cannot tell which part parameter {name} belongs to")


def _find(path: list[str], key: str) -> int | None:
    """Where LF's module key (`visual.merger`) starts in `path` as whole segments, if it does."""
    wanted = key.split(".")
    for start in range(len(path) - len(wanted) + 1):
        if path[start : start + len(wanted)] == wanted:
            return start
    return None


def _collect(
    parameters: Iterable[tuple[str, torch.nn.Parameter]], part_keys: Mapping[str, tuple[str, ...]]
) -> TrainableSet:
    trainable = dict.fromkeys(PARTS, 0)
    total = dict.fromkeys(PARTS, 0)
    full_parts: set[str] = set()
    lora_parts: set[str] = set()
    full_modules: set[str] = set()
    lora_modules: set[str] = set()
    llm_modules: set[str] = set()
    layers: set[int] = set()
    all_layers: set[int] = set()
    for name, param in parameters:
        place = _place(name, part_keys)
        if place is None:
            continue
        total[place.part] += param.numel()
        if place.module is not None:
            llm_modules.add(place.module)
        if place.layer is not None:
            all_layers.add(place.layer)
        if not param.requires_grad:
            continue
        trainable[place.part] += param.numel()
        (lora_parts if place.adapter else full_parts).add(place.part)
        if place.module is not None:
            (lora_modules if place.adapter else full_modules).add(place.module)
        if place.layer is not None:
            layers.add(place.layer)
    return TrainableSet(
        full_parts=frozenset(full_parts),
        lora_parts=frozenset(lora_parts),
        full_modules=frozenset(full_modules),
        lora_modules=frozenset(lora_modules),
        llm_modules=frozenset(llm_modules),
        layers=frozenset(layers),
        num_layers=len(all_layers),
        trainable=MappingProxyType(trainable),
        total=MappingProxyType(total),
    )
