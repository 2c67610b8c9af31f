"""What LF really trains for a config, read off `requires_grad` after LF's own freeze / LoRA setup.

The rendered configs are the cluster ones (hub model, bf16, ZeRO-3); `trainable_parameters` swaps in the tiny
offline Qwen2.5-VL and CPU settings. The hand-written configs are the cases recipes are growing into, and the
paper's own inverted freeze flags, which must not pass for LLM training.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.models import REGISTRY, resolve_model
from forgetkit.recipes import Hardware, Method, Part, Recipe
from forgetkit.render import DataSpec, render_train
from forgetkit.tiny_model import RECIPE
from forgetkit.trainable import PARTS, trainable_parameters

QWEN_3B = resolve_model("qwen2.5-vl-3b")
ATTN = frozenset({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"})
MLP = frozenset({"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"})
LLM_MODULES = ATTN | MLP | {"input_layernorm", "post_attention_layernorm", "embed_tokens", "norm", "lm_head"}
TINY_LAYERS = RECIPE["text"]["num_hidden_layers"]

BASE = {"stage": "sft", "do_train": True, "dataset": "train", "template": "qwen2_vl", "output_dir": "unused"}
FROZEN_TOWERS = {"freeze_vision_tower": True, "freeze_multi_modal_projector": True, "freeze_language_model": False}

# Part -> (method, parts that train, LLM module kinds trained in full, LLM module kinds under LoRA)
EXPECTED: dict[Part, tuple[Method, set[str], frozenset[str], frozenset[str]]] = {
    Part.llm: (Method.full, {"llm"}, LLM_MODULES, frozenset()),
    Part.vision: (Method.full, {"vision_tower"}, frozenset(), frozenset()),
    Part.projector: (Method.full, {"projector"}, frozenset(), frozenset()),
    Part.llm_projector: (Method.full, {"llm", "projector"}, LLM_MODULES, frozenset()),
    Part.all: (Method.full, set(PARTS), LLM_MODULES, frozenset()),
    Part.attn: (Method.full, {"llm"}, ATTN, frozenset()),
    Part.mlp_gate_up: (Method.lora, {"llm"}, frozenset(), frozenset({"mlp.gate_proj", "mlp.up_proj"})),
}


def rendered(part: Part, method: Method, output_dir: Path) -> dict[str, Any]:
    """The cluster config for `part`: hub model, bf16 on 8 GPUs, ZeRO-3."""
    recipe = Recipe(part=part, method=method)
    return yaml.safe_load(render_train(QWEN_3B, recipe, DataSpec(), output_dir, Hardware(devices=8), deepspeed="z3"))


def test_every_part_has_an_expectation() -> None:
    assert set(EXPECTED) == set(Part)


@pytest.mark.parametrize("part", list(EXPECTED), ids=lambda part: part.value)
def test_rendered_part_trains_exactly_that_part(part: Part, tmp_path: Path) -> None:
    method, parts, full_modules, lora_modules = EXPECTED[part]
    config = rendered(part, method, tmp_path / "out")
    assert config["model_name_or_path"] == "Qwen/Qwen2.5-VL-3B-Instruct" and config["bf16"] is True

    found = trainable_parameters(config, num_layers=QWEN_3B.num_layers())

    assert found.parts == parts, found.describe()
    assert found.frozen == set(PARTS) - parts
    assert all(found.trainable[p] == 0 for p in found.frozen)
    assert found.full_modules == full_modules and found.lora_modules == lora_modules
    if method is Method.full:  # full and freeze tuning train whole parts: every parameter of a trained tower
        assert all(found.trainable[p] == found.total[p] for p in parts - {"llm"})
    if "llm" in parts:  # attn is freeze tuning with freeze_trainable_layers = 36: every layer of the real model
        assert found.layers == set(range(36)) and found.num_layers == 36
    assert not (tmp_path / "out").exists()


def test_default_recipe_reads_as_llm_full() -> None:
    found = trainable_parameters(rendered(Part.llm, Method.full, Path("out")), num_layers=36)
    assert str(found) == "trains llm (full: all modules; all 36 layers); frozen: vision_tower, projector"


def test_papers_inverted_flags_are_not_llm_training() -> None:
    """The paper's generator for "full-llm": LLM frozen, tower and projector trainable."""
    paper = {
        **BASE,
        "finetuning_type": "full",
        "freeze_vision_tower": False,
        "freeze_multi_modal_projector": False,
        "freeze_language_model": True,
    }
    found = trainable_parameters(paper)
    assert found.parts == {"vision_tower", "projector"} and found.frozen == {"llm"}
    assert found.parts != trainable_parameters(rendered(Part.llm, Method.full, Path("out"))).parts
    assert found.describe() == "trains vision_tower (full), projector (full); frozen: llm"


