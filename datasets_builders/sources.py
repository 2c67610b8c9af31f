"""Reading the sources builders share: image files and class folders, split folders, class-name files and the
`--class-names` choice, named class lists, MATLAB files, JSON lists.

Builders import what they share from here (and from `hf_images`, `imagenet_classes`, `llava_conversations`,
`classification`, `rare_domains`, `output`), never from another builder.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from datasets_builders.registry import BuildOptions
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
"""What PIL raises on an image it cannot decode."""

Renamer = Callable[[Sequence[str], Mapping[str, str], str], list[str]]
"""(keys, `<key> <name>` mapping, the mapping's name) → one class name per key, e.g. `folder_class_names`."""


def check_split(options: BuildOptions, builder: str, splits: Sequence[str], why: str = "") -> None:
    """Refuse a `--split` that `builder` does not build; `why` (e.g. ': it is one test set') follows the split."""
    if options.split not in splits:
        choices = f"{splits[0]} or {splits[1]}" if len(splits) == 2 else f"one of: {', '.join(splits)}"
        raise ForgetkitError(f"{builder} has no split {options.split!r}{why}; choose {choices}")


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


def split_folder(source: Path, split: str, aliases: Mapping[str, Sequence[str]]) -> Path:
    """`source/<split>` (or an alias such as valid/), else `source` itself, unless it has other splits' folders."""
    if not source.is_dir():
        raise ForgetkitError(f"source {source} is not a folder")
    for name in aliases.get(split, (split,)):
        if (source / name).is_dir():
            return source / name
    known = {name for names in aliases.values() for name in names}
    present = sorted(child.name for child in source.iterdir() if child.is_dir() and child.name in known)
    if present:
        raise ForgetkitError(f"{source} has no folder for split {split!r} (it has {', '.join(present)})")
    return source


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


def folder_class_names(folders: Sequence[str], mapping: Mapping[str, str], mapping_name: str) -> list[str]:
    """The class name of each folder; every folder must be named, else the error says how to name them."""
    missing = [folder for folder in folders if folder not in mapping]
    if missing:
        raise ForgetkitError(
            f"{len(missing)} class folder(s) have no name in {mapping_name}, e.g. {missing[0]!r}; "
            "pass --class-names FILE with one '<folder> <class name>' line per class"
        )
    return [mapping[folder] for folder in folders]


def chosen_names(
    choice: str | Path, keys: Sequence[str], listed: Callable[[str], list[str]], rename: Renamer = folder_class_names
) -> list[str]:
    """The class name of each of `keys` as a `class_name_choice` gives it: from the `--class-names` file (matched to
    the keys by `rename`, by default `folder_class_names`) when `choice` is one, else `listed(choice)`, the
    builder's rule for its named list (called only then)."""
    if isinstance(choice, Path):
        return rename(keys, read_class_names(choice), str(choice))
    return listed(choice)


def describe_choice(choice: str | Path) -> str:
    """A `class_name_choice` as the manifest records it: the list's name, or the file's name and content hash
    (not its path, so the same names give the same manifest wherever they live)."""
    if isinstance(choice, Path):
        return f"file {choice.name} (sha256 {hashlib.sha256(choice.read_bytes()).hexdigest()})"
    return choice


def clip_benchmark_names(key: str) -> list[str]:
    """One class-name list from clip-benchmark's en_classnames.json (package data; nothing heavy imported)."""
    text = resources.files("clip_benchmark.datasets").joinpath("en_classnames.json").read_text(encoding="utf-8")
    return list(json.loads(text)[key])


def load_mat(path: Path, expected: str) -> dict:
    """A MATLAB .mat file as scipy.io.loadmat reads it (squeezed); unreadable → an error naming the file.

    Any exception counts: on a damaged file scipy raises MatReadError, ValueError, IndexError and more.
    """
    try:
        return scipy.io.loadmat(path, squeeze_me=True)
    except Exception as err:
        raise ForgetkitError(f"cannot read {path} as a MATLAB .mat file ({err}); expected {expected}") from None


def integer_vector(mat: dict, key: str, path: Path) -> np.ndarray:
    """Variable `key` of a loaded .mat as a 1-D int64 array (MATLAB stores these as doubles or ints)."""
    if key not in mat:
        found = ", ".join(sorted(name for name in mat if not name.startswith("__"))) or "none"
        raise ForgetkitError(f"{path} has no variable {key!r} (it has: {found})")
    values = np.atleast_1d(np.asarray(mat[key]))
    if values.ndim != 1 or not len(values) or values.dtype.kind not in "iuf" or np.any(values != np.round(values)):
        raise ForgetkitError(
            f"{path}: {key!r} must be a non-empty vector of whole numbers, got {values.dtype} of shape {values.shape}"
        )
    return values.astype(np.int64)


def load_json_list(path: Path) -> list:
    """A JSON list file, with a one-line error for anything else."""
    return read_json(path, list, "check --source, or re-download the file")


def existing_files(root: Path, relative: Sequence[str]) -> np.ndarray:
    """Whether each `root/relative[i]` exists, listing every folder once (665K stats on a network disk are slow)."""
    by_folder: dict[str, list[int]] = defaultdict(list)
    for index, path in enumerate(relative):
        by_folder[posixpath.dirname(path)].append(index)
    found = np.zeros(len(relative), dtype=bool)
    for folder, indices in by_folder.items():
        try:
            names = set(os.listdir(root / folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for index in indices:
            found[index] = posixpath.basename(relative[index]) in names
    return found
