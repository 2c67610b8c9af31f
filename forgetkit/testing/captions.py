"""A tiny LLaMA-Factory caption set over drawn shapes: held-out prompts that are not multiple choice.

The drift probe needs prompts whose right answer is no option letter, so that probability moved onto the
letters shows a fine-tuned model's bias rather than a right answer. Offline, the drawn shapes give them:
each image is asked for a caption, and the reference caption names its colour, shape and background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets_builders import BuildOptions
from datasets_builders.output import export_rows
from forgetkit import atomic
from forgetkit.exporters import IMAGE_TOKEN, lf_dataset_entry
from forgetkit.testing.synthetic import BACKGROUNDS, class_names, draw

CAPTION_PROMPTS = (
    "Describe this image in one sentence.",
    "Write a short caption for this picture.",
    "What does this image show?",
)
BACKGROUND_WORDS = {"noise": "a dark noisy background", "stripes": "light diagonal stripes"}


def caption(name: str, background: str) -> str:
    return f"A {name} on {BACKGROUND_WORDS[background]}."


def write_caption_set(
    dataset_dir: Path, name: str = "shape_captions", per_class: int = 1, size: int = 64, seed: int = 0
) -> Path:
    """`dataset_dir/<name>.json` (LF sharegpt rows), its images in `dataset_dir/<name>/`, its
    `dataset_info.json` entry (other entries kept) and its manifest, as a build leaves them; returns the JSON file.

    Every training class is drawn `per_class` times on each background, asked one of `CAPTION_PROMPTS` in turn.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for background in BACKGROUNDS:
        for class_name in class_names():
            for _ in range(per_class):
                image = f"{name}/{len(rows):04d}.png"
                with atomic.atomic_open(dataset_dir / image, "wb") as handle:
                    draw(class_name, rng, size, background).save(handle, format="PNG")
                prompt = CAPTION_PROMPTS[len(rows) % len(CAPTION_PROMPTS)]
                messages = [
                    {"role": "user", "content": f"{IMAGE_TOKEN}\n{prompt}"},
                    {"role": "assistant", "content": caption(class_name, background)},
                ]
                rows.append({"messages": messages, "images": [image]})
    export_rows(rows, name, BuildOptions(None, dataset_dir, tsv=False), lf_dataset_entry(f"{name}.json"))
    return dataset_dir / f"{name}.json"
