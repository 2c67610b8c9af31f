"""Every recipe of the papers as a preset: numbers equal App. C, LF's parser accepts each, overrides win."""

import json

import pytest
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.models import family_of
from forgetkit.presets import PRESETS, preset_table
from forgetkit.train_config import TrainRequest, render_request

# Transcribed from the paper's App. C tables (and PROTOCOL.md §3), independently of forgetkit/presets.py:
# preset: (trainable flags (vision tower, projector, LLM), LF finetuning_type, lr, global batch, length, scheduler,
#          warmup, lora rank)
APP_C = {
    "fig2-a": ((False, False, True), "lora", 1e-4, 32, ("max_steps", 40000), "cosine", 0.1, 8),
    "fig2-b": ((False, False, True), "full", 1e-5, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "fig2-c": ((False, False, True), "full", 1e-6, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "fig2-d": ((True, False, False), "full", 1e-5, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "fig2-e": ((True, False, False), "full", 1e-6, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "fig2-f": ((False, True, False), "full", 1e-5, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "fig2-g": ((False, True, False), "full", 1e-6, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "table2-a": ((False, False, True), "full", 1e-6, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "table2-b": ((False, False, True), "full", 1e-6, 16, ("max_steps", 20000), "cosine", 0.1, None),
    "table2-c": ((False, False, True), "full", 1e-6, 16, ("max_steps", 2000), "linear", 0.1, None),
    "table2-d": ((False, False, True), "full", 1e-6, 16, ("max_steps", 80000), "linear", 0.0025, None),
    "fig4": ((False, False, True), "full", 1e-6, 16, ("max_steps", 80000), "cosine", 0.1, None),
    "table3-a": ((False, False, True), "lora", 8e-5, 64, ("num_train_epochs", 3.0), "cosine", 0.1, 8),
    "table3-b": ((False, False, True), "lora", 8e-5, 64, ("num_train_epochs", 3.0), "cosine", 0.1, 16),
    # SeqFull trains the projector too (the authors' config_generation/multiple-task/mllm_cl_full*.py)
    "table3-c": ((False, True, True), "full", 1e-6, 16, ("num_train_epochs", 3.0), "cosine", 0.1, None),
    "table3-d": ((False, True, True), "full", 1e-6, 16, ("num_train_epochs", 3.0), "cosine", 0.1, None),
    "attn": ((False, False, True), "freeze", 5e-6, 32, ("num_train_epochs", 1.0), "cosine", 0.03, None),
    "mlp-gate-up": ((False, False, True), "lora", 5e-6, 32, ("num_train_epochs", 1.0), "cosine", 0.03, 8),
}


def datasets_for(preset: str) -> tuple[str, ...]:
    """What each preset trains on in the paper: MLLM-CL's Med task (3 epochs) for Table 3, a mix for Fig. 4."""
    if preset.startswith("table3"):
        return ("mllmcl_med_train",)
    if preset == "fig4":
        return ("imagenet_vqa_train", "llava_665k")
    return ("imagenet_vqa_train",)


def render(preset: str, gpus: int = 8, **recipe) -> dict:
    request = TrainRequest(preset=preset, recipe=recipe, datasets=datasets_for(preset), gpus=gpus)
    return yaml.safe_load(render_request(request).text)


def test_every_preset_of_protocol_section_3_exists() -> None:
    assert set(PRESETS) == set(APP_C)


@pytest.mark.parametrize("name", sorted(APP_C))
def test_preset_numbers_equal_the_papers_tables_and_lf_accepts_them(name: str) -> None:
    trainable, finetuning_type, lr, batch, (length_key, length), scheduler, warmup, rank = APP_C[name]
    config = render(name)  # render_request runs LF's own get_train_args on it
    frozen = (config["freeze_vision_tower"], config["freeze_multi_modal_projector"], config["freeze_language_model"])
    assert frozen == tuple(not t for t in trainable)
    assert config["finetuning_type"] == finetuning_type
    assert config["learning_rate"] == lr
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] * 8 == batch
    assert config[length_key] == length
    assert "num_train_epochs" not in config if length_key == "max_steps" else "max_steps" not in config
    assert config["lr_scheduler_type"] == scheduler and config["warmup_ratio"] == warmup
    assert config.get("lora_rank") == rank
    assert config["optim"] == "adamw_torch"
    # IncLoRA trains LLaVA's projector in full beside the LoRA (mllm_cl_lora*.py: additional_target [projector])
    assert config.get("additional_target") == ("multi_modal_projector" if name in ("table3-a", "table3-b") else None)


def test_table3_runs_llava_and_takes_each_tasks_epochs_from_the_dataset_name() -> None:
    epochs = {"rs": 1, "med": 3, "ad": 1, "sci": 2, "fin": 1}
    for task, n in epochs.items():
        request = TrainRequest(preset="table3-c", datasets=(f"mllmcl_{task}_train_replay20",))
        config = yaml.safe_load(render_request(request).text)
        assert config["num_train_epochs"] == n
        assert config["model_name_or_path"] == "llava-hf/llava-1.5-7b-hf" and config["template"] == "llava"
    with pytest.raises(ForgetkitError, match="pass --dataset mllmcl_<task>_train.*or --epochs"):
        render_request(TrainRequest(preset="table3-a", datasets=("imagenet_vqa_train",)))


def test_fig4_mixes_with_lfs_interleave_over_at_half() -> None:
    config = render("fig4")
    assert config["dataset"] == "imagenet_vqa_train,llava_665k"
    assert config["mix_strategy"] == "interleave_over" and config["interleave_probs"] == "0.5,0.5"
    request = TrainRequest(preset="fig4", datasets=datasets_for("fig4"), mix_ratios=("0.3",))
    assert yaml.safe_load(render_request(request).text)["interleave_probs"] == "0.7,0.3"


def test_attn_trains_self_attention_of_every_layer_with_freeze_tuning() -> None:
    config = render("attn")
    assert config["freeze_trainable_modules"] == "self_attn"
    assert config["freeze_trainable_layers"] == 36  # Qwen2.5-VL-3B's decoder layers


def test_mlp_gate_up_is_lora_on_gate_and_up_only() -> None:
    assert render("mlp-gate-up")["lora_target"] == "gate_proj,up_proj"
    with pytest.raises(ForgetkitError, match="--part mlp-gate-up needs --method lora"):
        render_request(TrainRequest(recipe={"part": "mlp-gate-up"}))


def test_options_next_to_a_preset_override_it() -> None:
    config = render("fig2-c", lr=1e-5, steps=100)
    assert config["learning_rate"] == 1e-5 and config["max_steps"] == 100
    config = yaml.safe_load(render_request(TrainRequest(preset="table3-c", recipe={"steps": 500})).text)
    assert config["max_steps"] == 500 and "num_train_epochs" not in config


def test_deepspeed_uses_the_shipped_zero_configs() -> None:
    for stage in (2, 3):
        request = TrainRequest(preset="fig2-c", gpus=16, deepspeed=f"z{stage}")
        path = yaml.safe_load(render_request(request).text)["deepspeed"]
        assert json.loads(open(path).read())["zero_optimization"]["stage"] == stage
    with pytest.raises(ForgetkitError, match="--deepspeed zero9: use z2, z3"):
        render_request(TrainRequest(deepspeed="zero9"))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (TrainRequest(preset="fig9"), "unknown preset 'fig9'"),
        (TrainRequest(recipe={"part": "vision", "method": "lora"}), "LoRA applies to the LLM's linear layers"),
        (TrainRequest(datasets=("a", "b"), mix_ratios=("0.5", "0.2")), "2 ratio\\(s\\) for 1 dataset"),
        (TrainRequest(datasets=("a", "b"), mix_ratios=("1.5",)), "must be at least 0 and below 1"),
        (TrainRequest(recipe={"lora_target": "q_proj"}), "--lora-target needs --method lora"),
    ],
)
def test_bad_requests_say_what_to_change(request_: TrainRequest, message: str) -> None:
    with pytest.raises(ForgetkitError, match=message):
        render_request(request_)


def test_list_presets_prints_every_row() -> None:
    table = preset_table()
    for name in PRESETS:
        assert f"\n{name} " in table


ATTENTION = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"}
LINEARS = ATTENTION | {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
# What each preset must train, judged on the model LF actually set up: (full parts, LoRA parts,
# LLM module kinds trained in full (None = all of them), LLM module kinds with LoRA adapters).
TRAINS = {
    "fig2-a": (set(), {"llm"}, set(), LINEARS),
    "fig2-d": ({"vision_tower"}, set(), set(), set()),
    "fig2-e": ({"vision_tower"}, set(), set(), set()),
    "fig2-f": ({"projector"}, set(), set(), set()),
    "fig2-g": ({"projector"}, set(), set(), set()),
    "table3-a": ({"projector"}, {"llm"}, set(), LINEARS),  # the authors' IncLoRA: projector in full beside the LoRA
    "table3-b": ({"projector"}, {"llm"}, set(), LINEARS),
    "table3-c": ({"llm", "projector"}, set(), None, set()),  # SeqFull: LLM and projector
    "table3-d": ({"llm", "projector"}, set(), None, set()),
    "attn": ({"llm"}, set(), ATTENTION, set()),
    "mlp-gate-up": (set(), {"llm"}, set(), {"mlp.gate_proj", "mlp.up_proj"}),
}
LLM_FULL = ({"llm"}, set(), None, set())


@pytest.mark.parametrize("name", sorted(APP_C))
def test_each_preset_trains_exactly_what_it_says_under_lfs_own_freezing(name: str) -> None:
    from forgetkit.trainable import trainable_parameters

    rendered = render_request(TrainRequest(preset=name, datasets=datasets_for(name), gpus=8, deepspeed="z3"))
    trained = trainable_parameters(
        yaml.safe_load(rendered.text), rendered.model.num_layers(), family_of(rendered.model, "presets")
    )
    full_parts, lora_parts, full_modules, lora_modules = TRAINS.get(name, LLM_FULL)
    assert (set(trained.full_parts), set(trained.lora_parts)) == (full_parts, lora_parts), trained.describe()
    assert set(trained.full_modules) == (set(trained.llm_modules) if full_modules is None else full_modules)
    assert set(trained.lora_modules) == lora_modules
    if "llm" in trained.parts:
        assert trained.layers == frozenset(range(rendered.model.num_layers())), "every LLM layer trains"
