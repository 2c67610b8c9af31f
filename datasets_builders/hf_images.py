"""Classification sources stored as Hugging Face datasets, for every CLIP-hard classification builder.

`--source` is either
- a folder written by `save_to_disk`: `dataset_dict.json` beside one folder per split (a DatasetDict), or
  `dataset_info.json` + `state.json` + `*.arrow` (one Dataset); read with `datasets.load_from_disk`;
- `hf:OWNER/NAME` (or `hf:OWNER/NAME:CONFIG`): a Hub dataset already in the local Hugging Face datasets cache,
  read with `datasets.load_dataset` in offline mode, so a build never downloads.

The image column is the one with the datasets `Image` feature, the label column the one with `ClassLabel`
(class names from its `names`). The chosen images are written as files to `<out>/images/<dataset>/<row>.<ext>`,
byte for byte as stored, because LLaMA-Factory and VLMEvalKit read images from files; CLIP and the
exporters then treat them like any folder of images (an undecodable one is skipped and counted there).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image as PILImage

from datasets_builders.classification import LabelledImages
from datasets_builders.output import write_image
from datasets_builders.registry import BuildOptions, seeded_subset
from datasets_builders.sources import IMAGE_SUFFIXES, chosen_names
from forgetkit.errors import ForgetkitError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
SPLIT_ALIASES = {"val": ("validation", "valid"), "validation": ("val", "valid"), "valid": ("validation", "val")}
FORMAT_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}
WRITE_CHUNK = 256
"""Rows fetched from Arrow per step: enough to amortise the take, small enough to keep memory flat."""


@dataclasses.dataclass(frozen=True)
class HFImages:
    """One split of a Hugging Face classification dataset, before its images are written out.

    `rows` are the rows a build may use (labelled ones); `labels` covers every row, -1 where unlabelled.
    `only_split` says the source held a single split, so `--split` only named it.
    """

    dataset: datasets.Dataset
    image_column: str
    class_names: list[str]
    labels: np.ndarray
    rows: np.ndarray
    where: str
    only_split: bool

    def drop_classes(self, drop: list[int]) -> HFImages:
        """Without the classes `drop` (e.g. Caltech101's background): their rows go, later labels shift down."""
        keep = np.ones(len(self.class_names), dtype=bool)
        keep[drop] = False
        new_index = np.where(keep, np.cumsum(keep) - 1, -1)
        labels = np.where(self.labels >= 0, new_index[np.maximum(self.labels, 0)], -1)
        return dataclasses.replace(
            self,
            class_names=[name for name, kept in zip(self.class_names, keep) if kept],
            labels=labels,
            rows=self.rows[labels[self.rows] >= 0],
        )

    def with_rows(self, rows: np.ndarray) -> HFImages:
        return dataclasses.replace(self, rows=rows)


def is_hf_source(source: Path | None) -> bool:
    """`hf:NAME`, or a folder that `save_to_disk` wrote (a builder without `--source` has neither)."""
    if source is None:
        return False
    if str(source).startswith(HF_PREFIX):
        return True
    return (source / "dataset_dict.json").is_file() or (
        (source / "dataset_info.json").is_file() and (source / "state.json").is_file()
    )


def open_hf_images(source: Path, split: str) -> HFImages:
    """The `split` of a saved or cached HF dataset, with its image column, labels and class names."""
    from datasets import ClassLabel, Image

    loaded, where = _load(source)
    dataset, only_split = _pick_split(loaded, split, where)
    image_column = _feature_column(dataset, Image, "image", where)
    label_column = _feature_column(dataset, ClassLabel, "label", where)
    labels = dataset.with_format("arrow")[label_column]
    labels = np.asarray(labels.fill_null(-1).to_numpy(), dtype=np.int64)
    class_names = list(dataset.features[label_column].names)
    if len(labels) and labels.max() >= len(class_names):
        raise ForgetkitError(
            f"{where}: column {label_column!r} has label {labels.max()} but its ClassLabel names only "
            f"{len(class_names)} classes; re-save the dataset with the full ClassLabel(names=[...])"
        )
    rows = np.flatnonzero(labels >= 0)
    if not len(rows):
        raise ForgetkitError(
            f"{where}: split {split!r} has no labelled rows (column {label_column!r} is empty or -1, as in test "
            "splits whose labels are withheld); pick a split with labels"
        )
    if len(rows) < len(labels):
        log.warning("%s: %d of %d rows have no label and are left out", where, len(labels) - len(rows), len(labels))
    return HFImages(dataset, image_column, class_names, labels, rows, where, only_split)


def hf_source_images(
    options: BuildOptions,
    dataset: str,
    choice: str | Path,
    default: Callable[[list[str], str], list[str]],
    prepare: Callable[[HFImages], HFImages] | None = None,
) -> LabelledImages:
    """The Hugging Face branch of every classification builder: `--split` of `--source`, changed by `prepare`
    (e.g. Caltech101 dropping its background), named by `hf_class_names`, its `--limit` subset written as files."""
    images = open_hf_images(options.source, options.split)
    if prepare is not None:
        images = prepare(images)
    return hf_labelled_images(images, hf_class_names(images, choice, default), options, dataset)


def hf_class_names(images: HFImages, choice: str | Path, default: Callable[[list[str], str], list[str]]) -> list[str]:
    """An HF source's class names: the `--class-names` file when `choice` is one (keyed by ClassLabel name or
    index), else `default(ClassLabel names, source description)`, the builder's rule for its chosen named list."""
    return chosen_names(
        choice, images.class_names, lambda _: default(images.class_names, images.where), rename=rename_classes
    )


def rename_classes(class_names: Sequence[str], mapping: Mapping[str, str], mapping_name: str) -> list[str]:
    """Class names from a `--class-names` file whose keys are the ClassLabel names or their 0-based indices
    (indices serve names that contain spaces, which a `<key> <name>` line cannot hold)."""
    named: list[str] = []
    for index, name in enumerate(class_names):
        if name in mapping:
            named.append(mapping[name])
        elif str(index) in mapping:
            named.append(mapping[str(index)])
        else:
            raise ForgetkitError(
                f"class {index} ({name!r}) has no name in {mapping_name}; give one '<ClassLabel name or index> "
                "<class name>' line per class"
            )
    return named


def hf_labelled_images(images: HFImages, class_names: list[str], options: BuildOptions, dataset: str) -> LabelledImages:
    """Write the images of `images.rows` (after the `--limit` subset) as files and return them labelled.

    The subset is taken here, before any image is written, with the same rule `build_classification`
    applies, so `--limit 100` of a 1.28 M-image split writes 100 files and gives the same questions.
    """
    folder = options.out / "images" / dataset
    rows = images.rows[seeded_subset(len(images.rows), options.limit, options.seed)]
    paths, written = _write_images(images, rows, folder, options.strict)
    kept = np.asarray([path is not None for path in paths], dtype=bool)
    log.info("%s: %d image files in %s (%d written, the rest already there)", dataset, kept.sum(), folder, written)
    dropped = {f"{images.where} row {row}": "no label" for row in np.flatnonzero(images.labels < 0).tolist()}
    dropped |= {f"{images.where} row {row}": "no image bytes and no readable path" for row in rows[~kept].tolist()}
    return LabelledImages(
        [path for path in paths if path is not None], images.labels[rows[kept]], class_names, folder, dropped
    )


def _load(source: Path) -> tuple[datasets.Dataset | datasets.DatasetDict, str]:
    import datasets

    spec = str(source)
    if not spec.startswith(HF_PREFIX):
        try:
            return datasets.load_from_disk(spec), str(source)
        except (FileNotFoundError, ValueError, OSError) as err:
            raise ForgetkitError(
                f"cannot read {source} as a datasets save_to_disk folder ({first_line(err)}); expected "
                "dataset_dict.json with one folder per split, or dataset_info.json + state.json + *.arrow"
            ) from None
    name, _, config = spec.removeprefix(HF_PREFIX).partition(":")
    if not name:
        raise ForgetkitError(f"--source {spec!r} names no dataset; write it as hf:OWNER/NAME")
    online = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(name, config or None), spec
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        raise ForgetkitError(
            f"{name} is not in the Hugging Face datasets cache ({datasets.config.HF_DATASETS_CACHE}: "
            f"{first_line(err)}); builds never download: load it once with network access "
            f"(python -c \"import datasets; datasets.load_dataset('{name}')\"), or pass a save_to_disk folder"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = online


def _pick_split(
    loaded: datasets.Dataset | datasets.DatasetDict, split: str, where: str
) -> tuple[datasets.Dataset, bool]:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded, True
    for name in (split, *SPLIT_ALIASES.get(split, ())):
        if name in loaded:
            return loaded[name], len(loaded) == 1
    if len(loaded) == 1:
        (only,) = loaded
        log.warning("%s has one split, %r; building it as %r", where, only, split)
        return loaded[only], True
    raise ForgetkitError(f"{where} has no split {split!r}; its splits: {', '.join(sorted(loaded))}")


def _feature_column(dataset: datasets.Dataset, feature: type, preferred: str, where: str) -> str:
    """The one column whose feature is `feature`; with several, the one called `preferred`."""
    found = [name for name, value in dataset.features.items() if isinstance(value, feature)]
    if len(found) == 1:
        return found[0]
    if preferred in found:
        return preferred
    columns = ", ".join(f"{name} ({type(value).__name__})" for name, value in dataset.features.items())
    if not found:
        raise ForgetkitError(
            f"{where} has no column with the datasets {feature.__name__} feature (columns: {columns}); cast one, "
            f"e.g. dataset.cast_column(NAME, datasets.{feature.__name__}(...)), and save_to_disk"
        )
    raise ForgetkitError(
        f"{where} has {len(found)} {feature.__name__} columns ({', '.join(found)}) and none is called "
        f"{preferred!r}; keep one (dataset.remove_columns) and save_to_disk"
    )


def _write_images(images: HFImages, rows: np.ndarray, folder: Path, strict: bool) -> tuple[list[Path | None], int]:
    """Each row's stored image bytes to `folder/<row><ext>`; None for a row with no image at all."""
    import pyarrow.compute as pc

    folder.mkdir(parents=True, exist_ok=True)
    table = images.dataset.with_format("arrow")
    paths: list[Path | None] = []
    written = 0
    missing: list[int] = []
    for start in range(0, len(rows), WRITE_CHUNK):
        chunk = rows[start : start + WRITE_CHUNK]
        column = table[chunk.tolist()].column(images.image_column)
        blobs = pc.struct_field(column, "bytes").to_pylist()
        stored = pc.struct_field(column, "path").to_pylist()
        for row, blob, stored_path in zip(chunk.tolist(), blobs, stored):
            data = blob if blob is not None else _read_stored(stored_path)
            if data is None:
                if strict:
                    raise ForgetkitError(
                        f"{images.where}: row {row} has no image (no bytes, and its path {stored_path!r} is not a "
                        "file); fix the row, or drop --strict to skip it"
                    )
                missing.append(row)
                paths.append(None)
                continue
            path = folder / f"{row}{_suffix(data, stored_path)}"
            written += write_image(path, data)
            paths.append(path)
    if missing:
        log.warning(
            "%s: skipped %d row(s) with no image, first row %d; use --strict to stop instead",
            images.where,
            len(missing),
            missing[0],
        )
    return paths, written


def _read_stored(stored_path: str | None) -> bytes | None:
    """An Image cell without bytes points at a local file (e.g. an unembedded imagefolder dataset)."""
    if stored_path and os.path.isfile(stored_path):
        return Path(stored_path).read_bytes()
    return None


def _suffix(data: bytes, stored_path: str | None) -> str:
    """The stored file name's image suffix, else the format PIL reads from the header, else `.bin`."""
    suffix = Path(stored_path or "").suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return suffix
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            return FORMAT_SUFFIXES.get(image.format or "", ".bin")
    except (OSError, ValueError):
        return ".bin"


def first_line(err: BaseException) -> str:
    """An exception's first line, for one-line errors about a source file."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
