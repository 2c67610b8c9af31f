"""Export stage: `llamafactory-cli export` merges a LoRA adapter into its base model (IncLoRA's step
between tasks), then the merge is checked against its base before it is kept.

LF issue #9051 reports exports that are byte-for-byte the base model, silently; a continual run built
on such a merge would learn every task from scratch. So a merge whose LoRA-targeted weights all equal
the base's, while the adapter is not zero, is refused, and so is one whose fully trained modules
(PEFT's `modules_to_save`, e.g. IncLoRA's projector) all equal the base's.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from forgetkit.errors import ForgetkitError
from forgetkit.models import local_model_dir
from forgetkit.rundir import RunDir
from forgetkit.stage_names import stage_name
from forgetkit.stages import llamafactory
from forgetkit.stages.stage import Stage, identity

if TYPE_CHECKING:
    pass
from forgetkit.render import render_export


def export(run: RunDir, stage: str, config_text: str, base: str | Path, adapter: Path, merged: Path) -> Path:
    """Merge into `<merged>.partial` (the config's export_dir), check it, then rename it to `merged`."""
    partial = merged.with_name(merged.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    llamafactory.run("export", config_text, run.config(stage), run.log(stage), partial, desc=stage)
    unchanged = unchanged_by_merge(base, partial, adapter)
    if unchanged:
        raise ForgetkitError(
            f"{stage}: the merged model in {partial} has the same {' and '.join(unchanged)} as its base {base} "
            "(LLaMA-Factory issue #9051); rerun the stage, or change export_size in templates/export.yaml.j2"
        )
    shutil.rmtree(merged, ignore_errors=True)
    os.replace(partial, merged)
    return merged


def unchanged_by_merge(base: str | Path, merged: Path, adapter: Path) -> list[str]:
    """What the adapter trained but the merge left equal to the base (a folder or hub id): its LoRA-targeted
    weights (when the adapter is not zero) and its fully trained `modules_to_save`; empty for a good merge."""
    base = local_model_dir(base)
    unchanged = []
    if adapter_is_nonzero(adapter) and not merge_changed_weights(base, merged, adapter_targets(adapter)):
        unchanged.append("LoRA-targeted weights")
    saved = adapter_config(adapter).get("modules_to_save") or []
    if saved and not merge_changed_weights(base, merged, tuple(saved)):
        unchanged.append(f"fully trained {', '.join(saved)}")
    return unchanged


def adapter_config(adapter: Path) -> dict:
    return json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))


def adapter_targets(adapter: Path) -> tuple[str, ...]:
    """The modules the adapter was trained on (PEFT's `target_modules`: short or full names); empty = check all."""
    targets = adapter_config(adapter).get("target_modules") or []
    return tuple(targets) if isinstance(targets, list) else ()


def adapter_is_nonzero(adapter: Path) -> bool:
    """Whether any LoRA B matrix moved from its zero init, i.e. whether merging can change anything."""
    from safetensors import safe_open

    with safe_open(adapter / "adapter_model.safetensors", framework="pt") as weights:
        return any(weights.get_tensor(name).any() for name in weights.keys() if "lora_B" in name)


def merge_changed_weights(base: Path, merged: Path, targets: tuple[str, ...]) -> bool:
    """Whether any weight of a targeted module differs between `merged` and `base` (stops at the first).

    Tensors are matched by name without its `model.` / `language_model.` parts, which transformers
    renames when it saves a model loaded from an older checkpoint layout.
    """
    import torch
    from safetensors import safe_open

    in_base = {_plain(name): (name, path) for name, path in _tensor_files(base).items()}
    wanted = [f".{_plain(target)}." for target in targets]
    for name, path in _tensor_files(merged).items():
        if _plain(name) not in in_base or (wanted and not any(w in f".{_plain(name)}" for w in wanted)):
            continue
        base_name, base_path = in_base[_plain(name)]
        with safe_open(path, framework="pt") as mine, safe_open(base_path, framework="pt") as theirs:
            if not torch.equal(mine.get_tensor(name), theirs.get_tensor(base_name)):
                return True
    return False


def _tensor_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or shards listed by an index)."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: model_dir / file for name, file in weight_map.items()}
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise ForgetkitError(f"no safetensors weights in {model_dir}; cannot check the LoRA merge")
    with safe_open(single, framework="pt") as weights:
        return {name: single for name in weights.keys()}


def _plain(name: str) -> str:
    return ".".join(part for part in name.split(".") if part not in ("model", "language_model"))


def export_stage(
    run: RunDir,
    base: str,
    adapter: Path,
    template: str,
    merged: Path,
    after: tuple[str, ...],
    sources: tuple[str, ...],
    trust_remote_code: bool = False,
) -> Stage:
    """`llamafactory-cli export`: merge `adapter` into `base` as `merged` (IncLoRA's hand-over between tasks);
    `sources` are the identities of the base and of the training that made the adapter."""
    stage = stage_name("export", merged.relative_to(run.root / "checkpoints").as_posix())
    text = render_export(base, adapter, template, merged.with_name(merged.name + ".partial"), trust_remote_code)
    digest = identity(text, *sources)
    return Stage(
        stage,
        llamafactory.command_line("export", run.config(stage)),
        digest,
        run.is_done(stage, digest) and merged.is_dir(),
        partial(export, run, stage, text, Path(base), adapter, merged),
        after=after,
    )
