"""Caltech101-VQA (paper §2.1, ID^T-OOD^I): Caltech 101 as 4-option CLIP-hard MCQs.

Sources, tried in this order:
- a Hugging Face dataset (`save_to_disk` folder or `hf:NAME`), read by `hf_images`;
- torchvision's download layout (`torchvision.datasets.Caltech101`): `SOURCE/caltech101/101_ObjectCategories/`,
  `SOURCE/101_ObjectCategories/`, or an ImageFolder `SOURCE/<category>/<image>.jpg` (the same shape).
The `BACKGROUND_Google` category is left out, as torchvision does: it is clutter, not a class.

Splits: Caltech101 has no official one. The classic protocol (Fei-Fei et al. 2004; VTAB) trains on 30
images per class and tests on the rest; here each class's images, in sorted order, are permuted by a
generator seeded with (`split_seed`, CRC-32 of the lower-cased category name), the first `train_per_class` are `train`
and the rest `test`. Seeding per category keeps a class's split fixed when other classes change, and
`split_seed` is separate from `--seed`, so train and test stay disjoint whatever seeds the MCQs use.
A Hugging Face source with both splits is taken as published; one with a single split is divided this way.

Class names: clip-benchmark's `caltech101` list (en_classnames.json), which is indexed like clip-benchmark's
Caltech101 loader, by the case-sensitive sorted category folders *with* the background (so 'background',
'off-center face' = Faces, 'centered face' = Faces_easy, 'leopard', 'motorbike', 'accordion', ...). It is
paired with the 102 folder names below and matched by name, case-insensitively, so missing or extra folders
cannot shift it; other folder or ClassLabel names are used as written. `--class-names` overrides
(`<folder or ClassLabel name/index> <name>` lines).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datasets_builders.classification import (
    LabelledImages,
    build_classification,
    folder_class_names,
    read_class_names,
    scan_class_folders,
)
from datasets_builders.flowers102_vqa import clip_benchmark_names
from datasets_builders.hf_images import hf_class_names, hf_labelled_images, is_hf_source, open_hf_images
from datasets_builders.registry import BuildOptions, BuildResult, register
from forgetkit.errors import ForgetkitError

SPLITS = ("train", "test")
TRAIN_PER_CLASS = 30
BACKGROUND = frozenset({"background_google", "background"})
CALTECH101_FOLDERS = (
    "BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "Motorbikes", "accordion", "airplanes", "anchor", "ant",
    "barrel", "bass", "beaver", "binocular", "bonsai", "brain", "brontosaurus", "buddha", "butterfly", "camera",
    "cannon", "car_side", "ceiling_fan", "cellphone", "chair", "chandelier", "cougar_body", "cougar_face", "crab",
    "crayfish", "crocodile", "crocodile_head", "cup", "dalmatian", "dollar_bill", "dolphin", "dragonfly",
    "electric_guitar", "elephant", "emu", "euphonium", "ewer", "ferry", "flamingo", "flamingo_head", "garfield",
    "gerenuk", "gramophone", "grand_piano", "hawksbill", "headphone", "hedgehog", "helicopter", "ibis",
    "inline_skate", "joshua_tree", "kangaroo", "ketch", "lamp", "laptop", "llama", "lobster", "lotus", "mandolin",
    "mayfly", "menorah", "metronome", "minaret", "nautilus", "octopus", "okapi", "pagoda", "panda", "pigeon",
    "pizza", "platypus", "pyramid", "revolver", "rhino", "rooster", "saxophone", "schooner", "scissors",
    "scorpion", "sea_horse", "snoopy", "soccer_ball", "stapler", "starfish", "stegosaurus", "stop_sign",
    "strawberry", "sunflower", "tick", "trilobite", "umbrella", "watch", "water_lilly", "wheelchair", "wild_cat",
    "windsor_chair", "wrench", "yin_yang",
)  # fmt: skip
"""The categories of 101_ObjectCategories, sorted as Python sorts them (upper case first)."""
LAYOUTS = (
    "torchvision's Caltech101 folder (caltech101/101_ObjectCategories/<category>/image_0001.jpg), an ImageFolder "
    "(SOURCE/<category>/*.jpg), a datasets save_to_disk folder, or hf:OWNER/NAME"
)


def caltech101_folder_names() -> dict[str, str]:
    """Lower-cased category folder → clip-benchmark class name, for all 102 folders (background included)."""
    names = clip_benchmark_names("caltech101")
    if len(names) != len(CALTECH101_FOLDERS):
        raise RuntimeError(f"clip-benchmark lists {len(names)} Caltech101 names, expected {len(CALTECH101_FOLDERS)}")
    return {folder.lower(): name for folder, name in zip(CALTECH101_FOLDERS, names)}


@register(
    "caltech101-vqa",
    params={
        "train_per_class": f"images per class in the train split, the rest are test (default {TRAIN_PER_CLASS})",
        "split_seed": "seed of the per-class train/test split, independent of --seed (default 0)",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """Caltech101 (torchvision layout, ImageFolder or HF dataset) → 4-option CLIP-hard MCQs (caltech101_vqa_<split>)."""
    if options.split not in SPLITS:
        raise ForgetkitError(
            f"caltech101-vqa has no split {options.split!r}; choose train or test (a seeded per-class split)"
        )
    dataset = f"caltech101_vqa_{options.split}"
    train_per_class = _int_param(options, "train_per_class", TRAIN_PER_CLASS, minimum=1)
    split_seed = _int_param(options, "split_seed", 0, minimum=0)
    if options.source is not None and is_hf_source(options.source):
        hf = open_hf_images(options.source, options.split)
        hf = hf.drop_classes([i for i, name in enumerate(hf.class_names) if name.lower() in BACKGROUND])
        if hf.only_split:
            chosen = per_class_split(hf.labels[hf.rows], hf.class_names, options.split, train_per_class, split_seed)
            hf = hf.with_rows(hf.rows[chosen])
        names = hf_class_names(hf, options, lambda label_names, _: caltech101_names(label_names))
        return build_classification(hf_labelled_images(hf, names, options, dataset), dataset, options)
    root = categories_root(options.require_source(LAYOUTS))
    folders, paths, labels = scan_class_folders(root)
    background = [i for i, folder in enumerate(folders) if folder.lower() in BACKGROUND]
    if background:
        keep = ~np.isin(labels, background)
        paths = [path for path, kept in zip(paths, keep) if kept]
        labels = np.searchsorted(np.setdiff1d(np.arange(len(folders)), background), labels[keep])
        folders = [folder for i, folder in enumerate(folders) if i not in background]
    chosen = per_class_split(labels, folders, options.split, train_per_class, split_seed)
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
    else:
        names = caltech101_names(folders)
    return build_classification(
        LabelledImages([paths[i] for i in chosen], labels[chosen], names, root), dataset, options
    )


def categories_root(source: Path) -> Path:
    for root in (source / "caltech101" / "101_ObjectCategories", source / "101_ObjectCategories"):
        if root.is_dir():
            return root
    return source


def caltech101_names(keys: Sequence[str]) -> list[str]:
    """clip-benchmark's name for each known Caltech101 category, other category names as written."""
    known = caltech101_folder_names()
    return [known.get(key.lower(), key) for key in keys]


def per_class_split(labels: np.ndarray, keys: Sequence[str], split: str, train_per_class: int, seed: int) -> np.ndarray:
    """Positions in `labels` that fall in `split`, in their original order (see the module docstring)."""
    chosen = []
    for label, key in enumerate(keys):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, zlib.crc32(key.lower().encode())]).permutation(len(members))
        part = order[:train_per_class] if split == "train" else order[train_per_class:]
        chosen.append(members[part])
    picked = np.sort(np.concatenate(chosen))
    if not len(picked):
        raise ForgetkitError(
            f"the {split} split is empty: no class has more than {train_per_class} images; "
            "lower --param train_per_class"
        )
    return picked


def _int_param(options: BuildOptions, name: str, default: int, minimum: int) -> int:
    raw = options.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ForgetkitError(f"--param {name}={raw!r} must be a whole number ≥ {minimum}")
    return value
