"""The canonical multiple-choice record every builder produces and every exporter consumes."""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass

LETTERS = string.ascii_uppercase
CLASSIFICATION_QUESTION = "What is the class of this image? Please answer with a single letter (A, B, C or D)."
"""The question of the authors' ImageNet, ImageNet-V2 and Flowers102 MCQs (no comma before "or")."""
PAPER_QUESTION = "What is the class of this image? Please answer with a single letter (A, B, C, or D)."
"""App. B.1's text, printed as the one question of every classification set; the released builders differ."""
QUESTIONS = {
    "imagenet_vqa": CLASSIFICATION_QUESTION,
    "imagenetv2_vqa": CLASSIFICATION_QUESTION,
    "flowers102_vqa": CLASSIFICATION_QUESTION,
    "caltech101_vqa": "What is the object category in this image? Please answer with a single letter (A, B, C or D).",
    "stanford_cars_vqa": (
        "What is the make and model of the car in this image? Please answer with a single letter (A, B, C or D)."
    ),
}
"""Each classification set's question, byte for byte as the authors' `data/processors/*_to_vqa_json.py` write it
(github lihe50hz/MLLM-Forgetting, commit 16d5831); keyed by the set's dataset name without its split."""


@dataclass(frozen=True)
class MCQRecord:
    """One image, one question, lettered options, one correct letter.

    `image` is the path LLaMA-Factory will resolve against its `dataset_dir`; `class_label` is the
    image's class name (kept even when it is not an option, for class-label analyses);
    `class_option` is the letter of a wrong option that spells the class name, where a builder
    planted one (ImageWikiQA with class-label distractors), so the mischoice rate can be scored;
    `instruction` is a line some released sets put after the options (ImageWikiQA's
    `Choose A, B, C, or D.`), kept so the prompt equals the release byte for byte.
    """

    id: str
    image: str
    question: str
    options: tuple[str, ...]
    answer: str
    class_label: str
    source: str
    class_option: str | None = None
    instruction: str = ""

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError(f"record {self.id}: needs at least 2 options, got {len(self.options)}")
        if len(set(self.options)) != len(self.options):
            raise ValueError(f"record {self.id}: two options share a text: {list(self.options)}")
        if self.answer not in self.letters:
            raise ValueError(f"record {self.id}: answer {self.answer!r} is not one of {self.letters}")
        if self.class_option is not None and (
            self.class_option not in self.letters or self.class_option == self.answer
        ):
            raise ValueError(f"record {self.id}: class_option {self.class_option!r} must be a wrong option's letter")

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def answer_text(self) -> str:
        return self.options[self.letters.index(self.answer)]

    def prompt(self) -> str:
        """The question, one `X. option` line per option, then the instruction if any: what the model sees."""
        lines = [self.question] + [f"{letter}. {text}" for letter, text in zip(self.letters, self.options)]
        return "\n".join(lines + [self.instruction] if self.instruction else lines)

    def to_dict(self) -> dict:
        row = asdict(self)
        row["options"] = list(self.options)
        row["answer_text"] = self.answer_text
        return row
