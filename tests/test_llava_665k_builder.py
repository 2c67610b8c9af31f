"""`forgetkit build-data llava-665k` on a miniature llava_v1_5_mix665k.json with LLaVA's image folder layout."""

import json
from pathlib import Path

import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from forgetkit.errors import ForgetkitError

IMAGES = ["coco/train2017/000000033471.jpg", "gqa/images/2354786.jpg", "ocr_vqa/images/689852649.jpg"]

ROWS = [
    {
        "id": "000000033471",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": [
            {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."},
        ],
    },
    {
        "id": "689852649",
        "image": "ocr_vqa/images/689852649.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWho wrote this book?"},
            {"from": "gpt", "value": "Bruce Cameron"},
        ],
    },
    {
        "id": "2354786",
        "image": "gqa/images/2354786.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nIs the sky dark?\nAnswer the question using a single word or phrase."},
            {"from": "gpt", "value": "Yes"},
        ],
    },
    {
        "id": "i6IyJda_0",
        "conversations": [
            {"from": "human", "value": "How to tell if a customer segment is well segmented?"},
            {"from": "gpt", "value": "By checking homogeneity, distinctness and stability."},
        ],
    },
    {
        "id": "lead_gpt_0",
        "conversations": [
            {"from": "gpt", "value": "Hello! How can I help?"},
            {"from": "human", "value": "Say hi."},
            {"from": "gpt", "value": "Hi."},
        ],
    },
    {"id": "odd_0", "conversations": [{"from": "human", "value": "Unanswered?"}]},
    {
        "id": "order_0",
        "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}],
    },
    {
        "id": "notoken_0",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": [{"from": "human", "value": "What is shown?"}, {"from": "gpt", "value": "A bus."}],
    },
    {
        "id": "missing_0",
        "image": "vg/VG_100K/1.jpg",
        "conversations": [{"from": "human", "value": "<image>\nWhere?"}, {"from": "gpt", "value": "Here."}],
    },
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LLaVA's playground/data: the JSON beside coco/, gqa/, ocr_vqa/ (vg/ not downloaded)."""
    root = tmp_path_factory.mktemp("playground") / "data"
    for index, relative in enumerate(IMAGES):
        path = root / relative
        path.parent.mkdir(parents=True)
        Image.new("RGB", (32, 24), (40 * index, 90, 160)).save(path, format="JPEG")
    (root / "llava_v1_5_mix665k.json").write_text(json.dumps(ROWS))
    return root


def build(source: Path, out: Path, **overrides) -> tuple[list[dict], dict]:
    result = run_builder("llava-665k", BuildOptions(**{"source": source, "out": out, "split": "train", **overrides}))
    rows = json.loads((out / f"{result.dataset}.json").read_text())
    manifest = json.loads((out / f"{result.dataset}.manifest.json").read_text())
    return rows, manifest


@pytest.fixture(scope="module")
def built(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict]:
    out = tmp_path_factory.mktemp("out")
    return out, *build(source / "llava_v1_5_mix665k.json", out)


def test_conversations_become_lf_messages_with_the_image_first_as_llava_trains(built) -> None:
    out, rows, _ = built
    assert len(rows) == 5
    coco, ocr, gqa, text, lead = rows
    assert coco["messages"] == [
        {"role": "user", "content": "<image>\nWhat are the colors of the bus in the image?"},
        {"role": "assistant", "content": "The bus in the image is white and red."},
        {"role": "user", "content": "What feature can be seen on the back of the bus?"},
        {"role": "assistant", "content": "The back of the bus features an advertisement."},
    ]
    assert ocr["messages"][0]["content"] == "<image>\nWho wrote this book?"
    assert gqa["messages"][1] == {"role": "assistant", "content": "Yes"}
    for row, relative in zip((coco, ocr, gqa), ("coco/train2017", "ocr_vqa/images", "gqa/images")):
        assert len(row["images"]) == 1
        image = (out / row["images"][0]).resolve()
        assert image.is_file() and image.parent.as_posix().endswith(relative)
    question, answer = (turn["value"] for turn in ROWS[3]["conversations"])
    expected = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    assert text == {"messages": expected, "images": []}
    assert [m["role"] for m in lead["messages"]] == ["user", "assistant"]


