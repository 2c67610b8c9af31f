"""The path every CLIP-hard classification builder shares: labelled images in, 4-option MCQs out.

A classification builder only has to find its images, their labels and the class names
(`LabelledImages`); `build_classification` does the rest (paper App. B.1), asking each set's question as the
authors' builders do (`forgetkit.records.QUESTIONS`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from datasets_builders.output import export
from datasets_builders.registry import BuildOptions, BuildResult, seeded_subset
from forgetkit.clip_encoder import Clip
from forgetkit.distractors import group_names, pick_distractors, place_answers
from forgetkit.errors import ForgetkitError
from forgetkit.records import LETTERS, PAPER_QUESTION, QUESTIONS, MCQRecord

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
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


def class_name_choice(options: BuildOptions, lists: Sequence[str]) -> str | Path:
    """What `--class-names` asks for: one of the builder's named lists (the first is the default) or a file."""
    value = options.class_names
    if value is None:
        return lists[0]
    if str(value) in lists:
        return str(value)
    if not value.is_file():
        raise ForgetkitError(
            f"--class-names {value} is neither a file nor one of this builder's lists ({', '.join(lists)}); "
            "pass one of them or a file of '<key> <class name>' lines"
        )
    return value


def describe_choice(choice: str | Path) -> str:
    """A `class_name_choice` as the manifest records it: the list's name, or the file's name and content hash
    (not its path, so the same names give the same manifest wherever they live)."""
    if isinstance(choice, Path):
        return f"file {choice.name} (sha256 {hashlib.sha256(choice.read_bytes()).hexdigest()})"
    return choice


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


def scan_class_folders(root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[str], list[Path], np.ndarray]:
    """An ImageFolder tree: one sub-folder per class, images inside; sorted, so order is stable.

    Folders named in `skip` (lower-cased) are not classes. A folder without images is refused, as torchvision's
    ImageFolder refuses it (the authors' ImageNet builder reads with it): kept, it would be a class of no image
    offered only as a distractor.
    """
    if not root.is_dir():
        raise ForgetkitError(f"source folder {root} does not exist; pass the folder holding one sub-folder per class")
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name.lower() not in skip
    )
    paths: list[Path] = []
    labels: list[int] = []
    empty: list[str] = []
    for index, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths.extend(files)
        labels.extend([index] * len(files))
        if not files:
            empty.append(folder.name)
    extensions = ", ".join(sorted(IMAGE_SUFFIXES))
    if not paths:
        raise ForgetkitError(
            f"no images found under {root}; expected {root}/<class>/<image>.jpg (extensions: {extensions})"
        )
    if empty:
        raise ForgetkitError(
            f"{len(empty)} class folder(s) under {root} hold no images, e.g. {empty[0]!r}; an empty folder would be "
            f"a class offered only as a distractor: add its images ({extensions}) or remove the folder"
        )
    return [f.name for f in folders], paths, np.asarray(labels, dtype=np.int64)


def read_class_names(path: Path) -> dict[str, str]:
    """A `folder name<TAB or space>class name` file, one class per line (ImageNet's
    LOC_synset_mapping.txt has this shape)."""
    if not path.is_file():
        raise ForgetkitError(f"class-name file {path} does not exist")
    mapping: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise ForgetkitError(f"{path}:{number}: expected '<folder> <class name>', got {line!r}")
        if parts[0] in mapping:
            raise ForgetkitError(f"{path}:{number}: folder {parts[0]!r} is named twice")
        mapping[parts[0]] = parts[1].strip()
    return mapping


def folder_class_names(folders: Sequence[str], mapping: dict[str, str], mapping_name: str) -> list[str]:
    """The class name of each folder; every folder must be named, else the error says how to name them."""
    missing = [folder for folder in folders if folder not in mapping]
    if missing:
        raise ForgetkitError(
            f"{len(missing)} class folder(s) have no name in {mapping_name}, e.g. {missing[0]!r}; "
            "pass --class-names FILE with one '<folder> <class name>' line per class"
        )
    return [mapping[folder] for folder in folders]


def image_ref(path: Path, out_dir: Path) -> str:
    """LF resolves image paths against its dataset_dir, which is `out_dir`."""
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def _relative_id(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).with_suffix("").as_posix()
    except ValueError:
        return Path(path).stem
