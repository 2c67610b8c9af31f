"""Reading ImageWikiQA's release into `Question`s, for the `imagewikiqa` builders.

`--source` is one of the files it has been released as:

- `imagewikiqa.jsonl` (VLMClassifier `data/`, copied to github.com/lihe50hz/MLLM-Forgetting `data/`): one
  object per line, `{"image", "text", "label", "classname", "wiki"}`. `text` is the question, one `X. option`
  line per option, then `Choose A, B, C, or D.`; `label` is the letter; `image` a path to the JPEG
  (`images/ILSVRC2012_val_*.JPEG`, or `vlm-forgetting-datasets/imagewikiqa-vqa-json/images/...`).
- VLMClassifier's first release of that file: `{"image": ".../val/<wnid>/ILSVRC2012_val_*.JPEG", "text",
  "label", "category", "question_id"}`; the class comes from the wnid folder via open_clip's ImageNet names
  (the same names the later `classname` field holds; `--class-names` can override the wnid map).
- The MLLM-Forgetting authors' LF conversions (`data/processors/imagewikiqa_to_vqa*.py` in that repo's
  history): a JSON list `{"image": path, "prompt": "<image>\\n" + text, "response": letter}`
  (`imagewikiqa-vqa-json/test/test.json`), or `imagewikiqa-0000N-of-0000M.parquet` files with the same
  columns and the image as bytes. Embedded images are written once to `OUT/images/imagewikiqa/<sha256>.<ext>`
  (atomic, content-named, so a rerun reuses them). These files name no class: the class-label variant
  needs one of the jsonl files.

`--source` may also be a folder holding one of those files (`imagewikiqa.jsonl`, `data/imagewikiqa.jsonl`,
`test/test.json`, `imagewikiqa.json`, or `*.parquet`). Recorded image paths are looked up under
`--param image_root` (default: the source folder, or the file's folder) as the longest tail of the path
that exists there, so the root can be a repository checkout, an `images/` folder or ImageNet's val folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import pyarrow.parquet as pq
from PIL import Image

from datasets_builders.imagenet_classes import imagenet_wnid_names
from datasets_builders.output import write_image
from datasets_builders.registry import BuildOptions, Skips, seeded_subset
from datasets_builders.sources import IMAGE_ERRORS, read_class_names
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import IMAGE_TOKEN
from forgetkit.records import LETTERS

log = logging.getLogger(__name__)

SOURCE_FILES = ("imagewikiqa.jsonl", "data/imagewikiqa.jsonl", "test/test.json", "imagewikiqa.json")
"""What a `--source` folder is searched for, in order, before `*.parquet`."""
OPTION_LINE = re.compile(r"([A-Z])\. (.*)")
WNID = re.compile(r"n\d{8}")
IMAGE_FOLDER = Path("images") / "imagewikiqa"
"""Where embedded image bytes are written, under `--out`."""


class MalformedRow(ValueError):
    """A source row that cannot become a question; the message says what is wrong with it."""


@dataclass(frozen=True)
class Question:
    """One parsed source row: where it came from, its text split into parts, its image and class."""

    item: str
    index: int
    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    instruction: str
    image: Path
    class_name: str | None


@dataclass(frozen=True)
class _Row:
    item: str
    index: int
    fields: dict


class _Parsed(NamedTuple):
    question: str
    options: tuple[str, ...]
    answer: str
    instruction: str
    class_name: str | None
    question_id: str | None


@dataclass(frozen=True)
class _Loaded:
    questions: list[Question]
    skipped: dict[str, str]
    source_format: str
    rows: int
    """How many source rows there are (before `--limit`), which per-row seeded draws are indexed by."""


def split_text(text: str) -> tuple[str, tuple[str, ...], str]:
    """`question\\nA. x\\nB. y...\\ninstruction` → (question, options, instruction).

    The options are the last run of `X. text` lines lettered A, B, C...; what precedes is the question,
    what follows the instruction (may be empty).
    """
    lines = text.split("\n")
    matches = [OPTION_LINE.fullmatch(line) for line in lines]
    option_rows = [i for i, match in enumerate(matches) if match]
    if not option_rows:
        raise MalformedRow("the text has no 'A. ...' option lines")
    last = first = option_rows[-1]
    while first > 0 and matches[first - 1]:
        first -= 1
    starts = [i for i in range(first, last + 1) if matches[i].group(1) == "A"]
    if not starts:
        raise MalformedRow("the option lines do not start at 'A.'")
    first = starts[-1]
    letters = "".join(matches[i].group(1) for i in range(first, last + 1))
    if letters != LETTERS[: len(letters)]:
        raise MalformedRow(f"the option letters run {letters!r}, expected {LETTERS[: len(letters)]!r}")
    if len(letters) < 2:
        raise MalformedRow("the text has a single option")
    question = "\n".join(lines[:first])
    if not question.strip():
        raise MalformedRow("the text has no question before its options")
    options = tuple(matches[i].group(2) for i in range(first, last + 1))
    empty = [LETTERS[k] for k, option in enumerate(options) if not option.strip()]
    if empty:
        raise MalformedRow(f"option {empty[0]} is empty")
    folded = [fold(option) for option in options]
    if len(set(folded)) < len(folded):
        twice = next(option for k, option in enumerate(options) if folded.index(folded[k]) != k)
        raise MalformedRow(f"two options read {twice!r}")
    return question, options, "\n".join(lines[last + 1 :])


def resolve_image(recorded: str, root: Path) -> Path | None:
    """The file a recorded image path points at: itself if absolute and present, else the longest tail of
    it that exists under `root`; None when nothing does."""
    if Path(recorded).is_absolute() and Path(recorded).is_file():
        return Path(recorded)
    parts = [part for part in PurePosixPath(recorded.replace("\\", "/")).parts if part not in ("/", ".", "..")]
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    return None


def image_problem(image: Path | bytes) -> str | None:
    """Why an image cannot be decoded (None if it can); JPEGs decode at reduced size, which still reads every block."""
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            opened.draft("RGB", (64, 64))
            opened.load()
    except IMAGE_ERRORS as err:
        return f"cannot read image: {type(err).__name__}: {err}"
    return None


def materialize_image(data: bytes, folder: Path) -> Path:
    """Write image bytes once to `folder/<sha256>.<ext>`, named by their content (`output.write_image`: a rerun
    keeps a file that holds them)."""
    with Image.open(io.BytesIO(data)) as opened:
        extension = (opened.format or "bin").lower().replace("jpeg", "jpg")
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
    folder.mkdir(parents=True, exist_ok=True)
    write_image(path, data)
    return path


def find_source(options: BuildOptions) -> tuple[list[Path], Path]:
    """The source file(s) and the default image root."""
    source = options.require_source("imagewikiqa.jsonl, the authors' test.json or parquet files, or their folder")
    if source.is_file():
        return [source], source.parent
    for name in SOURCE_FILES:
        if (source / name).is_file():
            return [source / name], source
    parquet = sorted(source.glob("*.parquet"))
    if parquet:
        return parquet, source
    raise ForgetkitError(
        f"{source} holds none of {', '.join(SOURCE_FILES)} or *.parquet; pass the ImageWikiQA file itself"
    )


def read_json_rows(path: Path) -> Iterator[_Row | tuple[str, str]]:
    """Rows of a JSON list or a JSONL file; a JSONL line that is not JSON comes back as (item, reason)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ForgetkitError(f"{path} is not valid JSON ({err}); re-download it") from None
        for index, row in enumerate(rows):
            yield _Row(f"{path}[{index}]", index, row)
        return
    index = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield _Row(f"{path}:{number}", index, json.loads(line))
        except json.JSONDecodeError as err:
            yield f"{path}:{number}", f"not valid JSON ({err.msg})"
        index += 1


