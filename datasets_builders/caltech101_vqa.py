"""Caltech101-VQA (paper §2.1, ID^T-OOD^I): Caltech 101 as 4-option CLIP-hard MCQs.

Sources, tried in this order:
- a Hugging Face dataset (`save_to_disk` folder or `hf:NAME`), read by `hf_images`;
- torchvision's download layout (`torchvision.datasets.Caltech101`): `SOURCE/caltech101/101_ObjectCategories/`,
  `SOURCE/101_ObjectCategories/`, or an ImageFolder `SOURCE/<category>/<image>.jpg` (the same shape).
The `BACKGROUND_Google` category is left out, as torchvision and the authors do: it is clutter, not a class.

Splits (`--param split_file`): Caltech101 has no official one. By default the build takes the authors' own
image-level split, their `caltech.jsonl` (github lihe50hz/MLLM-Forgetting, commit 16d5831,
`data/raw_datasets/caltech.jsonl`: one `{"image": PATH, "label": NAME, "split": "train"|"test"}` line per image,
about half of each class in train, 4,346 / 4,331 images), from `--param split_file=PATH` or `SOURCE/caltech.jsonl`.
Its images are found under the category folders by `<category>/<file>`, the last two parts of each path; listed
images that are not there are left out and listed in the manifest. `split_file=seeded` is forgetkit's split
instead, after the classic protocol (Fei-Fei et al. 2004; VTAB) of 30 training images per class: each class's
images, in sorted order, are permuted by a generator seeded with (`split_seed`, CRC-32 of the lower-cased category
name), the first `train_per_class` are `train` and the rest `test`. Seeding per category keeps a class's split
fixed when other classes change, and `split_seed` is separate from `--seed`, so train and test stay disjoint
whatever seeds the MCQs use. A Hugging Face source (no file names to match) with both splits is taken as
published; one with a single split is divided the seeded way.

Class names (`--class-names`), matched to category folders or ClassLabel names case-insensitively; other
folder or ClassLabel names are used as written:
- `authors` (default): the authors' 100 names (`caltech_classes.json`): the category with spaces for underscores
  (`car side`), except `Faces` and `Faces_easy`, which are both `face` (one class of the MCQs), and `Leopards`,
  `Motorbikes`, `airplanes` in the singular. With their split file, each image's label there must be this name.
- `clip-benchmark`: clip-benchmark's `caltech101` list (en_classnames.json), 101 names ('off-center face' = Faces,
  'centered face' = Faces_easy, each other's hardest distractor), indexed like clip-benchmark's Caltech101 loader
  by the case-sensitive sorted category folders *with* the background, so it is paired with the 102 folders below.
- a file of `<folder or ClassLabel name/index> <name>` lines.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datasets_builders.classification import (
    QUESTION_PARAM,
    LabelledImages,
    build_classification,
    classification_question,
)
from datasets_builders.hf_images import HFImages, hf_source_images, is_hf_source
from datasets_builders.registry import BuildOptions, BuildResult, register
from datasets_builders.sources import (
    check_split,
    chosen_names,
    class_name_choice,
    clip_benchmark_names,
    describe_choice,
    scan_class_folders,
)
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
TRAIN_PER_CLASS = 30
SEEDED = "seeded"
SEEDED_PARAMS = ("train_per_class", "split_seed")
SPLIT_FILE = "caltech.jsonl"
NAME_LISTS = ("authors", "clip-benchmark")
BACKGROUND = frozenset({"background_google", "background"})
AUTHORS_RENAMED = {
    "faces": "face",
    "faces_easy": "face",
    "leopards": "leopard",
    "motorbikes": "motorbike",
    "airplanes": "airplane",
}
"""The authors' names that are not the category with spaces for underscores."""
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


def authors_folder_names() -> dict[str, str]:
    """Lower-cased category folder → the authors' class name, for the 101 object folders."""
    return {
        folder.lower(): AUTHORS_RENAMED.get(folder.lower(), folder.replace("_", " "))
        for folder in CALTECH101_FOLDERS
        if folder.lower() not in BACKGROUND
    }


def caltech101_names(keys: Sequence[str], choice: str) -> list[str]:
    """The `choice` list's name for each known Caltech101 category, other category names as written."""
    known = authors_folder_names() if choice == "authors" else caltech101_folder_names()
    return [known.get(key.lower(), key) for key in keys]


OUTPUT = "caltech101_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register(
    "caltech101-vqa",
    params={
        "split_file": f"the authors' {SPLIT_FILE} (default: SOURCE/{SPLIT_FILE}), or '{SEEDED}' for forgetkit's "
        "seeded per-class split",
        "train_per_class": f"seeded split: images per class in train, the rest are test (default {TRAIN_PER_CLASS})",
        "split_seed": "seeded split: seed of the per-class train/test split, independent of --seed (default 0)",
        **QUESTION_PARAM,
    },
    output=OUTPUT,
)
def build(options: BuildOptions) -> BuildResult:
    """Caltech101 (torchvision layout, ImageFolder or HF dataset) → 4-option CLIP-hard MCQs (caltech101_vqa_<split>)."""
    check_split(options, "caltech101-vqa", SPLITS)
    dataset = OUTPUT.format(split=options.split)
    question = classification_question("caltech101_vqa", options)
    choice = class_name_choice(options, NAME_LISTS)
    if is_hf_source(options.source):
        images = hf_images(options, choice, dataset)
    else:
        images = folder_images(options.require_source(LAYOUTS), options, choice)
    return build_classification(images, dataset, options, question=question, name_source=describe_choice(choice))


