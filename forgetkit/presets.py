"""Every recipe of both papers as a named preset: one row each (PROTOCOL.md §3, paper App. C).

A preset is a `Recipe` plus what the paper pairs it with: the model it was run on, a data-mixing
ratio (Fig. 4) or per-task epochs (Table 3, MLLM-CL). Options given next to `--preset` override it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import shown
from forgetkit.protocol import mllm_cl_task
from forgetkit.recipes import Method, Part, Recipe, Scheduler

MLLM_CL_EPOCHS = {"rs": 1.0, "med": 3.0, "ad": 1.0, "sci": 2.0, "fin": 1.0}
"""App. C.4: epochs per MLLM-CL task."""


@dataclass(frozen=True)
class Preset:
    name: str
    recipe: Recipe
    source: str
    note: str = ""
    model: str | None = None
    mix_ratio: float | None = None
    epochs_by_task: Mapping[str, float] = field(default_factory=dict)

    def epochs_for(self, datasets: tuple[str, ...]) -> float | None:
        """Table 3's epochs for an MLLM-CL dataset (`mllmcl_<task>_train...`); None when not per task."""
        if not self.epochs_by_task:
            return None
        tasks = {task for task in map(mllm_cl_task, datasets) if task is not None}
        if len(tasks) != 1 or next(iter(tasks)) not in self.epochs_by_task:
            raise ForgetkitError(
                f"preset {self.name} sets epochs per MLLM-CL task ({_epochs_text(self.epochs_by_task)}); "
                "pass --dataset mllmcl_<task>_train (as build-data mllm-cl names it) or --epochs N"
            )
        return self.epochs_by_task[tasks.pop()]


def _full(part: Part, lr: float, **changes) -> Recipe:
    return Recipe(part=part, lr=lr, **changes)


def _tune_parts(part: Part, method: Method) -> Recipe:
    """arXiv 2510.08564's part-wise runs (LMM_CL `scripts/all_experiments/tune_parts/*.sh`): lr 5e-6, global
    batch 32, cosine, warmup 0.03, one epoch per task."""
    return Recipe(part=part, method=method, lr=5e-6, batch_size=32, steps=None, epochs=1.0, warmup=0.03)


def _table3(method: Method, lr: float, batch: int, **changes) -> Recipe:
    """The LLM and the projector train, as in the authors' `config_generation/multiple-task/mllm_cl_*.py`
    (IncLoRA: LoRA on the LLM, the projector in full beside it; SeqFull: both in full)."""
    return Recipe(part=Part.llm_projector, method=method, lr=lr, batch_size=batch, steps=None, epochs=1.0, **changes)


def _mllm_cl(name: str, recipe: Recipe, table: str, note: str) -> Preset:
    """Table 3 rows: LLaVA-1.5-7B on MLLM-CL, epochs per task; replay rows train on mllmcl_<task>_train_replay20."""
    return Preset(name, recipe, f"App. C.4 {table}", note, model="llava-1.5-7b", epochs_by_task=MLLM_CL_EPOCHS)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("fig2-a", Recipe(method=Method.lora, lr=1e-4, batch_size=32, steps=40000), "App. C.1 (a)"),
        Preset("fig2-b", _full(Part.llm, 1e-5), "App. C.1 (b)"),
        Preset("fig2-c", _full(Part.llm, 1e-6), "App. C.1 (c)", "the paper's default"),
        Preset("fig2-d", _full(Part.vision, 1e-5), "App. C.1 (d)"),
        Preset("fig2-e", _full(Part.vision, 1e-6), "App. C.1 (e)"),
        Preset("fig2-f", _full(Part.projector, 1e-5), "App. C.1 (f)"),
        Preset("fig2-g", _full(Part.projector, 1e-6), "App. C.1 (g)"),
        Preset("table2-a", _full(Part.llm, 1e-6), "App. C.2 (a)", "same for 3B, 7B and LLaVA-1.5-7B"),
        Preset("table2-b", _full(Part.llm, 1e-6, steps=20000), "App. C.2 (b)", "rare domains (BSCCM, PitVis)"),
        Preset(
            "table2-c",
            _full(Part.llm, 1e-6, steps=2000, scheduler=Scheduler.linear, save_steps=200),
            "App. C.2 (c)",
            "0.25 % and 2.5 % of the data; warmup 200 steps",
        ),
        Preset(
            "table2-d",
            _full(Part.llm, 1e-6, scheduler=Scheduler.linear, warmup=0.0025),
            "App. C.2 (d)",
            "25 % and 100 % of the data; warmup 200 steps",
        ),
        Preset(
            "fig4",
            _full(Part.llm, 1e-6),
            "App. C.3",
            "data-hybrid: --dataset imagenet_vqa_train,OTHER mixed at ratio 0.5 (interleave_over)",
            mix_ratio=0.5,
        ),
        _mllm_cl("table3-a", _table3(Method.lora, 8e-5, 64), "(a)", "IncLoRA r=8, no replay"),
        _mllm_cl(
            "table3-b",
            _table3(Method.lora, 8e-5, 64, lora_rank=16),
            "(b)",
            "IncLoRA r=16, replay: --dataset mllmcl_<task>_train_replay20",
        ),
        _mllm_cl("table3-c", _table3(Method.full, 1e-6, 16), "(c)", "SeqFull, no replay"),
        _mllm_cl(
            "table3-d", _table3(Method.full, 1e-6, 16), "(d)", "SeqFull, replay: --dataset mllmcl_<task>_train_replay20"
        ),
        Preset(
            "attn",
            _tune_parts(Part.attn, Method.full),
            "arXiv 2510.08564 (LMM_CL tune_parts/sa_proj.sh)",
            "LLM self-attention q/k/v/o only (LF freeze tuning, every layer)",
        ),
        Preset(
            "mlp-gate-up",
            _tune_parts(Part.mlp_gate_up, Method.lora),
            "arXiv 2510.08564 (LMM_CL tune_parts/mlp_gate_up.sh)",
            "LLM MLP gate+up only; the script trains them fully, which LF's freeze tuning cannot without down, "
            "so LoRA on gate_proj,up_proj at the script's settings (LoRA usually wants a higher --lr)",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ForgetkitError(f"unknown preset {shown(name)}; choose one of: {', '.join(PRESETS)}") from None


def preset_table() -> str:
    """The preset table `render-config --list-presets` prints."""
    header = ("preset", "trains", "method", "lr", "batch", "length", "schedule", "warmup", "source", "note")
    rows = [header]
    for preset in PRESETS.values():
        recipe = preset.recipe
        method = recipe.method.value + (f" r={recipe.lora_rank}" if recipe.method is Method.lora else "")
        if preset.epochs_by_task:
            length = f"epochs {_epochs_text(preset.epochs_by_task)}"
        elif recipe.steps is None:
            length = f"{recipe.epochs:g} epoch(s)"
        else:
            length = f"{recipe.steps} steps"
        model = f"{preset.model}; " if preset.model else ""
        rows.append(
            (
                preset.name,
                recipe.part.value,
                method,
                f"{recipe.lr:.0e}",
                str(recipe.batch_size),
                length,
                recipe.scheduler.value,
                f"{recipe.warmup:g}",
                preset.source,
                model + preset.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


def _epochs_text(epochs: Mapping[str, float]) -> str:
    return ", ".join(f"{task.upper() if len(task) == 2 else task.capitalize()} {n:g}" for task, n in epochs.items())
