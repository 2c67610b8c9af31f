"""What a fine-tuning recipe is: which part trains, how, and with which schedule (paper §2.2, App. C).

Every knob is declared here once; the CLI and study specs fill these dataclasses and the Jinja
templates read them. Hardware (device count, precision) is kept apart so one recipe means the
same optimisation on one GPU, eight, or a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from forgetkit.errors import ForgetkitError


class Part(str, Enum):
    """The trainable part; everything else is frozen (LF's `freeze_*` flags)."""

    llm = "llm"
    vision = "vision"
    projector = "projector"
    llm_projector = "llm+projector"
    all = "all"

    @property
    def freeze_vision_tower(self) -> bool:
        return self not in (Part.vision, Part.all)

    @property
    def freeze_multi_modal_projector(self) -> bool:
        return self not in (Part.projector, Part.llm_projector, Part.all)

    @property
    def freeze_language_model(self) -> bool:
        return self not in (Part.llm, Part.llm_projector, Part.all)


class Scheduler(str, Enum):
    cosine = "cosine"
    linear = "linear"
    constant_with_warmup = "constant_with_warmup"


@dataclass(frozen=True)
class Recipe:
    """The paper's default (App. C.1 c): LLM full fine-tuning, lr 1e-6, batch 16, cosine, warmup 0.1."""

    part: Part = Part.llm
    lr: float = 1e-6
    batch_size: int = 16
    steps: int = 80000
    scheduler: Scheduler = Scheduler.cosine
    warmup: float = 0.1
    save_steps: int = 2000
    optim: str = "adamw_torch"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ForgetkitError(f"learning rate must be positive, got {self.lr}")
        if self.batch_size < 1 or self.steps < 1 or self.save_steps < 1:
            raise ForgetkitError("batch size, steps and save steps must be positive integers")
        if not 0 <= self.warmup < 1:
            raise ForgetkitError(f"warmup is a ratio of the steps, in [0, 1); got {self.warmup}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> Recipe:
        """Build from a study spec's mapping, naming the spec and key on a bad entry."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ForgetkitError(f"{where}: unknown recipe key(s) {unknown}; known: {sorted(known)}")
        try:
            converted = {key: _CASTS[key](value) for key, value in values.items()}
            return cls(**converted)
        except (TypeError, ValueError, ForgetkitError) as err:
            raise ForgetkitError(f"{where}: {err}") from None


@dataclass(frozen=True)
class Hardware:
    """Where a recipe runs. The global batch is split as per-device batch x accumulation x devices."""

    devices: int = 1
    per_device_batch_size: int = 4
    bf16: bool = True
    dataloader_workers: int = 4
    preprocessing_workers: int = 8

    def split(self, recipe: Recipe) -> tuple[int, int]:
        """(per-device batch, gradient accumulation) that multiply out to the recipe's global batch."""
        per_device = max(1, min(self.per_device_batch_size, recipe.batch_size // self.devices))
        per_step = per_device * self.devices
        if recipe.batch_size % per_step:
            raise ForgetkitError(
                f"global batch {recipe.batch_size} is not a multiple of per-device batch {per_device} x "
                f"{self.devices} device(s); change --batch-size or --gpus"
            )
        return per_device, recipe.batch_size // per_step


_CASTS = {
    "part": Part,
    "lr": float,
    "batch_size": int,
    "steps": int,
    "scheduler": Scheduler,
    "warmup": float,
    "save_steps": int,
    "optim": str,
}
"""How a spec's YAML value becomes each Recipe field (PyYAML reads `1e-6` as a string)."""

CPU = Hardware(devices=1, per_device_batch_size=4, bf16=False, dataloader_workers=0, preprocessing_workers=1)
