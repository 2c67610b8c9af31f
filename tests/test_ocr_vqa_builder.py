"""`forgetkit build-data ocr-vqa` on miniature howard-hou/OCR-VQA parquet shards, checked against the rows the
authors' data/processors/multi-task/ocrvqa.py (lihe50hz/MLLM-Forgetting, commit 16d5831) makes from them."""

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from forgetkit.errors import ForgetkitError

SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("image_id", pa.string()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("title", pa.string()),
        ("genre", pa.string()),
    ]
)


def encoded(mode: str, size: tuple[int, int], color: object, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


COVER_RGB = encoded("RGB", (30, 40), (200, 30, 60), "JPEG")
COVER_RGBA = encoded("RGBA", (24, 36), (10, 120, 200, 128), "PNG")
COVER_GRAY = encoded("L", (20, 30), 90, "JPEG")

COVERS = {
    "train-00000-of-00002-5f2a9c01d3e4b6a7.parquet": [
        (
            COVER_RGB,
            "0001055178",
            [
                "Who wrote this book?",
                "What is the title of this book?",
                "What type of book is this?",
                "Is this a sci-fi book?",
                "Is this a games related book?",
            ],
            ["Sherry Boas", "Until Lily", "Literature & Fiction", "No", "No"],
        ),
        (
            COVER_RGBA,
            "0001714538",
            ["Who is the author of this book?", "Is this book related to Christian Books & Bibles?"],
            ["Frédéric Chopin", "Yes"],
        ),
        (b"\xff\xd8\xff\xe0 not really a jpeg", "0002005395", ["Who wrote this book?"], ["Nobody"]),
    ],
    "train-00001-of-00002-0b8e7d6c5a4f3e21.parquet": [
        (None, "0002006995", ["Who wrote this book?"], ["Missing Bytes"]),
        (
            COVER_GRAY,
            "0002007770",
            ["Who wrote this book?", "What is the title of this book?", "Is this a comedy book?"],
            ["Douglas Adams", "Mostly Harmless"],
        ),
        (COVER_RGB, "0002158302", None, ["orphan answer"]),
    ],
    "validation-00000-of-00001-9d8c7b6a5f4e3d2c.parquet": [
        (COVER_GRAY, "0002216973", ["Is this a kids book?"], ["No"]),
    ],
    "test-00000-of-00001-1a2b3c4d5e6f7a8b.parquet": [
        (COVER_RGB, "0002219417", ["What is the genre of this book?"], ["Travel"]),
    ],
}

EXPECTED = [
    ("Who wrote this book?", "Sherry Boas", "train_000000.jpg"),
    ("What is the title of this book?", "Until Lily", "train_000000.jpg"),
    ("What type of book is this?", "Literature & Fiction", "train_000000.jpg"),
    ("Is this a sci-fi book?", "No", "train_000000.jpg"),
    ("Is this a games related book?", "No", "train_000000.jpg"),
    ("Who is the author of this book?", "Frédéric Chopin", "train_000001.jpg"),
    ("Is this book related to Christian Books & Bibles?", "Yes", "train_000001.jpg"),
    ("Who wrote this book?", "Douglas Adams", "train_000004.jpg"),
    ("What is the title of this book?", "Mostly Harmless", "train_000004.jpg"),
]
"""The authors' script on these shards: one row per zip(questions, answers) pair, question prefixed by "<image>\\n";
global rows 2 (undecodable), 3 (no bytes) and 5 (questions None) make no rows; row 4's third question has no answer."""

FIRST_LINE = (
    '{"messages": [{"role": "user", "content": "<image>\\nWho wrote this book?"}, '
    '{"role": "assistant", "content": "Sherry Boas"}], "images": ["images/ocr_vqa/train/train_000000.jpg"]}'
)


def write_shard(path: Path, covers: list[tuple], row_group_size: int = 2) -> None:
    columns = list(zip(*covers))
    table = pa.table(
        {
            "image": [None if data is None else {"bytes": data, "path": None} for data in columns[0]],
            "image_id": list(columns[1]),
            "questions": list(columns[2]),
            "answers": list(columns[3]),
            "title": ["A title"] * len(covers),
            "genre": ["Literature & Fiction"] * len(covers),
        },
        schema=SCHEMA,
    )
    pq.write_table(table, path, row_group_size=row_group_size)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """howard-hou/OCR-VQA as downloaded: DIR/data/<split>-0000N-of-0000M-<hash>.parquet."""
    root = tmp_path_factory.mktemp("OCR-VQA")
    (root / "data").mkdir()
    for name, covers in COVERS.items():
        write_shard(root / "data" / name, covers)
    return root


def build(source: Path, out: Path, **overrides) -> tuple[list[dict], dict]:
    result = run_builder("ocr-vqa", BuildOptions(**{"source": source, "out": out, "split": "train", **overrides}))
    rows = json.loads((out / f"{result.dataset}.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / f"{result.dataset}.manifest.json").read_text(encoding="utf-8"))
    return rows, manifest


@pytest.fixture(scope="module")
def built(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], dict]:
    out = tmp_path_factory.mktemp("out")
    return out, *build(source, out)


def test_every_question_is_one_single_turn_row_as_the_authors_made_it(built) -> None:
    out, rows, manifest = built
    assert manifest["dataset"] == "ocr_vqa_train"
    expected = [
        {
            "messages": [
                {"role": "user", "content": f"<image>\n{question}"},
                {"role": "assistant", "content": answer},
            ],
            "images": [f"images/ocr_vqa/train/{image}"],
        }
        for question, answer, image in EXPECTED
    ]
    assert rows == expected
    assert (out / "ocr_vqa_train.json").read_bytes().decode("utf-8").splitlines()[1] == FIRST_LINE + ","
    assert '"Frédéric Chopin"' in (out / "ocr_vqa_train.json").read_text(encoding="utf-8")


def test_covers_are_rgb_jpeg_quality_95_under_the_authors_file_names(built) -> None:
    out, _, _ = built
    folder = out / "images" / "ocr_vqa" / "train"
    assert sorted(path.name for path in folder.iterdir()) == [
        "train_000000.jpg",
        "train_000001.jpg",
        "train_000004.jpg",
    ]
    for name, source_bytes in (("train_000000", COVER_RGB), ("train_000001", COVER_RGBA), ("train_000004", COVER_GRAY)):
        with Image.open(io.BytesIO(source_bytes)) as original:
            buffer = io.BytesIO()
            original.convert("RGB").save(buffer, "JPEG", quality=95)
        assert (folder / f"{name}.jpg").read_bytes() == buffer.getvalue()
        with Image.open(folder / f"{name}.jpg") as written:
            assert (written.format, written.mode) == ("JPEG", "RGB")
            written.load()


def test_bad_covers_are_skipped_with_reasons_and_counted(built) -> None:
    out, _, manifest = built
    reasons = {item["item"]: item["reason"] for item in manifest["skipped"]}
    assert manifest["counts"] == {"records": 9, "skipped": 3}
    assert reasons["train-00000-of-00002-5f2a9c01d3e4b6a7.parquet[2]"].startswith("cannot decode image")
    assert reasons["train-00001-of-00002-0b8e7d6c5a4f3e21.parquet[0]"] == "no image bytes"
    assert reasons["train-00001-of-00002-0b8e7d6c5a4f3e21.parquet[2]"] == "questions is NoneType, not a list"
    assert manifest["unpaired_dropped"] == 1
    assert (manifest["source_split"], manifest["source_covers"], manifest["source_pairs"]) == ("train", 6, 11)
    assert manifest["covers"] == 3
    info = json.loads((out / "dataset_info.json").read_text())["ocr_vqa_train"]
    assert (info["file_name"], info["formatting"]) == ("ocr_vqa_train.json", "sharegpt")


def test_strict_stops_at_the_first_bad_cover_by_name(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"parquet\[2\]: questions is NoneType.*drop --strict"):
        build(source, tmp_path, strict=True)
    assert not (tmp_path / "ocr_vqa_train.json").exists()


def test_val_reads_the_validation_shards_and_data_folder_works_as_source(source: Path, tmp_path: Path) -> None:
    rows, manifest = build(source / "data", tmp_path, split="val")
    assert manifest["dataset"] == "ocr_vqa_val" and manifest["source_split"] == "validation"
    assert rows == [
        {
            "messages": [
                {"role": "user", "content": "<image>\nIs this a kids book?"},
                {"role": "assistant", "content": "No"},
            ],
            "images": ["images/ocr_vqa/validation/validation_000000.jpg"],
        }
    ]
    assert (tmp_path / rows[0]["images"][0]).is_file()


def test_limit_is_seeded_writes_only_its_covers_and_builds_are_byte_identical(
    source: Path, built, tmp_path: Path
) -> None:
    _, all_rows, _ = built
    rows, _ = build(source, tmp_path / "a", limit=4, seed=3)
    again, _ = build(source, tmp_path / "b", limit=4, seed=3)
    assert rows == again and 1 <= len(rows) <= 4
    assert rows == [row for row in all_rows if row in rows]
    assert (tmp_path / "a" / "ocr_vqa_train.json").read_bytes() == (tmp_path / "b" / "ocr_vqa_train.json").read_bytes()
    folder = tmp_path / "a" / "images" / "ocr_vqa" / "train"
    assert {f"images/ocr_vqa/train/{path.name}" for path in folder.iterdir()} == {row["images"][0] for row in rows}
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    build(source, tmp_path / "a", limit=4, seed=3)
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == stamps
    everything, _ = build(source, tmp_path / "c", limit=11, seed=3)
    assert everything == all_rows


def test_bad_sources_fail_in_one_line_with_the_fix(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"holds no train-\*-of-\*\.parquet.*howard-hou/OCR-VQA"):
        build(tmp_path, tmp_path / "out")
    with pytest.raises(ForgetkitError, match=r"holds no dev-\*-of-\*\.parquet.*it has splits test, train, validation"):
        build(source, tmp_path / "out", split="dev")
    broken = tmp_path / "broken" / "data"
    broken.mkdir(parents=True)
    (broken / "train-00000-of-00001-abcdef0123456789.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(ForgetkitError, match=r"is not a readable parquet file .*; re-download it"):
        build(broken.parent, tmp_path / "out")
    other = tmp_path / "other" / "data"
    other.mkdir(parents=True)
    table = pa.table({"image": [{"bytes": COVER_RGB, "path": None}], "question": ["Who?"], "answer": ["Me"]})
    pq.write_table(table, other / "train-00000-of-00001-abcdef0123456789.parquet")
    with pytest.raises(
        ForgetkitError, match=r"has no 'questions', 'answers' column \(it has image, question, answer\)"
    ):
        build(other.parent, tmp_path / "out")


def test_llamafactory_reads_the_rows_as_it_reads_the_authors_alpaca_entry(built, tmp_path: Path) -> None:
    """The authors' processed/train.json rows (question, answer, image_path) under their `ocrvqa_train` alpaca
    entry tokenise exactly like forgetkit's sharegpt rows."""
    from forgetkit.fixtures.lf_loader import load_with_llamafactory

    built_out, rows, _ = built
    out = tmp_path / "out"
    shutil.copytree(built_out, out)
    authors = [
        {"image_path": f"images/ocr_vqa/train/{image}", "question": f"<image>\n{question}", "answer": answer}
        for question, answer, image in EXPECTED
    ]
    (out / "authors_train.json").write_text(json.dumps(authors, ensure_ascii=False), encoding="utf-8")
    info = json.loads((out / "dataset_info.json").read_text())
    info["ocrvqa_train"] = {
        "file_name": "authors_train.json",
        "formatting": "alpaca",
        "columns": {"prompt": "question", "response": "answer", "images": "image_path"},
    }
    (out / "dataset_info.json").write_text(json.dumps(info))
    ours, tokenizer = load_with_llamafactory(out, "ocr_vqa_train")
    theirs, _ = load_with_llamafactory(out, "ocrvqa_train")
    assert len(ours) == len(rows)
    assert [example["input_ids"] for example in ours] == [example["input_ids"] for example in theirs]
    assert [example["labels"] for example in ours] == [example["labels"] for example in theirs]
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert all(image_pad in example["input_ids"] for example in ours)
    answer = tokenizer.decode([t for t in ours[5]["labels"] if t >= 0], skip_special_tokens=True).strip()
    assert answer == "Frédéric Chopin"
