"""OCR-VQA (questions on book covers), the "OOD text" set of the paper's data-hybrid mix (§4.3, Fig. 4a), as
LF sharegpt rows built the way the authors built theirs.

Source: the Hugging Face dataset howard-hou/OCR-VQA as downloaded (`huggingface-cli download howard-hou/OCR-VQA
--repo-type dataset --local-dir DIR`): `DIR/data/<split>-NNNNN-of-NNNNN-<hash>.parquet` with splits train (166,022
covers), validation and test; columns `image` (the datasets Image struct {bytes, path}), `questions` and `answers`
(lists of strings) and some unused ones (ocr_tokens, title, genre, ...). `--source` is DIR or DIR/data. That is what
the authors' `data/processors/multi-task/ocrvqa.py` (github lihe50hz/MLLM-Forgetting, commit 16d5831; deleted in
54a5183) reads: `<root_dir>/data/{split}-*-of-*-*.parquet`, shards in name order, rows numbered across all shards.
Shards named without the hash (`train-00000-of-00016.parquet`, newer `push_to_hub`) are read too; `--split val`
reads the `validation` shards.

Rows, as that script makes them: each (question, answer) pair of a cover is one single-turn row, covers and
questions in source order: user `<image>\\n{question}`, assistant `{answer}`, no system prompt. Pairs are formed
by position (zip), so a cover's extra questions or answers are dropped, counted in the manifest. The cover is
decoded, converted to RGB unless it is RGB and re-encoded as JPEG at quality 95, under the script's file name
`<split>_<row:06d>.jpg` (row: the position across all shards) in `--out/images/ocr_vqa/<split>/` (theirs:
`<root_dir>/images/<split>/`). A cover without image bytes, one that does not decode, or one whose questions or
answers are not lists of strings loses all its rows, skipped with its reason (`--strict` stops instead).

`--limit N` keeps N of the question rows (seeded, in source order) and writes only their covers, so a cover that
then fails to decode leaves fewer than N.

The authors' training configs call the train split `ocrvqa_train` (`config_generation/mixing-datasets/
mixing_ocrvqa.py` at HEAD, mixed with `imagenet_vqa_train_json`), registered in their `data/dataset_info.json` as
alpaca columns question/answer/image_path; forgetkit names it `ocr_vqa_<split>` like its other builders and writes
the same turns as sharegpt messages, which LF turns into the same conversation. This is not
`llava-665k --param subset=ocr_vqa`, LLaVA-1.5's own selection and conversations of OCR-VQA covers.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from datasets_builders.hf_images import SPLIT_ALIASES, first_line
from datasets_builders.output import export_rows, write_image
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from datasets_builders.sources import IMAGE_ERRORS
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import IMAGE_TOKEN, lf_dataset_entry

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("questions", "answers")
IMAGE_COLUMN = "image"
IMAGE_FOLDER = Path("images") / "ocr_vqa"
"""Where the covers go, under `--out`, one folder per split."""
JPEG_QUALITY = 95
SOURCE_HINT = (
    "the folder of howard-hou/OCR-VQA as downloaded (huggingface-cli download howard-hou/OCR-VQA --repo-type "
    "dataset --local-dir DIR), whose data/ holds train-00000-of-00016-<hash>.parquet ..."
)


class MalformedRow(ValueError):
    """A cover whose questions and answers cannot become rows; the message says why."""


@dataclass(frozen=True)
class Shards:
    """The parquet files of one split, in the order the authors concatenated them."""

    folder: Path
    split: str
    """The split as the file names spell it (`validation` for `--split val`); it names the image files."""
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Pairs:
    """Every question/answer pair of a split in source order, with the cover (row across all shards) of each."""

    questions: list[str]
    answers: list[str]
    cover: np.ndarray
    offsets: np.ndarray
    """Row number of each shard's first row, then the total: shard i holds rows offsets[i]..offsets[i+1]-1."""
    unpaired: int


