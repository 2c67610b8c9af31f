"""A small drawn image-classification folder, so tests and the demo need no downloaded data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")


def class_names() -> list[str]:
    return [f"{color} {shape}" for shape in SHAPES for color in COLORS]


def draw(name: str, rng: np.random.Generator, size: int) -> Image.Image:
    """One shape of the named colour at a random place and scale on a noisy background."""
    color_name, shape = name.split()
    background = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    pen = ImageDraw.Draw(image)
    radius = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, size=2))
    color = tuple(int(c) for c in np.clip(np.array(COLORS[color_name]) + rng.integers(-25, 26, 3), 0, 255))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        pen.ellipse(box, fill=color)
    elif shape == "square":
        pen.rectangle(box, fill=color)
    else:
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
    return image


def make_image_folder(
    root: Path, splits: dict[str, int] | None = None, classes: list[str] | None = None, size: int = 64, seed: int = 0
) -> Path:
    """Write `root/<split>/<folder>/<n>.png` and `root/class_names.txt` (`<folder> <class name>` lines).

    Folders are named like ImageNet synsets (`s0000000`) so the builder's name mapping is exercised.
    """
    splits = splits or {"train": 8, "val": 4}
    classes = classes or class_names()
    rng = np.random.default_rng(seed)
    folders = [f"s{index:07d}" for index in range(len(classes))]
    for split, per_class in splits.items():
        for folder, name in zip(folders, classes):
            target = root / split / folder
            target.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                draw(name, rng, size).save(target / f"{split}_{n:04d}.png")
    (root / "class_names.txt").write_text("".join(f"{f} {c}\n" for f, c in zip(folders, classes)), encoding="utf-8")
    return root
