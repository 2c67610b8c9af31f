"""What a fine-tuning recipe is: which part trains, how, and with which schedule (paper §2.2, App. C).

Every knob is declared here once; the CLI and study specs fill these dataclasses and the Jinja
templates read them. Hardware (device count, precision) is kept apart so one recipe means the
same optimisation on one GPU, eight, or a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from pydantic import ConfigDict

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import Count, Flag, Fraction, Rate, Size, Text, checked, knob, shown


class Part(str, Enum):
    """The trainable part; everything else is frozen (LF's `freeze_*` flags).

    `attn` trains only the LLM's self-attention projections (q/k/v/o) of every layer, with LF's freeze
    tuning. `mlp-gate-up` means the LLM's MLP gate and up projections only (down frozen); LF's freeze
    tuning cannot select parts of the MLP, so it is LoRA on `gate_proj,up_proj` (`--method lora`).
    `llm+projector` with LoRA is the authors' IncLoRA: LoRA on the LLM's linears, the projector trained
    in full beside it (LF's `additional_target`).
    """

    llm = "llm"
    vision = "vision"
    projector = "projector"
    llm_projector = "llm+projector"
    all = "all"
    attn = "attn"
    mlp_gate_up = "mlp-gate-up"

    @property
    def trains(self) -> frozenset[str]:
        return PARTS[self].trains

    @property
    def freeze_vision_tower(self) -> bool:
        return "vision" not in self.trains

    @property
    def freeze_multi_modal_projector(self) -> bool:
        return "projector" not in self.trains

    @property
    def freeze_language_model(self) -> bool:
        return "llm" not in self.trains

    @property
    def freeze_trainable_modules(self) -> str | None:
        """LF freeze tuning's module selector inside each LLM layer, for parts that need it."""
        return PARTS[self].freeze_trainable_modules

    @property
    def lora_target(self) -> str | None:
        """LF `lora_target` for LoRA on this part; None where LoRA does not apply."""
        return PARTS[self].lora_target


@dataclass(frozen=True)
class PartSpec:
    """What a part trains, in LF's terms."""

    trains: frozenset[str]
    """Of the model's three parts: `vision` (tower), `projector`, `llm`."""
    freeze_trainable_modules: str | None = None
    lora_target: str | None = None


PARTS = {
    Part.llm: PartSpec(frozenset({"llm"}), lora_target="all"),
    Part.vision: PartSpec(frozenset({"vision"})),
    Part.projector: PartSpec(frozenset({"projector"})),
    Part.llm_projector: PartSpec(frozenset({"llm", "projector"}), lora_target="all"),
    Part.all: PartSpec(frozenset({"vision", "projector", "llm"})),
    Part.attn: PartSpec(frozenset({"llm"}), "self_attn", "q_proj,k_proj,v_proj,o_proj"),
    Part.mlp_gate_up: PartSpec(frozenset({"llm"}), lora_target="gate_proj,up_proj"),
}
"""Every part: one row says what it trains, its freeze-tuning selector and its LoRA targets."""


class Method(str, Enum):
    full = "full"
    lora = "lora"


class Scheduler(str, Enum):
    cosine = "cosine"
    linear = "linear"
    constant_with_warmup = "constant_with_warmup"


@dataclass(frozen=True)
class Recipe:
    """The paper's default (App. C.1 c): LLM full fine-tuning, lr 1e-6, batch 16, cosine, warmup 0.1.

    Length is `steps` or `epochs` (App. C.4 counts epochs per task), never both. Each field's type is its
    check (`forgetkit.knobs`), applied to every recipe a spec or the CLI gives (`updated`).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    part: Part = knob(
        Part.llm,
        "Trainable part, the rest frozen. attn = LLM self-attention q/k/v/o only (LF freeze tuning); "
        "mlp-gate-up = LLM MLP gate+up only, as LoRA on gate_proj,up_proj, which needs --method lora.",
    )
    method: Method = knob(Method.full, "full or lora.")
    lr: Rate = knob(1e-6, "Peak learning rate.")
    batch_size: Count = knob(16, "Global batch size.")
    steps: Count | None = knob(80000, "Optimizer steps.")
    epochs: Rate | None = knob(None, "Epochs instead of steps.")
    scheduler: Scheduler = knob(Scheduler.cosine, "Learning-rate schedule.")
    warmup: Fraction = knob(0.1, "Warmup as a ratio of the steps.")
    save_steps: Count = knob(2000, "Save a checkpoint every this many steps.")
    optim: Text = knob("adamw_torch", "Optimizer, as LF's `optim` names it.")
    lora_rank: Count = knob(8, "LoRA rank.")
    lora_target: Text | None = knob(None, "LoRA modules, e.g. q_proj,v_proj (default: what --part implies).")

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ForgetkitError("give the training length as steps or as epochs, not both and not neither")
        if self.method is Method.lora and self.part.lora_target is None:
            raise ForgetkitError(
                "LoRA applies to the LLM's linear layers (--part llm, llm+projector, attn or mlp-gate-up), "
                f"not --part {self.part.value}"
            )
        if self.part is Part.mlp_gate_up and self.method is not Method.lora:
            raise ForgetkitError(
                "LLaMA-Factory's freeze tuning cannot train the MLP's gate and up projections without the down "
                "projection; --part mlp-gate-up needs --method lora (LoRA on gate_proj,up_proj)"
            )
        if self.lora_target is not None and self.method is not Method.lora:
            raise ForgetkitError("--lora-target needs --method lora")

    @property
    def finetuning_type(self) -> str:
        """LF's `finetuning_type`: `freeze` selects sub-modules (attn), `full` uses the freeze_* flags."""
        if self.method is Method.lora:
            return "lora"
        return "freeze" if self.part is Part.attn else "full"

    @property
    def lora_targets(self) -> str | None:
        return (self.lora_target or self.part.lora_target) if self.method is Method.lora else None

    @property
    def projector_beside_lora(self) -> bool:
        """LoRA whose part includes the projector: the projector trains in full as LF's `additional_target`."""
        return self.method is Method.lora and not self.part.freeze_multi_modal_projector

    @property
    def freeze_multi_modal_projector(self) -> bool:
        """LF's flag; set under LoRA even when the projector trains, so `lora_target: all` puts no adapter on
        it (the authors' IncLoRA configs leave it at LF's default, true, beside `additional_target`)."""
        return self.part.freeze_multi_modal_projector or self.method is Method.lora

    @property
    def label(self) -> str:
        """Short name for output folders and tables, e.g. `llm-full-1e-06`."""
        return f"{self.part.value.replace('+', '-')}-{self.method.value}-{self.lr:g}"

    def updated(self, values: dict[str, Any], where: str) -> Recipe:
        """This recipe with `values` (YAML or Python values: `"1e-6"`, `"llm"`) on top; a given length, steps or
        epochs, replaces the other. Errors name `where` and the key."""
        known = {f.name for f in fields(self)}
        unknown = sorted(map(str, set(values) - known))
        if unknown:
            raise ForgetkitError(f"{where}: unknown recipe key(s) {shown(unknown)}; known: {sorted(known)}")
        changes = dict(values)
        if "steps" in changes:
            changes.setdefault("epochs", None)
        if "epochs" in changes:
            changes.setdefault("steps", None)
        return checked(Recipe, {f.name: getattr(self, f.name) for f in fields(self)} | changes, where)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> Recipe:
        """Build from a study spec's mapping on top of the paper's default, naming the spec and key on a bad entry."""
        return cls().updated(values, where)


@dataclass(frozen=True)
class Hardware:
    """Where a recipe runs. The global batch is split as per-device batch x accumulation x devices x nodes."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    devices: Count = 1
    """GPUs per node."""
    nodes: Count = 1
    """Nodes one training spans (under Slurm: one job with `--nodes`, LF's launcher on each)."""
    deepspeed: Text | None = None
    """DeepSpeed ZeRO for training: z2, z3 (the configs in templates/deepspeed/) or a JSON path."""
    per_device_batch_size: Count = 4
    bf16: Flag = True
    dataloader_workers: Size = 4
    preprocessing_workers: Count = 8
    device: Text = "cuda"
    """Where forgetkit's in-process evaluators (VLMEvalKit model, logits scoring) put the model."""

    def __post_init__(self) -> None:
        if self.device not in ("cuda", "cpu"):
            raise ForgetkitError(f"hardware device {shown(self.device)} unknown; use cuda or cpu")
        if self.devices < 1 or self.per_device_batch_size < 1:
            raise ForgetkitError(
                f"hardware needs at least 1 device and a per-device batch of at least 1, got devices {self.devices}, "
                f"per_device_batch_size {self.per_device_batch_size}"
            )
        if self.dataloader_workers < 0 or self.preprocessing_workers < 1:
            raise ForgetkitError("dataloader_workers must be 0 or more and preprocessing_workers 1 or more")

    def split(self, recipe: Recipe) -> tuple[int, int]:
        """(per-device batch, gradient accumulation) that multiply out to the recipe's global batch."""
        devices = self.devices * self.nodes
        per_device = max(1, min(self.per_device_batch_size, recipe.batch_size // devices))
        per_step = per_device * devices
        if recipe.batch_size % per_step:
            raise ForgetkitError(
                f"global batch {recipe.batch_size} is not a multiple of per-device batch {per_device} x "
                f"{devices} device(s); change --batch-size or --gpus"
            )
        return per_device, recipe.batch_size // per_step


CPU = Hardware(
    devices=1, per_device_batch_size=4, bf16=False, dataloader_workers=0, preprocessing_workers=1, device="cpu"
)