def find_shards(source: Path, split: str) -> Shards:
    """The split's `<split>-*-of-*.parquet` shards in `source/data` (the authors' layout) or `source` itself."""
    folders = (source / "data", source)
    for folder in folders:
        for name in (split, *SPLIT_ALIASES.get(split, ())):
            files = sorted(folder.glob(f"{name}-*-of-*.parquet"))
            if files:
                return Shards(folder, name, tuple(files))
    present = sorted({path.name.split("-", 1)[0] for folder in folders for path in folder.glob("*-of-*.parquet")})
    found = f" (it has splits {', '.join(present)})" if present else ""
    raise ForgetkitError(f"{source} holds no {split}-*-of-*.parquet, nor does its data/{found}; pass {SOURCE_HINT}")


def cover_pairs(questions: object, answers: object) -> tuple[list[tuple[str, str]], int]:
    """A cover's (question, answer) pairs by position, plus how many questions or answers had no partner."""
    for name, values in zip(TEXT_COLUMNS, (questions, answers)):
        if not isinstance(values, list):
            raise MalformedRow(f"{name} is {type(values).__name__}, not a list")
        nulls = [index for index, value in enumerate(values) if not isinstance(value, str)]
        if nulls:
            raise MalformedRow(f"{name}[{nulls[0]}] is null")
    return list(zip(questions, answers)), abs(len(questions) - len(answers))


def read_pairs(shards: Shards, skips: Skips) -> Pairs:
    """Every pair of the split, read without the image column; a malformed cover goes to `skips`."""
    questions: list[str] = []
    answers: list[str] = []
    cover: list[int] = []
    offsets = [0]
    unpaired = 0
    for path in shards.files:
        columns = _text_columns(path)
        for local, (cover_questions, cover_answers) in enumerate(zip(*columns)):
            try:
                pairs, dropped = cover_pairs(cover_questions, cover_answers)
            except MalformedRow as err:
                skips.add(f"{path.name}[{local}]", str(err))
                continue
            unpaired += dropped
            questions.extend(question for question, _ in pairs)
            answers.extend(answer for _, answer in pairs)
            cover.extend([offsets[-1] + local] * len(pairs))
        offsets.append(offsets[-1] + len(columns[0]))
    return Pairs(questions, answers, np.asarray(cover, dtype=np.int64), np.asarray(offsets), unpaired)


def cover_jpeg(data: bytes) -> bytes:
    """The authors' re-encoding of a cover: decoded, converted to RGB unless it is RGB, saved as JPEG quality 95."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_covers(shards: Shards, offsets: np.ndarray, rows: np.ndarray, out: Path, skips: Skips) -> dict[int, str]:
    """Write the covers of `rows` (sorted, across all shards); each written cover's image path relative to `out`.

    A cover without image bytes or that does not decode goes to `skips`."""
    relative = IMAGE_FOLDER / shards.split
    (out / relative).mkdir(parents=True, exist_ok=True)
    images: dict[int, str] = {}
    written = 0
    for index, path in enumerate(shards.files):
        start, stop = int(offsets[index]), int(offsets[index + 1])
        local = rows[(rows >= start) & (rows < stop)] - start
        for row, cell in _image_cells(path, local):
            item = f"{path.name}[{row}]"
            data = cell.get("bytes") if isinstance(cell, dict) else None
            if data is None:
                skips.add(item, "no image bytes")
                continue
            try:
                jpeg = cover_jpeg(data)
            except IMAGE_ERRORS as err:
                skips.add(item, f"cannot decode image: {type(err).__name__}: {err}")
                continue
            name = f"{shards.split}_{start + row:06d}.jpg"
            written += write_image(out / relative / name, jpeg)
            images[start + row] = (relative / name).as_posix()
    log.info("ocr-vqa: %d covers in %s (%d written, the rest already there)", len(images), out / relative, written)
    return images


def lf_rows(pairs: Pairs, keep: Sequence[int], images: dict[int, str]) -> list[dict]:
    """The kept pairs whose cover was written, as single-turn LF sharegpt rows."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"{IMAGE_TOKEN}\n{pairs.questions[k]}"},
                {"role": "assistant", "content": pairs.answers[k]},
            ],
            "images": [images[int(pairs.cover[k])]],
        }
        for k in keep
        if int(pairs.cover[k]) in images
    ]


