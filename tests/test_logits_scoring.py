"""Logits scoring feeds the model exactly LF's predict-mode inputs and picks the top option letter."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.fixtures.lf_loader import load_with_llamafactory
from forgetkit.models import FAMILIES
from forgetkit.recipes import CPU
from forgetkit.render import DataSpec, render_predict
from forgetkit.scoring import score_file
from forgetkit.stages import llamafactory
from forgetkit.stages.logits import letter_token_ids, load_predict_inputs, option_letters, score_by_logits
from forgetkit.tiny_model import tiny_model_dir

DATASET = "imagenet_vqa_val"
PIXELS = 4096
SETTINGS = {"image_max_pixels": PIXELS, "cutoff_len": DataSpec.cutoff_len}


@pytest.fixture(scope="module")
def built(shapes: Path, offline_clip: ClipSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    names = shapes / "class_names.txt"
    build("imagenet-vqa", BuildOptions(source=shapes, out=out, split="val", class_names=names, clip=offline_clip))
    path = out / f"{DATASET}.json"
    rows = json.loads(path.read_text())
    for row in rows[1::2]:  # six options on every other row: two prompt lengths, so some batches are left-padded
        row["messages"][0]["content"] += "\nE. purple hexagon\nF. orange star"
    path.write_text(json.dumps(rows))
    return out


@pytest.fixture(scope="module")
def source_rows(built: Path) -> list[dict]:
    return json.loads((built / f"{DATASET}.json").read_text())


@pytest.fixture(scope="module")
def scored(built: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Batches of 5 over 24 rows: a partial last batch, left padding wherever lengths differ."""
    out = tmp_path_factory.mktemp("scored") / "logits.jsonl"
    assert score_by_logits(tiny_model_dir(), built, DATASET, "qwen2_vl", batch_size=5, output=out, **SETTINGS) == out
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_output_is_lf_shaped_and_scores_with_score_file(
    built: Path, scored: list[dict], source_rows: list[dict], tmp_path: Path
) -> None:
    assert len(scored) == len(source_rows)
    for row, source in zip(scored, source_rows):
        assert row["label"] == source["messages"][1]["content"] + "\n"  # as LF decodes its labels
        letters = list("ABCDEF" if "\nF. " in source["messages"][0]["content"] else "ABCD")
        assert row["predict"] in letters
        assert list(row["letter_probs"]) == letters
        assert sum(row["letter_probs"].values()) == pytest.approx(1.0)
        assert row["letter_probs"][row["predict"]] == max(row["letter_probs"].values())
        assert 0 < row["letter_mass"] < 1
        assert row["prompt"].endswith("<|im_start|>assistant\n")
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in scored))
    score = score_file(path)
    assert score.total == len(scored)
    assert score.correct == sum(row["predict"] == row["label"].strip() for row in scored)
    one_batch = score_by_logits(tiny_model_dir(), built, DATASET, "qwen2_vl", batch_size=24, **SETTINGS)
    for row, other in zip(scored, one_batch, strict=True):
        assert (row["prompt"], row["label"], row["predict"]) == (other["prompt"], other["label"], other["predict"])
        assert row["letter_probs"] == pytest.approx(other["letter_probs"], abs=1e-5)


def test_prompt_ids_are_lfs_prompt_ids(built: Path, source_rows: list[dict]) -> None:
    """Predict-mode ids equal the prompt part of LF's supervised training ids, and reach the model unchanged."""
    inputs = load_predict_inputs(tiny_model_dir(), built, DATASET, "qwen2_vl", **SETTINGS)
    train, _ = load_with_llamafactory(built, DATASET, image_max_pixels=PIXELS)
    assert len(inputs.dataset) == len(train)
    for predict_row, train_row, source in zip(inputs.dataset, train, source_rows):
        prompt_len = next(i for i, label in enumerate(train_row["labels"]) if label != -100)
        assert predict_row["input_ids"] == train_row["input_ids"][:prompt_len]
        assert predict_row["labels"] == train_row["input_ids"][prompt_len:]
        # the answer's first token, as LF trains it, is the token whose logit picks that letter
        assert predict_row["labels"][0] == letter_token_ids(inputs.tokenizer, [source["messages"][1]["content"]])[0]

    lengths = inputs.lengths()
    rows = [lengths.index(min(lengths)), lengths.index(max(lengths))]
    assert len({lengths[index] for index in rows}) == 2, "the set should have prompts of different lengths"
    batch = inputs.collator([inputs.dataset[index] for index in rows])
    for line, mask, index in zip(batch["input_ids"], batch["attention_mask"], rows):
        assert line[mask.bool()].tolist() == inputs.dataset[index]["input_ids"]
        assert mask[-1] == 1  # left padding: every row ends at its assistant prefix