def test_malformed_rows_and_missing_images_are_skipped_with_reasons(built) -> None:
    out, _, manifest = built
    reasons = {item["item"]: item["reason"] for item in manifest["skipped"]}
    assert manifest["counts"] == {"records": 5, "skipped": 4}
    assert "1 turns" in reasons["llava_v1_5_mix665k.json[5] id=odd_0"]
    assert "expected 'gpt'" in reasons["llava_v1_5_mix665k.json[6] id=order_0"]
    assert "0 <image> tokens for 1 image" in reasons["llava_v1_5_mix665k.json[7] id=notoken_0"]
    assert "does not exist" in reasons["llava_v1_5_mix665k.json[8] id=missing_0"]
    assert manifest["leading_gpt_turns_dropped"] == 1
    assert manifest["subset_rows"] == {"coco": 1, "gqa": 1, "ocr_vqa": 1, "text": 2}
    assert json.loads((out / "dataset_info.json").read_text())["llava_665k"]["file_name"] == "llava_665k.json"


def test_strict_stops_at_the_first_bad_row_by_name(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"\[5\] id=odd_0: 1 turns"):
        build(source, tmp_path, strict=True)
    assert not (tmp_path / "llava_665k.json").exists()


@pytest.mark.parametrize(("subset", "expected"), [("ocr_vqa", 1), ("text", 2), ("coco", 1)])
def test_subset_keeps_one_part_under_its_own_name(source: Path, tmp_path: Path, subset: str, expected: int) -> None:
    rows, manifest = build(source, tmp_path, params={"subset": subset})
    assert manifest["dataset"] == f"llava_665k_{subset}"
    assert len(rows) == expected
    assert all((row["images"] == []) == (subset == "text") for row in rows)
    assert all(subset in row["images"][0] for row in rows if row["images"])


def test_image_root_elsewhere_still_resolves_against_out(source: Path, tmp_path: Path) -> None:
    json_copy = tmp_path / "annotations" / "mix.json"
    json_copy.parent.mkdir()
    json_copy.write_text((source / "llava_v1_5_mix665k.json").read_text())
    out = tmp_path / "deep" / "out"
    rows, _ = build(json_copy, out, params={"image_root": str(source)})
    assert all((out / row["images"][0]).is_file() for row in rows if row["images"])


def test_limit_is_seeded_and_builds_are_byte_identical(source: Path, tmp_path: Path) -> None:
    rows, _ = build(source, tmp_path / "a", limit=3, seed=7)
    assert len(rows) == 3
    build(source, tmp_path / "b", limit=3, seed=7)
    assert (tmp_path / "a" / "llava_665k.json").read_bytes() == (tmp_path / "b" / "llava_665k.json").read_bytes()


def test_bad_source_and_params_fail_with_the_fix(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match="unknown subset 'sharegpt'; choose one of: coco"):
        build(source, tmp_path, params={"subset": "sharegpt"})
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,')
    with pytest.raises(ForgetkitError, match="broken.json is not valid JSON"):
        build(broken, tmp_path / "out")
    with pytest.raises(ForgetkitError, match="image_root .* is not a folder"):
        build(source, tmp_path, params={"image_root": str(tmp_path / "nowhere")})


def test_llamafactory_reads_image_and_text_only_rows_through_dataset_info(built) -> None:
    from forgetkit.fixtures.lf_loader import load_with_llamafactory

    out, rows, _ = built
    dataset, tokenizer = load_with_llamafactory(out, "llava_665k")
    assert len(dataset) == len(rows)
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert [image_pad in example["input_ids"] for example in dataset] == [True, True, True, False, False]
    answer = tokenizer.decode([t for t in dataset[2]["labels"] if t >= 0], skip_special_tokens=True).strip()
    assert answer == "Yes"
