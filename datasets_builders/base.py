"""The builder registry and the path every CLIP-hard classification builder shares.

A builder turns one source dataset into MCQ records. Adding a dataset is one module in this
package that calls `register`; the CLI lists and runs whatever is registered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip

from forgetkit import exporters
from forgetkit.distractors import Clip, ClipSpec, group_names, pick_distractors, place_answers
from forgetkit.errors import ForgetkitError
from forgetkit.records import CLASSIFICATION_QUESTION, LETTERS, MCQRecord

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})


@dataclass(frozen=True)
class BuildOptions:
    """Everything `forgetkit build-data` passes to a builder."""

    source: Path
    out: Path
    split: str = "val"
    class_names: Path | None = None
    seed: int = 0
    limit: int | None = None
    clip: ClipSpec = field(default_factory=ClipSpec)


@dataclass(frozen=True)
class BuildResult:
    dataset: str
    records: int
    files: tuple[Path, ...]


Builder = Callable[[BuildOptions], BuildResult]
BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        if name in BUILDERS:
            raise ValueError(f"builder {name!r} registered twice")
        BUILDERS[name] = builder
        return builder

    return add


def get_builder(name: str) -> Builder:
    try:
        return BUILDERS[name]
    except KeyError:
        raise ForgetkitError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(BUILDERS))}") from None


@dataclass(frozen=True)
class LabelledImages:
    """A classification source after scanning: image files, their class index, the class names."""

    paths: list[Path]
    labels: np.ndarray
    class_names: list[str]

    def subset(self, limit: int | None, seed: int) -> LabelledImages:
        """A seeded random subset of `limit` images, kept in source order."""
        if limit is None or limit >= len(self.paths):
            return self
        if limit < 1:
            raise ForgetkitError(f"--limit must be at least 1, got {limit}")
        keep = np.sort(np.random.default_rng(seed).choice(len(self.paths), size=limit, replace=False))
        return LabelledImages([self.paths[i] for i in keep], self.labels[keep], self.class_names)


def classification_records(
    images: LabelledImages, dataset: str, options: BuildOptions, out_dir: Path
) -> list[MCQRecord]:
    """CLIP-hard 4-option MCQs (paper App. B.1), one per image, deterministic for a given seed."""
    group_texts, group_of_class = group_names(images.class_names)
    if len(group_texts) < len(images.class_names):
        log.warning(
            "%d classes share a name with another class; they count as one option text",
            len(images.class_names) - len(group_texts),
        )
    clip = Clip(options.clip)
    text_emb = clip.encode_texts(images.class_names, open_clip.SIMPLE_IMAGENET_TEMPLATES)
    image_emb = clip.encode_images(images.paths)
    rng = np.random.default_rng(options.seed)
    distractors = pick_distractors(image_emb, text_emb, images.labels, group_of_class, rng)
    truth = group_of_class[images.labels]
    option_groups, answers = place_answers(truth, distractors, rng)
    return [
        MCQRecord(
            id=f"{dataset}/{_relative_id(path, options.source)}",
            image=_image_ref(path, out_dir),
            question=CLASSIFICATION_QUESTION,
            options=tuple(group_texts[g] for g in row),
            answer=LETTERS[answer],
            class_label=group_texts[truth[i]],
            source=dataset,
        )
        for i, (path, row, answer) in enumerate(zip(images.paths, option_groups, answers))
    ]


def export(records: Sequence[MCQRecord], dataset: str, out_dir: Path) -> BuildResult:
    """Write the LF JSON, its dataset_info.json entry and the VLMEvalKit TSV into `out_dir`."""
    json_path = out_dir / f"{dataset}.json"
    tsv_path = out_dir / f"{dataset}.tsv"
    exporters.write_lf_json(records, json_path)
    info_path = exporters.merge_dataset_info(out_dir, dataset, exporters.lf_dataset_entry(json_path.name))
    exporters.write_vlmeval_tsv(records, tsv_path, lambda record: out_dir / record.image)
    return BuildResult(dataset, len(records), (json_path, info_path, tsv_path))


def scan_class_folders(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """An ImageFolder tree: one sub-folder per class, images inside; sorted, so order is stable."""
    if not root.is_dir():
        raise ForgetkitError(f"source folder {root} does not exist; pass the folder holding one sub-folder per class")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    for index, folder in enumerate(folders):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise ForgetkitError(
            f"no images found under {root}; expected {root}/<class>/<image>.jpg (extensions: "
            f"{', '.join(sorted(IMAGE_SUFFIXES))})"
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


def _relative_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def _image_ref(path: Path, out_dir: Path) -> str:
    """LF resolves image paths against its dataset_dir, which is `out_dir`."""
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
