"""The check run on every IncLoRA merge before it is kept (LF issue #9051: exports equal to the base)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from forgetkit.fixtures.hf_cache import place_in_hub_cache
from forgetkit.stages.export import adapter_is_nonzero, adapter_targets, merge_changed_weights, unchanged_by_merge

BASE = {
    "model.layers.0.self_attn.q_proj.weight": torch.ones(4, 4),
    "model.layers.0.mlp.up_proj.weight": torch.ones(8, 4),
    "visual.blocks.0.attn.qkv.weight": torch.ones(12, 4),
    "model.visual.merger.mlp.0.weight": torch.ones(4, 4),
}


def model(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir()
    if shards == 1:
        save_file(tensors, folder / "model.safetensors")
        return folder
    names = list(tensors)
    weight_map = {}
    for k in range(shards):
        file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[k::shards]}
        save_file(part, folder / file)
        weight_map |= dict.fromkeys(part, file)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def adapter(folder: Path, targets: list[str], b: float, modules_to_save: list[str] | None = None) -> Path:
    folder.mkdir()
    prefix = "base_model.model.model.language_model.layers.0.self_attn.q_proj"
    save_file(
        {f"{prefix}.lora_A.weight": torch.ones(2, 4), f"{prefix}.lora_B.weight": torch.full((4, 2), b)},
        folder / "adapter_model.safetensors",
    )
    config = {"target_modules": targets, "modules_to_save": modules_to_save}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_a_merge_that_changed_a_targeted_weight_passes(tmp_path: Path) -> None:
    base = model(tmp_path / "base", BASE)
    merged = model(tmp_path / "merged", BASE | {"model.layers.0.self_attn.q_proj.weight": torch.full((4, 4), 2.0)})
    assert merge_changed_weights(base, merged, ("q_proj", "up_proj"))


def test_a_merge_equal_to_its_base_is_caught(tmp_path: Path) -> None:
    base = model(tmp_path / "base", BASE)
    assert not merge_changed_weights(base, model(tmp_path / "merged", dict(BASE)), ("q_proj",))


def test_only_the_adapters_target_modules_count(tmp_path: Path) -> None:
    base = model(tmp_path / "base", BASE)
    merged = model(tmp_path / "merged", BASE | {"visual.blocks.0.attn.qkv.weight": torch.zeros(12, 4)})
    assert not merge_changed_weights(base, merged, ("q_proj",))
    assert merge_changed_weights(base, merged, ())


def test_names_match_across_checkpoint_layouts_and_shards(tmp_path: Path) -> None:
    """transformers 5 saves `model.language_model.layers.*` for a model loaded from `model.layers.*`."""
    base = model(tmp_path / "base", BASE, shards=2)
    renamed = {name.replace("model.layers", "model.language_model.layers"): t for name, t in BASE.items()}
    same = model(tmp_path / "same", renamed)
    changed = model(
        tmp_path / "changed", renamed | {"model.language_model.layers.0.mlp.up_proj.weight": torch.eye(8, 4)}
    )
    full_names = ("model.language_model.layers.0.mlp.up_proj",)
    assert not merge_changed_weights(base, same, full_names)
    assert merge_changed_weights(base, changed, full_names)


def test_an_untrained_adapter_cannot_change_anything(tmp_path: Path) -> None:
    assert adapter_is_nonzero(adapter(tmp_path / "trained", ["q_proj"], b=0.1))
    assert not adapter_is_nonzero(adapter(tmp_path / "zero", ["q_proj"], b=0.0))
    assert adapter_targets(tmp_path / "trained") == ("q_proj",)


def test_an_incloras_projector_must_change_in_the_merge_too(tmp_path: Path) -> None:
    """IncLoRA trains the projector in full beside the LoRA (`modules_to_save`): a merge that kept the base's
    projector lost half of what the task taught, even when the LoRA part was merged."""
    base = model(tmp_path / "base", BASE)
    lora = adapter(tmp_path / "inclora", ["q_proj"], b=0.1, modules_to_save=["visual.merger"])
    q_changed = BASE | {"model.layers.0.self_attn.q_proj.weight": torch.full((4, 4), 2.0)}
    both = q_changed | {"model.visual.merger.mlp.0.weight": torch.eye(4)}
    assert unchanged_by_merge(base, model(tmp_path / "both", both), lora) == []
    assert unchanged_by_merge(base, model(tmp_path / "q-only", q_changed), lora) == ["fully trained visual.merger"]
    assert unchanged_by_merge(base, model(tmp_path / "same", dict(BASE)), lora) == [
        "LoRA-targeted weights",
        "fully trained visual.merger",
    ]
    plain = adapter(tmp_path / "lora", ["q_proj"], b=0.1)
    assert unchanged_by_merge(base, model(tmp_path / "q-again", q_changed), plain) == []


def test_a_merge_onto_a_hub_id_base_is_checked_against_its_copy_in_the_hf_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IncLoRA's first task merges into the study's model, which the paper's specs name by hub id."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    place_in_hub_cache(model(tmp_path / "base", BASE), "org/base", tmp_path / "hub")
    lora = adapter(tmp_path / "lora", ["q_proj"], b=0.1)
    q_changed = BASE | {"model.layers.0.self_attn.q_proj.weight": torch.full((4, 4), 2.0)}
    assert unchanged_by_merge("org/base", model(tmp_path / "merged", q_changed), lora) == []
    assert unchanged_by_merge("org/base", model(tmp_path / "same", dict(BASE)), lora) == ["LoRA-targeted weights"]
