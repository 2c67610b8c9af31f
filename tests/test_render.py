"""Rendered LLaMA-Factory YAML: the paper's defaults, accepted by LF's own parser, injection-proof."""

import pytest
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.models import resolve_model
from forgetkit.recipes import CPU, Hardware, Part, Recipe
from forgetkit.render import DataSpec, render_export, render_predict, render_train, validate

QWEN_3B = resolve_model("qwen2.5-vl-3b")


def test_default_recipe_is_the_papers_llm_full_finetune() -> None:
    text = render_train(QWEN_3B, Recipe(lr=1e-6), DataSpec(), "saves/out", Hardware())
    config = validate(text)
    assert config["model_name_or_path"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert config["template"] == "qwen2_vl"
    assert config["finetuning_type"] == "full"
    assert (config["freeze_vision_tower"], config["freeze_multi_modal_projector"], config["freeze_language_model"]) == (
        True,
        True,
        False,
    )
    assert config["learning_rate"] == 1e-6 and isinstance(config["learning_rate"], float)
    assert config["lr_scheduler_type"] == "cosine" and config["warmup_ratio"] == 0.1
    assert config["optim"] == "adamw_torch"
    assert config["per_device_train_batch_size"] * config["gradient_accumulation_steps"] == 16
    assert (config["cutoff_len"], config["image_max_pixels"]) == (16384, 262144)  # the authors' released configs


@pytest.mark.parametrize(
    ("part", "frozen"),
    [
        (Part.vision, (False, True, True)),
        (Part.projector, (True, False, True)),
        (Part.llm_projector, (True, False, False)),
        (Part.all, (False, False, False)),
    ],
)
def test_part_sets_lfs_freeze_flags(part: Part, frozen: tuple[bool, bool, bool]) -> None:
    config = validate(render_train(QWEN_3B, Recipe(part=part), DataSpec(), "out", Hardware()))
    keys = ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model")
    assert tuple(config[k] for k in keys) == frozen


def test_global_batch_is_split_over_devices() -> None:
    config = yaml.safe_load(render_train(QWEN_3B, Recipe(batch_size=32), DataSpec(), "out", Hardware(devices=8)))
    assert config["per_device_train_batch_size"] == 4 and config["gradient_accumulation_steps"] == 1
    with pytest.raises(ForgetkitError, match="global batch 16 is not a multiple"):
        render_train(QWEN_3B, Recipe(batch_size=16), DataSpec(), "out", Hardware(devices=3))


def test_values_cannot_inject_yaml_keys() -> None:
    data = DataSpec(dataset_dir="dir: with colon\nbf16: false", train=("name {{ x }}\ndo_train: false",))
    config = yaml.safe_load(render_train(QWEN_3B, Recipe(), data, "out # not a comment", Hardware()))
    assert config["dataset_dir"] == "dir: with colon\nbf16: false"
    assert config["dataset"] == "name {{ x }}\ndo_train: false"
    assert config["output_dir"] == "out # not a comment"
    assert config["bf16"] is True and config["do_train"] is True


def test_prediction_config_is_greedy_and_accepted_by_lf() -> None:
    text = render_predict("saves/out/checkpoint-10", "qwen2_vl", "imagenet_vqa_val", DataSpec(), "pred", CPU)
    config = validate(text)
    assert config["do_predict"] is True and config["predict_with_generate"] is True
    assert config["do_sample"] is False and config["temperature"] == 0
    assert config["image_max_pixels"] == DataSpec().image_max_pixels


def test_lf_defaults_decoding_leaves_generation_to_lf_as_the_authors_eval_configs_did() -> None:
    """Their eval YAMLs set no generation keys, so LF sampled (T 0.95, top_p 0.7, 1024 new tokens)."""
    from llamafactory.hparams import get_train_args

    text = render_predict("m", "qwen2_vl", "imagenet_vqa_val", DataSpec(), "pred", CPU, decoding="lf-defaults", seed=7)
    config = validate(text)
    assert not {"do_sample", "temperature", "top_p", "max_new_tokens"} & set(config) and config["seed"] == 7
    *_, generating = get_train_args(config)
    assert (generating.do_sample, generating.temperature, generating.top_p) == (True, 0.95, 0.7)
    assert generating.max_new_tokens == 1024


def test_lf_rejections_surface_as_one_line_errors() -> None:
    text = render_train(QWEN_3B, Recipe(), DataSpec(), "out", Hardware()) + "not_an_lf_key: 1\n"
    with pytest.raises(ForgetkitError, match="LLaMA-Factory rejects the config: .*not_an_lf_key"):
        validate(text)


def test_unknown_model_needs_a_template() -> None:
    with pytest.raises(ForgetkitError, match="unknown model 'my-vlm'.*--template"):
        resolve_model("my-vlm")
    assert resolve_model("org/my-vlm", template="qwen2_vl").path == "org/my-vlm"


def test_lora_checkpoints_are_predicted_as_adapters_on_the_base_model() -> None:
    text = render_predict(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "qwen2_vl",
        "imagenet_vqa_val",
        DataSpec(),
        "out",
        Hardware(),
        adapter="saves/lora/checkpoint-2000",
    )
    config = validate(text)
    assert config["adapter_name_or_path"] == "saves/lora/checkpoint-2000" and config["finetuning_type"] == "lora"
    assert config["do_sample"] is False and config["temperature"] == 0


def test_export_config_merges_an_adapter_and_lf_accepts_it() -> None:
    text = render_export("Qwen/Qwen2.5-VL-3B-Instruct", "saves/lora/checkpoint-2000", "qwen2_vl", "merged/task1")
    config = validate(text)  # through LF's get_infer_args, as llamafactory-cli export parses it
    assert config["adapter_name_or_path"] == "saves/lora/checkpoint-2000"
    assert config["export_dir"] == "merged/task1" and config["export_device"] == "cpu"


def test_no_config_trusts_the_models_own_code_unless_asked() -> None:
    """LF passes `trust_remote_code` to transformers, which then runs Python files the model folder names."""

    def configs(trust: bool) -> list[dict]:
        texts = [
            render_train(QWEN_3B, Recipe(), DataSpec(), "out", Hardware(), trust_remote_code=trust),
            render_predict("m", "qwen2_vl", "imagenet_vqa_val", DataSpec(), "pred", CPU, trust_remote_code=trust),
            render_export("m", "saves/lora/checkpoint-2", "qwen2_vl", "merged", trust_remote_code=trust),
        ]
        return [validate(text) for text in texts]

    assert [config["trust_remote_code"] for config in configs(False)] == [False] * 3
    assert [config["trust_remote_code"] for config in configs(True)] == [True] * 3
    assert "trust_remote_code: false" in render_predict("m", "qwen2_vl", "x", DataSpec(), "pred", CPU)
