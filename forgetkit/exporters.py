"""MCQ records → the files LLaMA-Factory and VLMEvalKit read.

LF reads sharegpt JSON through an entry in `dataset_info.json`; VLMEvalKit reads a TSV whose
`image` column holds the base64 image and whose upper-case letter columns hold the options.
"""

from __future__ import annotations

import base64
import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.records import LETTERS, MCQRecord

IMAGE_TOKEN = "<image>"


def lf_row(record: MCQRecord) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"{IMAGE_TOKEN}\n{record.prompt()}"},
            {"role": "assistant", "content": record.answer},
        ],
        "images": [record.image],
    }


def lf_dataset_entry(file_name: str) -> dict:
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }


def write_lf_json(records: Iterable[MCQRecord], path: Path) -> int:
    return write_lf_rows([lf_row(record) for record in records], path)


def write_lf_rows(rows: list[dict], path: Path) -> int:
    """LF sharegpt rows as one JSON list, one row per line, written atomically.

    Row by row keeps json's C encoder (any `indent` falls back to the pure-Python one, 3x slower
    on LLaVA-665K) and still diffs and greps well."""
    with atomic.atomic_open(path) as handle:
        handle.write("[\n")
        for index, row in enumerate(rows):
            handle.write(("" if index == 0 else ",\n") + json.dumps(row, ensure_ascii=False))
        handle.write("\n]\n")
    return len(rows)


def merge_dataset_info(dataset_dir: Path, name: str, entry: dict) -> Path:
    """Add or replace one entry of `dataset_dir/dataset_info.json`, keeping every other entry."""
    info_path = dataset_dir / "dataset_info.json"
    info = read_json(info_path, dict, "fix or delete it, then rerun") if info_path.exists() else {}
    info[name] = entry
    atomic.write_json(info_path, info)
    return info_path


def dataset_entry(dataset_dir: Path, dataset: str) -> dict:
    """`dataset`'s entry in `dataset_dir/dataset_info.json`, or a one-line error naming the names it has."""
    path = Path(dataset_dir) / "dataset_info.json"
    info = read_json(path, dict, "build the data first (forgetkit build-data ...) or pass the folder holding it")
    if dataset not in info:
        raise ForgetkitError(f"dataset {dataset!r} is not in {path}; known: {', '.join(sorted(info)) or 'none'}")
    return info[dataset]


def write_vlmeval_tsv(records: Iterable[MCQRecord], path: Path, resolve_image: Callable[[MCQRecord], Path]) -> int:
    """Write VLMEvalKit's MCQ TSV; `resolve_image(record)` gives the image file to embed.

    VLMEvalKit takes an empty cell for a missing option, so every option and class text must be non-empty. Texts
    pandas reads as NA by default ('NA', 'None', 'null', ...) are written as they are and come back intact in
    forgetkit's VLMEvalKit runner (`forgetkit.stages.vlmeval.runner.texts_kept`), not in a bare `python -m vlmeval`.
    """
    rows = 0
    n_options = 0
    with atomic.atomic_open(path) as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        for index, record in enumerate(records):
            if index == 0:
                n_options = len(record.options)
                writer.writerow(["index", "image", "question", *LETTERS[:n_options], "answer", "category"])
            elif len(record.options) != n_options:
                raise ForgetkitError(
                    f"record {record.id} has {len(record.options)} options, the TSV's columns were set "
                    f"for {n_options}; one TSV holds one option count"
                )
            if "" in record.options:
                raise ForgetkitError(
                    f"record {record.id} has an empty option text; VLMEvalKit reads an empty TSV cell as no "
                    "option, so give every option a text"
                )
            image_b64 = base64.b64encode(Path(resolve_image(record)).read_bytes()).decode("ascii")
            writer.writerow([index, image_b64, record.question, *record.options, record.answer, record.class_label])
            rows += 1
    return rows