def folder_images(source: Path, options: BuildOptions, choice: str | Path) -> LabelledImages:
    """The split's images of the category folders, background dropped, split by the split file or seeded."""
    split_file = split_file_path(options, source)
    root = categories_root(source)
    folders, paths, labels = scan_class_folders(root, skip=BACKGROUND)
    names = chosen_names(choice, folders, lambda list_name: caltech101_names(folders, list_name))
    if split_file is None:
        chosen, dropped = seeded_split(labels, folders, options), {}
    else:
        checked = [names[label] for label in labels] if choice == "authors" else None
        chosen, dropped = listed_split(split_file, options.split, paths, checked)
    return LabelledImages([paths[i] for i in chosen], labels[chosen], names, root, dropped)


def hf_images(options: BuildOptions, choice: str | Path, dataset: str) -> LabelledImages:
    """A Hugging Face Caltech101, background dropped; a single split is divided the seeded way."""
    if options.param("split_file") not in (None, SEEDED):
        raise ForgetkitError(
            "--param split_file matches images by <category>/<file>, which a Hugging Face source lacks; drop it "
            "(both splits are taken as published, a single one is split the seeded way)"
        )

    def prepare(hf: HFImages) -> HFImages:
        hf = hf.drop_classes([i for i, name in enumerate(hf.class_names) if name.lower() in BACKGROUND])
        if hf.only_split:
            hf = hf.with_rows(hf.rows[seeded_split(hf.labels[hf.rows], hf.class_names, options)])
        return hf

    return hf_source_images(
        options, dataset, choice, lambda label_names, _: caltech101_names(label_names, str(choice)), prepare
    )


def split_file_path(options: BuildOptions, source: Path) -> Path | None:
    """The authors' split file to read, or None for the seeded split."""
    value = options.param("split_file")
    if value == SEEDED:
        return None
    given = [name for name in SEEDED_PARAMS if options.param(name) is not None]
    if given:
        raise ForgetkitError(f"--param {given[0]} sets the seeded split; add --param split_file={SEEDED}")
    path = Path(value) if value else source / SPLIT_FILE
    if not path.is_file():
        raise ForgetkitError(
            f"split file {path} does not exist: caltech101-vqa takes the authors' train/test split from their "
            f"{SPLIT_FILE} (data/raw_datasets/ of github lihe50hz/MLLM-Forgetting, commit 16d5831); put it there, "
            f"pass --param split_file=PATH, or --param split_file={SEEDED} for forgetkit's seeded split"
        )
    return path


def read_split_file(path: Path, split: str) -> dict[str, tuple[int, str]]:
    """`<category>/<file>` → (line number, label) of each image the split file puts in `split`."""
    listed: dict[str, tuple[int, str]] = {}
    splits: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, label, row_split = str(row["image"]), str(row["label"]), str(row["split"])
        except (json.JSONDecodeError, TypeError, KeyError):
            raise ForgetkitError(
                f'{path}:{number}: expected a JSON object with "image", "label" and "split", got {line[:80]!r}'
            ) from None
        splits.add(row_split)
        if row_split == split:
            listed["/".join(Path(image).parts[-2:])] = (number, label)
    if not listed:
        raise ForgetkitError(f"{path} lists no {split!r} images (its splits: {', '.join(sorted(splits)) or 'none'})")
    return listed


def listed_split(
    path: Path, split: str, paths: Sequence[Path], checked: Sequence[str] | None
) -> tuple[np.ndarray, dict[str, str]]:
    """Positions in `paths` of the images the split file puts in `split`, and its listed images not found.

    `checked`, the authors' name of each image, must equal its label in the file: it is how the file named it.
    """
    listed = read_split_file(path, split)
    keys = [f"{image.parent.name}/{image.name}" for image in paths]
    chosen = np.asarray([i for i, key in enumerate(keys) if key in listed], dtype=np.int64)
    if not len(chosen):
        raise ForgetkitError(
            f"none of the {len(listed)} {split} images {path} lists is among the category folders; point --source "
            "at the 101_ObjectCategories folder the split was made from"
        )
    wrong = [i for i in chosen.tolist() if checked is not None and listed[keys[i]][1] != checked[i]]
    if wrong:
        number, label = listed[keys[wrong[0]]]
        raise ForgetkitError(
            f"{path}:{number}: {keys[wrong[0]]} is labelled {label!r} there but its folder is the authors' "
            f"{checked[wrong[0]]!r}; point --source at the 101_ObjectCategories folder the split was made from"
        )
    found = set(keys)
    dropped = {
        f"{path}:{number}": f"{key} is listed for {split} but not found under the category folders"
        for key, (number, _) in listed.items()
        if key not in found
    }
    if dropped:
        log.warning("%s: %d listed %s image(s) not found, listed in the manifest", path, len(dropped), split)
    return chosen, dropped


def categories_root(source: Path) -> Path:
    for root in (source / "caltech101" / "101_ObjectCategories", source / "101_ObjectCategories"):
        if root.is_dir():
            return root
    return source


def seeded_split(labels: np.ndarray, keys: Sequence[str], options: BuildOptions) -> np.ndarray:
    """Positions in `labels` that fall in the seeded split `options.split`, in their original order."""
    train_per_class = _int_param(options, "train_per_class", TRAIN_PER_CLASS, minimum=1)
    seed = _int_param(options, "split_seed", 0, minimum=0)
    chosen = []
    for label, key in enumerate(keys):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, zlib.crc32(key.lower().encode())]).permutation(len(members))
        part = order[:train_per_class] if options.split == "train" else order[train_per_class:]
        chosen.append(members[part])
    picked = np.sort(np.concatenate(chosen))
    if not len(picked):
        raise ForgetkitError(
            f"the {options.split} split is empty: no class has more than {train_per_class} images; "
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