def test_choice_and_probabilities_equal_a_plain_transformers_forward(
    built: Path, scored: list[dict], source_rows: list[dict]
) -> None:
    """HF's own processor and chat template, one unpadded row at a time, no LF code involved."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir())
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir(), attn_implementation="sdpa").eval()
    for source, row in zip(source_rows, scored):
        question = source["messages"][0]["content"].removeprefix("<image>")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        image = Image.open(built / source["images"][0]).convert("RGB")
        batch = processor(text=[text], images=[image], return_tensors="pt")
        assert processor.tokenizer.decode(batch["input_ids"][0]) == row["prompt"]
        letters = list(row["letter_probs"])
        with torch.no_grad():
            logits = model(**batch).logits[0, -1, processor.tokenizer.convert_tokens_to_ids(letters)]
        assert row["predict"] == letters[int(logits.argmax())]
        assert list(row["letter_probs"].values()) == pytest.approx(logits.softmax(-1).tolist(), abs=1e-6)


def test_lora_adapter_is_applied(built: Path, scored: list[dict], tmp_path: Path) -> None:
    """LF merges the adapter into the base; the result equals peft's unmerged adapter on the same LF batch."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model_dir()), config).save_pretrained(
        tmp_path / "adapter"
    )
    rows = score_by_logits(tiny_model_dir(), built, DATASET, "qwen2_vl", adapter=tmp_path / "adapter", **SETTINGS)
    shift = max(
        abs(row["letter_probs"][letter] - base["letter_probs"][letter])
        for row, base in zip(rows, scored)
        for letter in row["letter_probs"]
    )
    assert shift > 1e-3

    inputs = load_predict_inputs(tiny_model_dir(), built, DATASET, "qwen2_vl", **SETTINGS)
    tuned = PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(tiny_model_dir()), tmp_path / "adapter"
    )
    batch = inputs.session.collator(tuned)([inputs.dataset[0]])
    batch.pop("labels")
    with torch.no_grad():
        logits = tuned.eval()(**batch).logits[0, -1]
    letter_ids = [inputs.tokenizer.convert_tokens_to_ids(letter) for letter in "ABCD"]
    assert list(rows[0]["letter_probs"].values()) == pytest.approx(logits[letter_ids].softmax(-1).tolist(), abs=1e-4)


def test_option_letters_come_from_the_option_lines() -> None:
    question = "What is the class? Please answer with a single letter (A, B, C, or D)."
    assert option_letters(f"{question}\nA. cat\nB. dog\nC. fox\nD. owl<|im_end|>") == ["A", "B", "C", "D"]
    assert option_letters("A. note\nQ?\nA. a\nB. b\nC. c\nD. d\nE. e\nF. f\nChoose one.") == list("ABCDEF")
    assert option_letters(f"{question}\nanswer freely") == []


def test_bad_dataset_is_one_line_error(built: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"dataset 'imagenet_vqa_tset' is not in .*; known: imagenet_vqa_val$"):
        score_by_logits(tiny_model_dir(), built, "imagenet_vqa_tset", "qwen2_vl")
    with pytest.raises(ForgetkitError, match="dataset_info.json does not exist; build the data first") as caught:
        score_by_logits(tiny_model_dir(), tmp_path, DATASET, "qwen2_vl")
    assert "\n" not in str(caught.value)


def test_rows_without_option_lines_are_refused(built: Path, source_rows: list[dict], tmp_path: Path) -> None:
    row = source_rows[0]
    messages = [{"role": "user", "content": "<image>Describe it."}, row["messages"][1]]
    free = [{"messages": messages, "images": [str((built / row["images"][0]).resolve())]}]
    (tmp_path / "free.json").write_text(json.dumps(free))
    info = json.loads((built / "dataset_info.json").read_text())[DATASET]
    (tmp_path / "dataset_info.json").write_text(json.dumps({"free": {**info, "file_name": "free.json"}}))
    with pytest.raises(ForgetkitError, match="free row 0: no 'A. …', 'B. …' option lines"):
        score_by_logits(tiny_model_dir(), tmp_path, "free", "qwen2_vl", **SETTINGS)


def test_prompts_and_labels_equal_lf_generation_predictions(built: Path, scored: list[dict], tmp_path: Path) -> None:
    """The real predict stage (`llamafactory-cli train`, greedy generation) writes the same prompts and labels."""
    data = DataSpec(dataset_dir=str(built), image_max_pixels=PIXELS)
    text = render_predict(tiny_model_dir(), "qwen2_vl", DATASET, data, tmp_path / "out", CPU, max_new_tokens=2)
    llamafactory.run("train", text, tmp_path / "predict.yaml", tmp_path / "predict.log", tmp_path / "out", "predict")
    generated = [
        json.loads(line) for line in (tmp_path / "out" / "generated_predictions.jsonl").read_text().splitlines()
    ]
    assert [(row["prompt"], row["label"]) for row in generated] == [(row["prompt"], row["label"]) for row in scored]


@pytest.mark.parametrize("family", [family for family in FAMILIES if family != "qwen2_5_vl"])
def test_every_family_s_letters_are_a_plain_forward_on_lfs_batch(built: Path, family: str) -> None:
    """Each family's stand-in under its own LF template: LF builds the inputs (its images as that family's
    tokens), and the letter picked is the top logit of the family's transformers class on that batch."""
    from transformers import AutoModelForImageTextToText

    model_dir, template = tiny_model_dir(family=family), FAMILIES[family].template
    rows = score_by_logits(model_dir, built, DATASET, template, batch_size=4, **SETTINGS)
    inputs = load_predict_inputs(model_dir, built, DATASET, template, **SETTINGS)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    assert type(model).__name__ == FAMILIES[family].hf_class
    image_token = getattr(model.config, "image_token_id", None) or model.config.image_token_index
    for index in (0, 1):  # four options, then six
        batch = inputs.session.collator(model)([inputs.dataset[index]])
        batch.pop("labels")
        assert int((batch["input_ids"] == image_token).sum()) >= 9 and batch["pixel_values"].numel() > 0
        letters = list(rows[index]["letter_probs"])
        with torch.no_grad():
            logits = model(**batch).logits[0, -1, inputs.tokenizer.convert_tokens_to_ids(letters)]
        assert rows[index]["predict"] == letters[int(logits.argmax())]
        assert list(rows[index]["letter_probs"].values()) == pytest.approx(logits.softmax(-1).tolist(), abs=1e-4)
