"""Tiny classification sources in their real on-disk formats, and the checks every classification builder
test makes on what was built. Shared by the test_*_builder.py files of the CLIP-hard classification sets."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from datasets.data_files import DataFilesDict
from datasets.load import configure_builder_class
from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig
from PIL import Image as PILImage

from forgetkit.fixtures.synthetic import class_names, draw

SHAPES = class_names()


def photo(label: int, seed: int, size: int = 32) -> PILImage.Image:
    """A drawn image whose look follows its label (12 looks, then they repeat)."""
    return draw(SHAPES[label % len(SHAPES)], np.random.default_rng(seed), size)


def save_photo(path: Path, label: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    photo(label, seed).save(path)
    return path


def photo_bytes(label: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    photo(label, seed).save(buffer, format="JPEG")
    return buffer.getvalue()


def hf_dataset(labels: Sequence[int], names: Sequence[str], seed: int = 0) -> Dataset:
    """A datasets.Dataset with an `image` (Image) and a `label` (ClassLabel) column, JPEG bytes embedded."""
    images = [{"bytes": photo_bytes(label, seed + row), "path": f"{row:05d}.jpg"} for row, label in enumerate(labels)]
    features = Features({"image": Image(), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict({"image": images, "label": list(labels)}, features=features)


def save_hf(path: Path, splits: dict[str, Dataset]) -> Path:
    """A `save_to_disk` DatasetDict: dataset_dict.json plus one folder per split."""
    DatasetDict(splits).save_to_disk(str(path))
    return path


def cache_hub_dataset(cache: Path, repo_id: str, splits: dict[str, Dataset]) -> None:
    """Put `splits` into a Hugging Face datasets cache exactly as loading `repo_id` from the Hub leaves it:
    parquet data files prepared by the Parquet builder under `<owner>___<name>/default/0.0.0/<commit>`."""
    data = cache.parent / f"{cache.name}-parquet"
    data.mkdir(parents=True, exist_ok=True)
    for split, dataset in splits.items():
        dataset.to_parquet(str(data / f"{split}.parquet"))
    files = DataFilesDict.from_patterns({split: [f"{split}.parquet"] for split in splits}, base_path=str(data))
    owner_name = repo_id.split("/")[-1]
    builder_class = configure_builder_class(
        Parquet,
        builder_configs=[ParquetConfig(name="default", data_files=files)],
        default_config_name="default",
        dataset_name=owner_name,
    )
    builder = builder_class(cache_dir=str(cache), dataset_name=owner_name, repo_id=repo_id, hash="0" * 40)
    builder.download_and_prepare()


def records(out: Path, dataset: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{dataset}.records.jsonl").read_text().splitlines()]


def check_questions(out: Path, dataset: str, truth: Callable[[dict], str]) -> list[dict]:
    """Every question has 4 distinct options, its answer is the image's true class (`truth(record)`), the
    LF row agrees, and the image file exists where LF will look. Returns the records."""
    built = records(out, dataset)
    rows = json.loads((out / f"{dataset}.json").read_text())
    assert len(rows) == len(built) > 0
    for record, row in zip(built, rows):
        assert len(record["options"]) == 4
        assert len(set(record["options"])) == 4
        assert record["answer_text"] == record["class_label"] == truth(record)
        assert row["messages"][1]["content"] == record["answer"]
        assert row["images"] == [record["image"]]
        assert (out / record["image"]).is_file()
    return built


def check_prompts(out: Path, dataset: str, question: str) -> None:
    """Every LF prompt is the authors' byte for byte: `<image>`, the question, then one `X. option` line per option
    (their builders append `X. option\n` lines to `<image>\nQUESTION\n` and strip the end)."""
    rows = json.loads((out / f"{dataset}.json").read_text())
    assert rows
    for record, row in zip(records(out, dataset), rows):
        lines = "".join(f"\n{letter}. {option}" for letter, option in zip("ABCD", record["options"]))
        assert row["messages"][0]["content"] == f"<image>\n{question}{lines}"
        assert record["question"] == question


def manifest(out: Path, dataset: str) -> dict:
    return json.loads((out / f"{dataset}.manifest.json").read_text())


def output_bytes(out: Path, dataset: str) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (f"{dataset}.json", f"{dataset}.records.jsonl")}
