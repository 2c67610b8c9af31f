"""Records become LF sharegpt rows + a dataset_info.json entry, and VLMEvalKit MCQ TSV rows."""

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from forgetkit import exporters
from forgetkit.errors import ForgetkitError
from forgetkit.records import MCQRecord


def record(image: str = "img/cat.png", answer: str = "B") -> MCQRecord:
    return MCQRecord(
        id="demo/cat",
        image=image,
        question="What is the class of this image? Please answer with a single letter (A, B, C, or D).",
        options=("tiger cat", "tabby cat", "Egyptian Mau", "lynx"),
        answer=answer,
        class_label="tabby cat",
        source="demo",
    )


def test_record_knows_its_answer_text_and_prompt() -> None:
    rec = record()
    assert rec.answer_text == "tabby cat"
    assert rec.prompt().splitlines()[1:] == ["A. tiger cat", "B. tabby cat", "C. Egyptian Mau", "D. lynx"]


def test_record_refuses_duplicate_option_texts_and_bad_letters() -> None:
    with pytest.raises(ValueError, match="share a text"):
        MCQRecord("x", "i.png", "q", ("cat", "dog", "cat", "eel"), "A", "cat", "s")
    with pytest.raises(ValueError, match="answer 'E'"):
        record(answer="E")


def test_lf_row_is_sharegpt_with_one_image_token() -> None:
    row = exporters.lf_row(record())
    assert row["images"] == ["img/cat.png"]
    user, assistant = row["messages"]
    assert user["role"] == "user" and user["content"].startswith("<image>\nWhat is the class")
    assert user["content"].count("<image>") == 1
    assert assistant == {"role": "assistant", "content": "B"}


def test_dataset_info_is_merged_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    exporters.merge_dataset_info(tmp_path, "imagenet_vqa_val", exporters.lf_dataset_entry("imagenet_vqa_val.json"))
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["mine"] == {"file_name": "mine.json"}
    assert info["imagenet_vqa_val"]["formatting"] == "sharegpt"
    assert info["imagenet_vqa_val"]["columns"] == {"messages": "messages", "images": "images"}


def test_malformed_dataset_info_is_an_error_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "dataset_info.json").write_text("{not json")
    with pytest.raises(ForgetkitError, match="dataset_info.json is not valid JSON"):
        exporters.merge_dataset_info(tmp_path, "x", {})
    assert (tmp_path / "dataset_info.json").read_text() == "{not json"


def test_vlmeval_tsv_has_the_mcq_columns_and_a_decodable_image(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "cat.png")
    exporters.write_vlmeval_tsv([record("cat.png")], tmp_path / "out.tsv", lambda r: tmp_path / r.image)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.tsv").read_text()), delimiter="\t"))
    assert list(rows[0]) == ["index", "image", "question", "A", "B", "C", "D", "answer", "category"]
    assert rows[0]["answer"] == "B" and rows[0]["B"] == "tabby cat" and rows[0]["category"] == "tabby cat"
    image = Image.open(io.BytesIO(base64.b64decode(rows[0]["image"])))
    assert image.size == (8, 8)


def test_vlmeval_tsv_refuses_an_empty_option_text_vlmevalkit_would_read_as_no_option(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    blank = MCQRecord("demo/blank", "cat.png", "Which cat?", ("tiger cat", "", "lynx", "ocelot"), "A", "tiger cat", "d")
    with pytest.raises(ForgetkitError, match="record demo/blank has an empty option text"):
        exporters.write_vlmeval_tsv([record("cat.png"), blank], tmp_path / "out.tsv", lambda r: tmp_path / r.image)
    assert not (tmp_path / "out.tsv").exists()
