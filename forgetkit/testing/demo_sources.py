"""Drawn stand-ins for the demo's other sources, each written in the released layout its real builder reads.

- `write_ood_image_folder`: unseen classes (stars, crosses, rings in new colours on light stripes) as an
  ImageFolder for `flowers102-vqa`: the classification question on out-of-distribution images (ID^T-OOD^I).
- `write_imagewikiqa`: an `imagewikiqa.jsonl` release over the training shapes, asking knowledge questions
  about the shape or its colour instead of its class (OOD^T-ID^I).
- `write_mllm_cl`: an MLLM-CL tree with two domains, RS (aerial views: is there a road?) and Med (stained
  slides: what colour are the cells?), for the continual-learning sequence. Each domain has its own answer
  words, so forgetting the first task shows up as the second task's answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from forgetkit import atomic
from forgetkit.records import LETTERS
from forgetkit.testing.synthetic import OOD_COLORS, OOD_SHAPES, class_names, draw, make_image_folder

IMAGE_SIZE = 64
WIKI_INSTRUCTION = "Choose A, B, C, or D."
"""The line ImageWikiQA's release puts after the options."""


class WikiQuestion(NamedTuple):
    """A knowledge question about one part of a `"<colour> <shape>"` class: its answer per colour or shape."""

    text: str
    about: str
    answers: Mapping[str, str]
    options: tuple[str, ...]


WIKI_QUESTIONS = (
    WikiQuestion(
        "How many corners does this shape have?",
        "shape",
        {"circle": "None", "triangle": "Three", "square": "Four"},
        ("None", "Three", "Four", "Six"),
    ),
    WikiQuestion(
        "Which everyday thing has this shape?",
        "shape",
        {"circle": "A coin", "triangle": "A slice of pizza", "square": "A chessboard"},
        ("A coin", "A slice of pizza", "A chessboard", "A banana"),
    ),
    WikiQuestion(
        "Which fruit usually has this colour?",
        "colour",
        {"red": "Strawberry", "green": "Lime", "blue": "Blueberry", "yellow": "Banana"},
        ("Strawberry", "Lime", "Blueberry", "Banana"),
    ),
    WikiQuestion(
        "Which of these is usually this colour?",
        "colour",
        {"red": "A fire truck", "green": "Grass", "blue": "A clear sky", "yellow": "A school bus"},
        ("A fire truck", "Grass", "A clear sky", "A school bus"),
    ),
)


class Domain(NamedTuple):
    """One MLLM-CL domain: its question, its two answers, and how an image showing each answer is drawn."""

    question: str
    answers: tuple[str, str]
    draw: Callable[[str, np.random.Generator, int], Image.Image]


def write_ood_image_folder(root: Path, per_class: int = 3, seed: int = 1) -> Path:
    """`root/test/<folder>/*.png` + `root/class_names.txt`: 12 classes the training shapes never show."""
    classes = class_names(OOD_SHAPES, OOD_COLORS)
    return make_image_folder(root, splits={"test": per_class}, classes=classes, seed=seed, background="stripes")


def write_imagewikiqa(root: Path, seed: int = 2) -> Path:
    """`root/imagewikiqa.jsonl` + `root/images/`: one image per training class, one shape and one colour
    question about each (options shuffled), in VLMClassifier's release format."""
    rng = np.random.default_rng(seed)
    shape_questions = [q for q in WIKI_QUESTIONS if q.about == "shape"]
    colour_questions = [q for q in WIKI_QUESTIONS if q.about == "colour"]
    rows = []
    for index, name in enumerate(class_names()):
        colour, shape = name.split()
        image = f"images/{name.replace(' ', '_')}.png"
        _save(draw(name, rng, IMAGE_SIZE), root / image)
        pairs = (
            (shape_questions[index % len(shape_questions)], shape),
            (colour_questions[index % len(colour_questions)], colour),
        )
        for question, key in pairs:
            options = [question.options[k] for k in rng.permutation(len(question.options))]
            letters = LETTERS[: len(options)]
            text = "\n".join(
                [question.text, *(f"{letter}. {option}" for letter, option in zip(letters, options)), WIKI_INSTRUCTION]
            )
            rows.append(
                {
                    "image": image,
                    "text": text,
                    "label": letters[options.index(question.answers[key])],
                    "classname": name,
                    "wiki": f"A {name} is a {shape} drawn in {colour}.",
                }
            )
    atomic.write_jsonl(root / "imagewikiqa.jsonl", rows)
    return root


def draw_aerial(answer: str, rng: np.random.Generator, size: int) -> Image.Image:
    """Fields and small roofs seen from above; a grey road crosses the view when the answer is yes."""
    field = np.array([(70, 130, 50), (120, 110, 60)][int(rng.integers(2))])
    pixels = np.clip(field + rng.integers(-20, 21, size=(size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    pen = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x, y = (int(v) for v in rng.integers(0, size - 8, size=2))
        side = int(rng.integers(4, 8))
        pen.rectangle((x, y, x + side, y + side), fill=(150, 70, 50))
    if answer == "yes":
        at, width = int(rng.integers(size // 4, 3 * size // 4)), int(rng.integers(5, 9))
        ends = ((0, at), (size, at)) if rng.integers(2) else ((at, 0), (at, size))
        pen.line(ends, fill=(125, 125, 125), width=width)
    return image


def draw_slide(answer: str, rng: np.random.Generator, size: int) -> Image.Image:
    """A pale slide with scattered cells stained blue or red."""
    pixels = np.clip(np.array((235, 215, 220)) + rng.integers(-12, 13, size=(size, size, 3)), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8))
    pen = ImageDraw.Draw(image)
    stain = np.array({"blue": (70, 60, 170), "red": (200, 50, 70)}[answer])
    for _ in range(int(rng.integers(15, 30))):
        x, y = (int(v) for v in rng.integers(0, size, size=2))
        r = int(rng.integers(2, 5))
        color = tuple(int(c) for c in np.clip(stain + rng.integers(-25, 26, 3), 0, 255))
        pen.ellipse((x - r, y - r, x + r, y + r), fill=color)
    return image


DOMAINS = {
    "RS": Domain("Is there a road in this image?", ("yes", "no"), draw_aerial),
    "Med": Domain("What color are the stained cells?", ("blue", "red"), draw_slide),
}


def write_mllm_cl(root: Path, train: int = 20, test: int = 10, seed: int = 3) -> Path:
    """`root/<domain>/{images/, train.json, test.json}` for RS and Med, as MLLM-CL's release lays them out.

    Answers alternate, so every split holds both answers of its domain equally often.
    """
    for offset, (name, domain) in enumerate(DOMAINS.items()):
        rng = np.random.default_rng([seed, offset])
        folder = root / name
        conversations = []
        for i in range(train):
            answer = domain.answers[i % 2]
            image = f"images/train_{i:04d}.png"
            _save(domain.draw(answer, rng, IMAGE_SIZE), folder / image)
            turns = [{"from": "human", "value": f"<image>\n{domain.question}"}, {"from": "gpt", "value": answer}]
            conversations.append({"id": f"{name.lower()}_train_{i:04d}", "image": image, "conversations": turns})
        questions = []
        for i in range(test):
            answer = domain.answers[i % 2]
            image = f"images/test_{i:04d}.png"
            _save(domain.draw(answer, rng, IMAGE_SIZE), folder / image)
            questions.append({"question_id": i, "image": image, "text": domain.question, "answer": answer})
        atomic.write_json(folder / "train.json", conversations)
        atomic.write_json(folder / "test.json", questions)
    return root


def _save(image: Image.Image, path: Path) -> None:
    with atomic.atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")
