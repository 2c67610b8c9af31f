"""A small drawn image-classification folder, so tests and the demo need no downloaded data.

The training classes are circles, squares and triangles in four colours on dark noise; `OOD_SHAPES` in
`OOD_COLORS` on light stripes are classes whose images look nothing like them (the demo's ID^T-OOD^I set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
OOD_COLORS = {"purple": (140, 50, 200), "orange": (245, 140, 20), "cyan": (20, 190, 210), "pink": (240, 90, 170)}
OOD_SHAPES = ("star", "cross", "ring")
PALETTE = COLORS | OOD_COLORS
BACKGROUNDS = ("noise", "stripes")


def class_names(shapes: Sequence[str] = SHAPES, colors: Mapping[str, object] = COLORS) -> list[str]:
    return [f"{color} {shape}" for shape in shapes for color in colors]


def _background(kind: str, rng: np.random.Generator, size: int) -> Image.Image:
    """Dark per-pixel noise, or light diagonal stripes of two random tones and a random width."""
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8))
    if kind == "stripes":
        width = int(rng.integers(4, 9))
        tones = rng.integers(150, 240, size=(2, 3), dtype=np.uint8)
        rows, cols = np.indices((size, size))
        return Image.fromarray(tones[((rows + cols) // width) % 2])
    raise ValueError(f"unknown background {kind!r}; choose one of {BACKGROUNDS}")


def _star(cx: int, cy: int, radius: int) -> list[tuple[float, float]]:
    angles = np.pi * (np.arange(10) / 5 - 0.5)
    radii = np.where(np.arange(10) % 2, 0.45 * radius, radius)
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)]


def _paint(pen: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, radius: int, color: tuple[int, ...]) -> None:
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    bar = max(2, radius // 3)
    if shape == "circle":
        pen.ellipse(box, fill=color)
    elif shape == "square":
        pen.rectangle(box, fill=color)
    elif shape == "triangle":
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=color)
    elif shape == "star":
        pen.polygon(_star(cx, cy, radius), fill=color)
    elif shape == "cross":
        pen.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=color)
        pen.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=color)
    elif shape == "ring":
        pen.ellipse(box, outline=color, width=bar)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES + OOD_SHAPES}")


def draw(name: str, rng: np.random.Generator, size: int, background: str = "noise") -> Image.Image:
    """One shape of the named colour (`"<colour> <shape>"`) at a random place and scale on a background."""
    color_name, shape = name.split()
    image = _background(background, rng, size)
    radius = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(radius, size - radius, size=2))
    color = tuple(int(c) for c in np.clip(np.array(PALETTE[color_name]) + rng.integers(-25, 26, 3), 0, 255))
    _paint(ImageDraw.Draw(image), shape, cx, cy, radius, color)
    return image


def make_image_folder(
    root: Path,
    splits: dict[str, int] | None = None,
    classes: list[str] | None = None,
    size: int = 64,
    seed: int = 0,
    background: str = "noise",
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
                draw(name, rng, size, background).save(target / f"{split}_{n:04d}.png")
    (root / "class_names.txt").write_text("".join(f"{f} {c}\n" for f, c in zip(folders, classes)), encoding="utf-8")
    return root
