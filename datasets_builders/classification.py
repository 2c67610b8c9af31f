"""The path every CLIP-hard classification builder shares: labelled images in, 4-option MCQs out.

A classification builder only has to find its images, their labels and the class names
(`LabelledImages`, read with `sources` and `hf_images`); `build_classification` does the rest (paper App. B.1),
asking each set's question as the authors' builders do (`forgetkit.records.QUESTIONS`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from datasets_builders.output import export, image_ref
from datasets_builders.registry import BuildOptions, BuildResult, seeded_subset
from forgetkit.clip_encoder import Clip
from forgetkit.distractors import group_names, pick_distractors, place_answers
from forgetkit.errors import ForgetkitError
from forgetkit.records import LETTERS, PAPER_QUESTION, QUESTIONS, MCQRecord

log = logging.getLogger(__name__)

QUESTION_PARAM = {
    "question": "released (default): the set's question as the authors' builder writes it; "
    "paper: App. B.1's one text for every set, '... (A, B, C, or D).'"
}
"""The `--param` every classification builder takes."""


@dataclass(frozen=True)
class LabelledImages:
    """A classification source after scanning: image files, their class index, the class names.

    `root` is what record ids are made relative to (so ids do not depend on where the data lives);
    `dropped` holds source items left out while reading (no label, no image), with the reason, for
    the manifest.
    """

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]
    root: Path
    dropped: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError("a label points outside the class list")

    def subset(self, limit: int | None, seed: int) -> LabelledImages:
        """A seeded random subset of `limit` images, kept in source order."""
        if limit is None or limit >= len(self.paths):
            return self
        keep = seeded_subset(len(self.paths), limit, seed)
        return replace(self, paths=[self.paths[i] for i in keep], labels=self.labels[keep])


def build_classification(
    images: LabelledImages, dataset: str, options: BuildOptions, *, question: str, name_source: str
) -> BuildResult:
    """`--limit` subset → CLIP-hard MCQs asking `question` → every output format plus manifest.

    The manifest counts the distinct class names (classes sharing one are one class of the MCQs) and says where
    they came from (`name_source`, e.g. `describe_choice`).
    """
    images = images.subset(options.limit, options.seed)
    records, unreadable = classification_records(images, dataset, options, question)
    skipped = {**images.dropped, **unreadable}
    distinct = len(group_names(images.class_names)[0])
    details = {"question": question, "class_names": distinct, "class_name_source": name_source}
    return export(records, dataset, options, skipped=skipped, details=details)


def classification_question(family: str, options: BuildOptions) -> str:
    """The question of set `family` (its dataset name without the split); the paper's with `--param question=paper`."""
    choice = options.param("question", "released")
    if choice not in ("released", "paper"):
        raise ForgetkitError(f"--param question={choice!r} is unknown; pass question=released or question=paper")
    return QUESTIONS[family] if choice == "released" else PAPER_QUESTION


def classification_records(
    images: LabelledImages, dataset: str, options: BuildOptions, question: str
) -> tuple[list[MCQRecord], dict[str, str]]:
    """CLIP-hard 4-option MCQs, one per readable image, deterministic for a given seed.

    Returns the records and the skipped images (path → reason); with `options.strict` an
    unreadable image raises instead.
    """
    group_texts, group_of_class = group_names(images.class_names)
    if len(group_texts) < len(images.class_names):
        log.warning(
            "%d classes share a name with another class; they count as one option text",
            len(images.class_names) - len(group_texts),
        )
    clip = Clip(options.clip)
    text_emb = clip.encode_texts(images.class_names)
    embedded = clip.encode_images(images.paths, strict=options.strict)
    skipped = {str(images.paths[i]): message for i, message in sorted(embedded.errors.items())}
    if skipped:
        first = next(iter(skipped.items()))
        log.warning(
            "skipped %d unreadable image(s), listed in the manifest; first: %s (%s). Use --strict to stop instead",
            len(skipped),
            *first,
        )
    keep = np.flatnonzero(embedded.ok)
    labels = images.labels[keep]
    rng = np.random.default_rng(options.seed)
    distractors = pick_distractors(embedded.vectors[keep], text_emb, labels, group_of_class, rng)
    truth = group_of_class[labels]
    option_groups, answers = place_answers(truth, distractors, rng)
    records = [
        MCQRecord(
            id=f"{dataset}/{_relative_id(images.paths[index], images.root)}",
            image=image_ref(images.paths[index], options.out),
            question=question,
            options=tuple(group_texts[g] for g in row),
            answer=LETTERS[answer],
            class_label=group_texts[truth[i]],
            source=dataset,
        )
        for i, (index, row, answer) in enumerate(zip(keep, option_groups, answers))
    ]
    return records, skipped


def _relative_id(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).with_suffix("").as_posix()
    except ValueError:
        return Path(path).stem
