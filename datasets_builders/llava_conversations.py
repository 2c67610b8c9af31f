"""LLaVA's conversation format → LF sharegpt rows, shared by llava-665k and mllm-cl (whose train.json rows are
LLaVA conversations).

Conversations are normalised the way LLaVA's own training loader does before LF sees them: leading gpt turns
are dropped and the one `<image>` moves to the start of its turn (`<image>\\n...`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from datasets_builders.output import image_ref
from datasets_builders.registry import BuildOptions, Skips
from datasets_builders.sources import existing_files
from forgetkit.exporters import IMAGE_TOKEN

ROLES = {"human": "user", "gpt": "assistant"}


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
