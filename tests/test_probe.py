"""The drift probe compares two models' next-token distributions on held-out caption prompts, LF's inputs."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from forgetkit.errors import ForgetkitError
from forgetkit.fixtures.captions import write_caption_set
from forgetkit.stages.logits import batches, letter_token_ids, load_predict_inputs, option_letters
from forgetkit.stages.probe import probe
from forgetkit.tiny_model import tiny_model_dir

DATASET = "shape_captions"
SETTINGS = {"image_max_pixels": 4096}


def run(checkpoint: Path, data: Path, **options: object) -> dict:
    return probe(tiny_model_dir(), checkpoint, data, DATASET, "qwen2_vl", **SETTINGS, **options)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 drawn shapes, each asked for a caption: two prompt lengths and two answer lengths."""
    root = tmp_path_factory.mktemp("captions")
    write_caption_set(root)
    return root


@pytest.fixture(scope="module")
def letter_biased(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose lm_head rows for A-D lean toward the hidden state at the caption answer
    position, so their logits there rise by about 3: a crude stand-in for MCQ fine-tuning's letter bias."""
    from transformers import AutoModelForImageTextToText

    inputs = load_predict_inputs(tiny_model_dir(), data, DATASET, "qwen2_vl", multiple_choice=False, **SETTINGS)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir()).eval()
    seen: list[torch.Tensor] = []
    model.lm_head.register_forward_hook(lambda module, args, out: seen.append(args[0][:, -1]))
    with torch.no_grad():
        for _, batch in batches(inputs, len(inputs.dataset), "hidden"):
            model(**batch, logits_to_keep=1)
    direction = torch.cat(seen).mean(0)

    out = tmp_path_factory.mktemp("biased") / "model"
    shutil.copytree(tiny_model_dir(), out)
    weights = load_file(out / "model.safetensors")
    letters = letter_token_ids(inputs.tokenizer, list("ABCD"))
    weights["lm_head.weight"][letters] += 3.0 * direction / direction.dot(direction)
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_a_model_against_itself_has_not_drifted(data: Path, tmp_path: Path) -> None:
    result = run(tiny_model_dir(), data, batch_size=5, output=tmp_path / "probe.json")
    assert json.loads((tmp_path / "probe.json").read_text()) == result
    assert result["rows"] == len(result["per_prompt"]) == 24
    assert result["kl"] == pytest.approx(0, abs=1e-7)
    assert result["answer_mass_shift"] == pytest.approx(0, abs=1e-7)
    assert result["top_token_agreement"] == 1
    assert result["answer_mass_checkpoint"] == pytest.approx(result["answer_mass_base"])
    assert 0 < result["answer_mass_base"] < 1
    source = json.loads((data / f"{DATASET}.json").read_text())
    assert [row["label"] for row in result["per_prompt"]] == [row["messages"][1]["content"] + "\n" for row in source]


def test_a_letter_biased_checkpoint_drifts_onto_the_letters(data: Path, letter_biased: Path) -> None:
    result = run(letter_biased, data, batch_size=5)
    assert result["adapter"] is False
    for row in result["per_prompt"]:
        assert row["kl"] > 1e-4
        assert row["answer_mass_checkpoint"] > 2 * row["answer_mass_base"]
        assert row["answer_mass_shift"] == pytest.approx(row["answer_mass_checkpoint"] - row["answer_mass_base"])
    assert result["answer_mass_shift"] > 0.01
    assert result["kl"] == pytest.approx(sum(row["kl"] for row in result["per_prompt"]) / 24)


def test_teacher_forced_positions_do_not_depend_on_padding(data: Path, letter_biased: Path) -> None:
    """Answers are 15 or 17 tokens long (`<|im_end|>` and a newline included): with 16 positions the rows of a
    batch end at different answer lengths, yet each row's values equal those of its unpadded one-row batch."""
    padded = run(letter_biased, data, batch_size=24, positions=16)
    alone = run(letter_biased, data, batch_size=1, positions=16)
    first_only = run(letter_biased, data, batch_size=5)
    assert {row["k"] for row in padded["per_prompt"]} == {15, 16}
    assert padded["kl_first_k"] > 0
    for row, single, first in zip(padded["per_prompt"], alone["per_prompt"], first_only["per_prompt"]):
        assert row["kl_first_k"] == pytest.approx(single["kl_first_k"], rel=1e-4)
        # feeding the answer in changes nothing before it: the first position is the probe without it
        assert row["kl"] == pytest.approx(first["kl"], rel=1e-4)
        assert row["answer_mass_checkpoint"] == pytest.approx(first["answer_mass_checkpoint"], rel=1e-4)


def test_a_lora_adapter_is_applied_to_the_base(data: Path, letter_biased: Path, tmp_path: Path) -> None:
    """A LoRA checkpoint directory gives the same drift as the full model it merges into; `checkpoint_base`
    applies it to another model (IncLoRA's later tasks), still compared with `base`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    tuned = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir()), config)
    tuned.save_pretrained(tmp_path / "adapter")
    shutil.copytree(tiny_model_dir(), tmp_path / "merged")
    tuned.merge_and_unload().save_pretrained(tmp_path / "merged")

    with_adapter = run(tmp_path / "adapter", data)
    merged = run(tmp_path / "merged", data)
    assert with_adapter["adapter"] is True and merged["adapter"] is False
    assert with_adapter["kl"] > 1e-3
    for row, other in zip(with_adapter["per_prompt"], merged["per_prompt"], strict=True):
        assert row["kl"] == pytest.approx(other["kl"], rel=1e-3)
        assert row["answer_mass_checkpoint"] == pytest.approx(other["answer_mass_checkpoint"], rel=1e-3)

    on_biased = run(tmp_path / "adapter", data, checkpoint_base=letter_biased)
    assert on_biased["answer_mass_base"] == with_adapter["answer_mass_base"]
    assert on_biased["answer_mass_checkpoint"] > 2 * with_adapter["answer_mass_checkpoint"]


def test_a_checkpoint_with_another_tokenizer_is_refused(data: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir(), other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<|caption|>"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ForgetkitError, match=r"has a different tokenizer \(\d+ tokens\) from its base") as caught:
        run(other, data)
    assert "\n" not in str(caught.value)


def test_bad_inputs_are_one_line_errors(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"dataset_info.json does not exist; build the data first"):
        run(tiny_model_dir(), tmp_path)
    with pytest.raises(ForgetkitError, match=r"dataset 'shape_caption' is not in .*; known: shape_captions$"):
        probe(tiny_model_dir(), tiny_model_dir(), data, "shape_caption", "qwen2_vl")
    with pytest.raises(ForgetkitError, match=r"is neither a model directory \(config.json\) nor a LoRA adapter"):
        run(tmp_path, data)
    with pytest.raises(ForgetkitError, match=r"positions \(0\) and batch size \(8\) must be at least 1"):
        run(tiny_model_dir(), data, positions=0)


def test_caption_set_is_an_lf_dataset_of_drawn_images(data: Path) -> None:
    info = json.loads((data / "dataset_info.json").read_text())
    assert info[DATASET]["file_name"] == f"{DATASET}.json"
    rows = json.loads((data / f"{DATASET}.json").read_text())
    assert len(rows) == 24
    assert all((data / row["images"][0]).is_file() for row in rows)
    assert {row["messages"][0]["content"].count("<image>") for row in rows} == {1}
    assert not any(option_letters(row["messages"][0]["content"]) for row in rows)
    assert len({row["messages"][1]["content"] for row in rows}) == 24
