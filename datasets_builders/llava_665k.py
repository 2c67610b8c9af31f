"""LLaVA-665K (LLaVA-1.5's visual instruction mix) -> LF sharegpt rows, the general data of the paper's
data-hybrid recipe (§4.3, Fig. 4); its `ocr_vqa/` part is a stand-in for the OCR-VQA arm, which the authors
built from HF OCR-VQA instead (`build-data ocr-vqa`).

Source: `llava_v1_5_mix665k.json` (HF liuhaotian/LLaVA-Instruct-150K), one JSON list of
`{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}, ...]}`; rows without "image" are
text-only (ShareGPT). Image paths are relative to LLaVA's `playground/data` folder, laid out as LLaVA's
docs/Data.md says: coco/train2017, gqa/images, ocr_vqa/images, textvqa/train_images,
vg/VG_100K(_2). `--source` is the JSON file (or its folder); `--param image_root=DIR` says where those
image folders live (default: the JSON's folder).

Conversations are normalised the way LLaVA's own training loader does before LF sees them: leading
gpt turns are dropped and the one `<image>` moves to the start of its turn (`<image>\\n...`).
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from datasets_builders.classification import image_ref
from datasets_builders.output import export_rows
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import IMAGE_TOKEN, lf_dataset_entry
from forgetkit.jsonfile import read_json

JSON_NAME = "llava_v1_5_mix665k.json"
ROLES = {"human": "user", "gpt": "assistant"}
SUBSETS = ("coco", "gqa", "ocr_vqa", "textvqa", "vg", "text")
"""`--param subset` values: the first folder of the image path, or `text` for the text-only rows."""


class MalformedRow(ValueError):
    """A source row LF could not train on; the message says what is wrong with it."""


def llava_messages(conversations: object, n_images: int) -> tuple[list[dict], int]:
    """LLaVA `conversations` → LF messages, plus how many leading gpt turns were dropped.

    LF needs strict user/assistant pairs and one `<image>` per image; anything else raises MalformedRow.
    """
    if not isinstance(conversations, list) or not conversations:
        raise MalformedRow("no conversation turns")
    turns = list(conversations)
    dropped = 0
    while turns and isinstance(turns[0], dict) and turns[0].get("from") == "gpt":
        turns.pop(0)
        dropped += 1
    if not turns or len(turns) % 2:
        raise MalformedRow(f"{len(turns)} turns after {dropped} leading gpt turn(s); LF needs human/gpt pairs")
    messages = []
    for index, turn in enumerate(turns):
        expected = "gpt" if index % 2 else "human"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            found = turn.get("from") if isinstance(turn, dict) else type(turn).__name__
            raise MalformedRow(
                f"turn {index + dropped} is from {found!r}, expected {expected!r} (turns must alternate)"
            )
        if not isinstance(turn.get("value"), str):
            raise MalformedRow(f"turn {index + dropped} has no text value")
        messages.append({"role": ROLES[expected], "content": turn["value"]})
    tokens = [message["content"].count(IMAGE_TOKEN) for message in messages]
    if sum(tokens) != n_images:
        raise MalformedRow(f"{sum(tokens)} {IMAGE_TOKEN} tokens for {n_images} image(s)")
    if n_images:
        message = messages[tokens.index(1)]
        if message["role"] != "user":
            raise MalformedRow(f"{IMAGE_TOKEN} is in a gpt turn")
        message["content"] = f"{IMAGE_TOKEN}\n{message['content'].replace(IMAGE_TOKEN, '').strip()}"
    return messages, dropped


def existing_files(root: Path, relative: Sequence[str]) -> np.ndarray:
    """Whether each `root/relative[i]` exists, listing every folder once (665K stats on a network disk are slow)."""
    by_folder: dict[str, list[int]] = defaultdict(list)
    for index, path in enumerate(relative):
        by_folder[posixpath.dirname(path)].append(index)
    found = np.zeros(len(relative), dtype=bool)
    for folder, indices in by_folder.items():
        try:
            names = set(os.listdir(root / folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for index in indices:
            found[index] = posixpath.basename(relative[index]) in names
    return found


def load_json_list(path: Path) -> list:
    """A JSON list file, with a one-line error for anything else."""
    return read_json(path, list, "check --source, or re-download the file")


def convert_conversations(
    raw: Sequence, indices: Iterable[int], image_root: Path, options: BuildOptions, label: str
) -> tuple[list[dict], list[int], dict[str, str], int]:
    """LLaVA-format rows (`raw[i]` for i in `indices`) → LF rows, their source indices, skipped rows
    (with the reason) and the leading gpt turns dropped from kept rows; with `options.strict` a bad row raises."""
    kept: list[tuple[int, list[dict], str | None, int]] = []
    skips = Skips(options.strict, label)

    def skip(index: int, reason: str) -> None:
        item = f"{label}[{index}]"
        row_id = raw[index].get("id") if isinstance(raw[index], dict) else None
        skips.add(f"{item} id={row_id}" if row_id is not None else item, reason)

    for index in indices:
        row = raw[index]
        if not isinstance(row, dict):
            skip(index, f"row is a {type(row).__name__}, not an object")
            continue
        image = row.get("image")
        if image is not None and (not isinstance(image, str) or not image):
            skip(index, f"'image' must be one relative path, got {image!r}")
            continue
        try:
            messages, leading = llava_messages(row.get("conversations"), 0 if image is None else 1)
        except MalformedRow as err:
            skip(index, str(err))
            continue
        kept.append((index, messages, image, leading))

    with_image = [k for k, (_, _, image, _) in enumerate(kept) if image is not None]
    found = existing_files(image_root, [kept[k][2] for k in with_image])
    missing = {with_image[k] for k in np.flatnonzero(~found)}
    for k in sorted(missing):
        skip(kept[k][0], f"image {image_root / kept[k][2]} does not exist")
    root_ref = image_ref(image_root, options.out)
    kept = [row for k, row in enumerate(kept) if k not in missing]
    rows = [
        {"messages": messages, "images": [] if image is None else [posixpath.join(root_ref, image)]}
        for _, messages, image, _ in kept
    ]
    skips.report()
    return rows, [row[0] for row in kept], skips.items, sum(row[3] for row in kept)


def subset_of(row: object) -> str | None:
    """Which `--param subset` a source row belongs to (None: a row too malformed to say)."""
    if not isinstance(row, dict):
        return None
    image = row.get("image")
    if image is None:
        return "text"
    return image.split("/", 1)[0] if isinstance(image, str) else None


@register(
    "llava-665k",
    params={
        "image_root": "folder holding LLaVA's coco/, gqa/, ocr_vqa/, textvqa/, vg/ (default: the JSON's folder)",
        "subset": f"keep one part: {', '.join(SUBSETS)} (output llava_665k_<subset>)",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """LLaVA-665K instruction mix → LF sharegpt conversations (llava_665k, or llava_665k_<subset>)."""
    source = options.require_source(f"{JSON_NAME} (or the folder holding it)")
    json_path = source / JSON_NAME if source.is_dir() else source
    image_root = Path(options.param("image_root") or json_path.parent)
    if not image_root.is_dir():
        raise ForgetkitError(f"image_root {image_root} is not a folder; pass --param image_root=<LLaVA's data folder>")
    subset = options.param("subset")
    if subset is not None and subset not in SUBSETS:
        raise ForgetkitError(f"unknown subset {subset!r}; choose one of: {', '.join(SUBSETS)}")
    raw = load_json_list(json_path)
    candidates = range(len(raw)) if subset is None else [i for i, row in enumerate(raw) if subset_of(row) == subset]
    if not candidates:
        raise ForgetkitError(f"{json_path}: no rows in subset {subset!r}")
    rows, sources, skipped, dropped = convert_conversations(raw, candidates, image_root, options, json_path.name)
    keep = seeded_subset(len(rows), options.limit, options.seed)
    dataset = "llava_665k" if subset is None else f"llava_665k_{subset}"
    counts: dict[str, int] = defaultdict(int)
    for k in keep:
        counts[subset_of(raw[sources[k]])] += 1
    details = {
        "image_root": str(image_root.resolve()),
        "source_rows": len(raw),
        "subset_rows": dict(sorted(counts.items())),
        "leading_gpt_turns_dropped": dropped,
    }
    entry = lf_dataset_entry(f"{dataset}.json")
    return export_rows([rows[k] for k in keep], dataset, options, entry, skipped=skipped, details=details)