def test_lora_all_adapts_only_llm_linears() -> None:
    found = trainable_parameters(
        {**BASE, **FROZEN_TOWERS, "finetuning_type": "lora", "lora_target": "all", "lora_rank": 8}
    )
    assert found.parts == found.lora_parts == {"llm"} and not found.full_parts
    assert found.lora_modules == ATTN | MLP  # never embed_tokens, lm_head or norms, and nothing under visual.*
    assert found.trainable["vision_tower"] == found.trainable["projector"] == 0
    text = RECIPE["text"]
    h, i = text["hidden_size"], text["intermediate_size"]
    kv = h // text["num_attention_heads"] * text["num_key_value_heads"]
    per_layer = 8 * (2 * (h + h) + 2 * (h + kv) + 3 * (h + i))  # rank x (in + out) for q,o; k,v; gate,up,down
    assert found.trainable["llm"] == TINY_LAYERS * per_layer


@pytest.mark.parametrize(
    ("freeze_trainable_layers", "num_layers", "layers"),
    [
        (36, None, set(range(TINY_LAYERS))),  # more than the stand-in has: LF clamps, every layer trains
        (36, 36, set(range(36))),
        (2, 36, {34, 35}),  # a positive n is the *last* n layers: too small a count is caught
        (-1, 36, {0}),  # a negative n is the first |n|
    ],
)
def test_freeze_tuning_self_attn(freeze_trainable_layers: int, num_layers: int | None, layers: set[int]) -> None:
    config = {
        **BASE,
        "finetuning_type": "freeze",
        "freeze_trainable_layers": freeze_trainable_layers,
        "freeze_trainable_modules": "self_attn",
    }
    found = trainable_parameters(config, num_layers=num_layers)
    assert found.parts == found.full_parts == {"llm"}
    assert found.full_modules == ATTN and not found.lora_modules  # no embed_tokens, lm_head, norms, mlp
    assert found.layers == layers


def test_lora_on_gate_up_stays_out_of_the_vision_mlps() -> None:
    """Qwen2.5-VL's vision blocks also have mlp.gate_proj/up_proj; LF's patch_target_modules drops a frozen tower."""
    config = {**BASE, "finetuning_type": "lora", "lora_target": "gate_proj,up_proj", "freeze_vision_tower": True}
    found = trainable_parameters(config)
    assert found.parts == {"llm"} and found.lora_modules == {"mlp.gate_proj", "mlp.up_proj"}
    assert found.trainable["vision_tower"] == 0
    assert "lora: mlp.gate_proj, mlp.up_proj; all 2 layers" in found.describe()

    unfrozen = trainable_parameters({**config, "freeze_vision_tower": False})
    assert unfrozen.lora_parts == {"vision_tower", "llm"}  # the check sees adapters land in the tower


def test_additional_target_trains_the_projector_in_full_beside_lora() -> None:
    """PEFT's modules_to_save copy counts as the module it copies; its frozen original is not counted."""
    config = {**BASE, **FROZEN_TOWERS, "finetuning_type": "lora", "lora_target": "all", "additional_target": "merger"}
    found = trainable_parameters(config)
    assert found.full_parts == {"projector"} and found.lora_parts == {"llm"}
    assert found.trainable["projector"] == found.total["projector"] > 0


def test_lf_refusals_become_forgetkit_errors() -> None:
    with pytest.raises(ForgetkitError, match="not_an_lf_key"):
        trainable_parameters({**BASE, "not_an_lf_key": 1})
    with pytest.raises(ForgetkitError, match="Module q_proj is not found"):
        trainable_parameters({**BASE, "finetuning_type": "freeze", "freeze_trainable_modules": "q_proj"})


OTHER_FAMILIES = {
    spec.model_type: spec for spec in reversed(REGISTRY.values()) if spec.model_type != QWEN_3B.model_type
}
"""The smallest registry model of every other family."""


@pytest.mark.parametrize("part", [Part.vision, Part.projector, Part.llm], ids=lambda part: part.value)
@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_every_family_is_checked_on_its_own_stand_in(family: str, part: Part, tmp_path: Path) -> None:
    """LLaVA's and InternVL's towers are `vision_tower` / `multi_modal_projector`, Qwen3-VL's deepstack mergers
    belong to its vision tower: each family's own module names, never Qwen2.5-VL's."""
    model = OTHER_FAMILIES[family]
    config = yaml.safe_load(
        render_train(model, Recipe(part=part), DataSpec(), tmp_path / "out", Hardware(devices=8), deepspeed="z3")
    )
    found = trainable_parameters(config, model.num_layers(), family)
    assert found.parts == EXPECTED[part][1], found.describe()
    assert all(found.trainable[p] == found.total[p] > 0 for p in found.parts - {"llm"})
    assert all(found.trainable[p] == 0 < found.total[p] for p in found.frozen)
    assert found.num_layers == model.num_layers()


def test_a_family_without_a_stand_in_is_refused_in_one_line() -> None:
    with pytest.raises(ForgetkitError, match="no tiny stand-in for model type 'gemma3'; known: qwen2_5_vl"):
        trainable_parameters(BASE, family="gemma3")