def parse_fields(fields: object) -> _Parsed:
    """A source row's text, answer letter, and class name and question id where it has them."""
    if not isinstance(fields, dict):
        raise MalformedRow(f"row is a {type(fields).__name__}, not an object")
    text = _first(fields, "text", "prompt")
    label = _first(fields, "label", "response")
    if text.startswith(IMAGE_TOKEN):
        text = text.removeprefix(IMAGE_TOKEN).removeprefix("\n")
    question, options, instruction = split_text(text)
    answer = label.strip()
    if answer not in LETTERS[: len(options)]:
        raise MalformedRow(f"answer {label!r} is not one of the option letters {LETTERS[: len(options)]}")
    name = fields.get("classname")
    qid = fields.get("question_id")
    return _Parsed(
        question,
        options,
        answer,
        instruction,
        name.strip() if isinstance(name, str) and name.strip() else None,
        str(qid) if qid is not None else None,
    )


def load_questions(options: BuildOptions, dataset: str) -> _Loaded:
    """Parse the `--limit` subset of the source rows into questions with readable images.

    Malformed rows and missing or unreadable images are skipped with their reason (or raise with `--strict`).
    """
    files, default_root = find_source(options)
    image_root = Path(options.param("image_root") or default_root)
    if not image_root.is_dir():
        raise ForgetkitError(f"image_root {image_root} is not a folder; pass --param image_root=<folder of images>")
    wnid_names = read_class_names(options.class_names) if options.class_names else imagenet_wnid_names()
    skips = Skips(options.strict, dataset)
    skip = skips.add

    parquet = files[0].suffix == ".parquet"
    rows = _parquet_rows(files) if parquet else list(read_json_rows(files[0]))
    keep = set(seeded_subset(len(rows), options.limit, options.seed).tolist())
    parsed: list[tuple[_Row, _Parsed]] = []
    for position, row in enumerate(rows):
        if position not in keep:
            continue
        if isinstance(row, tuple):
            skip(*row)
            continue
        try:
            parsed.append((row, parse_fields(row.fields)))
        except MalformedRow as err:
            skip(row.item, str(err))

    if parquet:
        images = _embedded_images(files, [row.index for row, _ in parsed], options.out / IMAGE_FOLDER)
    else:
        images = _linked_images([row.fields.get("image") for row, _ in parsed], image_root)
    questions = []
    for (row, fields), image in zip(parsed, images):
        if isinstance(image, str):
            skip(row.item, image)
            continue
        recorded = row.fields.get("image")
        wnid_class = _wnid_class(recorded, wnid_names) if isinstance(recorded, str) else None
        questions.append(
            Question(
                item=row.item,
                index=row.index,
                id=f"{dataset}/{fields.question_id or f'{row.index:05d}'}",
                question=fields.question,
                options=fields.options,
                answer=fields.answer,
                instruction=fields.instruction,
                image=image,
                class_name=fields.class_name or wnid_class,
            )
        )
    skips.report()
    return _Loaded(questions, skips.items, "parquet" if parquet else _json_format(files[0]), len(rows))