OUTPUT = "ocr_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register("ocr-vqa", output=OUTPUT)
def build(options: BuildOptions) -> BuildResult:
    """OCR-VQA book-cover questions → LF sharegpt rows, one per question as the authors built them (ocr_vqa_<split>)."""
    shards = find_shards(options.require_source(SOURCE_HINT), options.split)
    skips = Skips(options.strict, str(shards.folder))
    pairs = read_pairs(shards, skips)
    keep = seeded_subset(len(pairs.questions), options.limit, options.seed).tolist()
    images = write_covers(shards, pairs.offsets, np.unique(pairs.cover[keep]), options.out, skips)
    rows = lf_rows(pairs, keep, images)
    skips.report()
    dataset = OUTPUT.format(split=options.split)
    details = {
        "source_split": shards.split,
        "source_files": [path.name for path in shards.files],
        "source_covers": int(pairs.offsets[-1]),
        "source_pairs": len(pairs.questions),
        "unpaired_dropped": pairs.unpaired,
        "covers": len(images),
        "image_format": f"RGB JPEG quality {JPEG_QUALITY}",
    }
    entry = lf_dataset_entry(f"{dataset}.json")
    return export_rows(rows, dataset, options, entry, skipped=skips.items, details=details)


def _text_columns(path: Path) -> tuple[list, list]:
    """A shard's questions and answers columns, after checking it has the columns of howard-hou/OCR-VQA."""
    try:
        parquet = pq.ParquetFile(path)
        _check_schema(path, parquet.schema_arrow)
        table = parquet.read(columns=list(TEXT_COLUMNS))
    except (OSError, ValueError) as err:
        raise ForgetkitError(f"{path} is not a readable parquet file ({first_line(err)}); re-download it") from None
    return table.column(TEXT_COLUMNS[0]).to_pylist(), table.column(TEXT_COLUMNS[1]).to_pylist()


def _check_schema(path: Path, schema: pa.Schema) -> None:
    missing = [name for name in (IMAGE_COLUMN, *TEXT_COLUMNS) if name not in schema.names]
    if missing:
        raise ForgetkitError(
            f"{path} has no {', '.join(repr(name) for name in missing)} column (it has {', '.join(schema.names)}); "
            "pass the parquet of howard-hou/OCR-VQA, with image, questions and answers"
        )
    image = schema.field(IMAGE_COLUMN).type
    if not pa.types.is_struct(image) or image.get_field_index("bytes") < 0:
        raise ForgetkitError(
            f"{path}: column 'image' is {image}, not the datasets Image struct {{bytes, path}}; "
            "pass the parquet of howard-hou/OCR-VQA"
        )
    for name in TEXT_COLUMNS:
        kind = schema.field(name).type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not (
            pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
        ):
            raise ForgetkitError(
                f"{path}: column {name!r} is {kind}, not a list of strings (one per question of the cover); "
                "pass the parquet of howard-hou/OCR-VQA"
            )


def _image_cells(path: Path, rows: np.ndarray) -> Iterator[tuple[int, object]]:
    """(row, image cell) for the sorted local `rows` of a shard, reading only the row groups that hold them."""
    if not len(rows):
        return
    parquet = pq.ParquetFile(path)
    start = 0
    for group in range(parquet.num_row_groups):
        stop = start + parquet.metadata.row_group(group).num_rows
        wanted = rows[(rows >= start) & (rows < stop)]
        if len(wanted):
            try:
                column = parquet.read_row_group(group, columns=[IMAGE_COLUMN]).column(IMAGE_COLUMN)
            except (OSError, ValueError) as err:
                raise ForgetkitError(
                    f"{path}: row group {group} is unreadable ({first_line(err)}); re-download the file"
                ) from None
            for row in wanted.tolist():
                yield row, column[row - start].as_py()
        start = stop