def _first(fields: dict, *names: str) -> str:
    for name in names:
        if name in fields:
            value = fields[name]
            if not isinstance(value, str) or not value.strip():
                raise MalformedRow(f"{name!r} must be non-empty text, got {value!r}")
            return value
    raise MalformedRow(f"no {' or '.join(repr(name) for name in names)} field")


def fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _wnid_class(recorded: str, wnid_names: dict[str, str]) -> str | None:
    folders = PurePosixPath(recorded.replace("\\", "/")).parts[:-1]
    wnids = [part for part in folders if WNID.fullmatch(part)]
    return wnid_names.get(wnids[-1]) if wnids else None


def _json_format(path: Path) -> str:
    with open(path, encoding="utf-8") as handle:
        return "json" if handle.read(4096).lstrip().startswith("[") else "jsonl"


def _linked_images(recorded: Sequence[object], root: Path) -> list[Path | str]:
    """Each row's image file, or why it has none; every distinct file is resolved and decoded once, in threads."""
    unique = sorted({path for path in recorded if isinstance(path, str) and path})
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        found = dict(zip(unique, pool.map(lambda path: resolve_image(path, root), unique)))
        readable = [path for path in found.values() if path is not None]
        problems = dict(zip(readable, pool.map(image_problem, readable)))
    results: list[Path | str] = []
    for path in recorded:
        if not isinstance(path, str) or not path:
            results.append(f"'image' must be a path, got {path!r}")
        elif found[path] is None:
            results.append(f"image {path} not found under {root} (set --param image_root)")
        else:
            results.append(problems[found[path]] or found[path])
    return results


def _parquet_rows(files: Sequence[Path]) -> list[_Row]:
    """Every row of the parquet files but its image bytes, which `_embedded_images` streams later."""
    rows = []
    for path in files:
        columns = [name for name in pq.ParquetFile(path).schema_arrow.names if name != "image"]
        table = pq.read_table(path, columns=columns)
        for index, fields in enumerate(table.to_pylist()):
            rows.append(_Row(f"{path}[{index}]", len(rows), {**fields, "image": None}))
    return rows


def _embedded_images(files: Sequence[Path], wanted: Sequence[int], folder: Path) -> list[Path | str]:
    """Stream the `image` column and write the wanted rows' images to `folder`; a row's path or why it has none."""
    wanted_set = set(wanted)
    found: dict[int, Path | str] = {}
    offset = 0
    for path in files:
        parquet = pq.ParquetFile(path)
        if "image" not in parquet.schema_arrow.names:
            raise ForgetkitError(f"{path} has no 'image' column; expected the authors' image/prompt/response parquet")
        for batch in parquet.iter_batches(batch_size=64, columns=["image"]):
            for position, cell in enumerate(batch.column(0).to_pylist(), start=offset):
                if position in wanted_set:
                    found[position] = _store_cell(cell, folder)
            offset += batch.num_rows
    return [found[index] for index in wanted]


def _store_cell(cell: object, folder: Path) -> Path | str:
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes) or not data:
        return "the row has no image bytes"
    problem = image_problem(data)
    return problem if problem else materialize_image(data, folder)
