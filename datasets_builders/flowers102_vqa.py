"""Flowers102-VQA (paper §2.1, ID^T-OOD^I; also a fig4 training mix): Oxford Flowers 102 as CLIP-hard MCQs.

Sources, tried in this order:
- a Hugging Face dataset (`save_to_disk` folder or `hf:NAME`), read by `hf_images`;
- torchvision's download layout (`torchvision.datasets.Flowers102`): `SOURCE/flowers-102/` or `SOURCE/` holding
  `jpg/image_00001.jpg ...`, `imagelabels.mat` (`labels`: class 1..102 of image i) and `setid.mat`
  (`trnid`, `valid`, `tstid`: the 1-based image ids of train/val/test), read with scipy.io.loadmat;
- an ImageFolder, `SOURCE/<split>/<class>/<image>` or `SOURCE/<class>/<image>`.
Splits of torchvision's layout (`--param splits`):
- `authors` (default): train = setid.mat's `trnid` + `valid` (2,040 images, 20 per class), test = `tstid`
  (6,149), the split of the authors' `flowers.jsonl` (github lihe50hz/MLLM-Forgetting, commit 16d5831); no val;
- `setid`: train, val, test = `trnid`, `valid`, `tstid` (Nilsback & Zisserman's 1,020 / 1,020 / 6,149 images).
An ImageFolder or Hugging Face source has the splits its folders or dataset have.

Class names (`--class-names`): `authors` (default), clip-benchmark's `flowers` list (en_classnames.json) in label
order, which is the authors' `flowers_classes.json` name for name (and not torchvision's `Flowers102.classes`, whose
option texts are unfit for an MCQ: 'pink-yellow dahlia?'). Class keys that are numbers (imagelabels.mat's 1..102,
or folders/ClassLabel names '1'..'102', or '0'..'101' when a 0 is among them) take the name of that class; other
folder or ClassLabel names are used as written. A file of `<key> <name>` lines overrides, the key being the label
number, folder name, or ClassLabel name/index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datasets_builders.classification import (
    QUESTION_PARAM,
    LabelledImages,
    build_classification,
    classification_question,
)
from datasets_builders.hf_images import hf_source_images, is_hf_source
from datasets_builders.registry import BuildOptions, BuildResult, register
from datasets_builders.sources import (
    check_split,
    chosen_names,
    class_name_choice,
    clip_benchmark_names,
    describe_choice,
    integer_vector,
    load_mat,
    scan_class_folders,
    split_folder,
)
from forgetkit.errors import ForgetkitError

SPLIT_SCHEMES = {
    "authors": {"train": ("trnid", "valid"), "test": ("tstid",)},
    "setid": {"train": ("trnid",), "val": ("valid",), "test": ("tstid",)},
}
"""Per `--param splits`: the setid.mat variables whose image ids make up each split."""
NAME_LISTS = ("authors",)
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
TORCHVISION_FILES = "jpg/image_00001.jpg..., imagelabels.mat ('labels') and setid.mat ('trnid', 'valid', 'tstid')"
LAYOUTS = (
    "torchvision's Flowers102 folder (flowers-102/ with jpg/, imagelabels.mat, setid.mat), an ImageFolder "
    "(SOURCE/<split>/<class>/*.jpg), a datasets save_to_disk folder, or hf:OWNER/NAME"
)


def flowers_names() -> list[str]:
    """The 102 Oxford Flowers class names in label order (label 1 first)."""
    return clip_benchmark_names("flowers")


OUTPUT = "flowers102_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register(
    "flowers102-vqa",
    params={
        "splits": "torchvision layout: authors (default; train = trnid + valid, test = tstid, no val) or setid "
        "(train, val, test = trnid, valid, tstid)",
        **QUESTION_PARAM,
    },
    output=OUTPUT,
)
def build(options: BuildOptions) -> BuildResult:
    """Flowers102 (torchvision layout, ImageFolder, HF dataset) -> 4-option CLIP-hard MCQs (flowers102_vqa_<split>)."""
    check_split(options, "flowers102-vqa", tuple(SPLIT_FOLDERS))
    dataset = OUTPUT.format(split=options.split)
    question = classification_question("flowers102_vqa", options)
    choice = class_name_choice(options, NAME_LISTS)
    if is_hf_source(options.source):
        images = hf_source_images(options, dataset, choice, keyed_names)
    else:
        source = options.require_source(LAYOUTS)
        base = torchvision_base(source)
        if base is not None:
            images = torchvision_images(base, options, choice)
        else:
            images = folder_images(source, options.split, choice)
    return build_classification(images, dataset, options, question=question, name_source=describe_choice(choice))


def torchvision_base(source: Path) -> Path | None:
    """The folder with torchvision's Flowers102 files, if `source` is (or holds) one."""
    for base in (source / "flowers-102", source):
        if any((base / name).exists() for name in ("imagelabels.mat", "setid.mat", "jpg")):
            return base
    return None


def split_keys(options: BuildOptions) -> tuple[str, ...]:
    """The setid.mat variables of `options.split` under the `--param splits` scheme."""
    scheme = options.param("splits", "authors")
    if scheme not in SPLIT_SCHEMES:
        raise ForgetkitError(f"--param splits={scheme!r} is unknown; pass splits=authors or splits=setid")
    if options.split not in SPLIT_SCHEMES[scheme]:
        raise ForgetkitError(
            f"the authors' Flowers102 split has no {options.split!r} (its train is setid.mat's trnid + valid); "
            "pass --split train or test, or --param splits=setid"
        )
    return SPLIT_SCHEMES[scheme][options.split]


def torchvision_images(base: Path, options: BuildOptions, choice: str | Path) -> LabelledImages:
    """The split's images in setid.mat order, labelled from imagelabels.mat."""
    keys = split_keys(options)
    for name in ("jpg", "imagelabels.mat", "setid.mat"):
        if not (base / name).exists():
            raise ForgetkitError(f"{base / name} is missing; torchvision's Flowers102 folder holds {TORCHVISION_FILES}")
    label_file, split_file = base / "imagelabels.mat", base / "setid.mat"
    labels = integer_vector(load_mat(label_file, "an imagelabels.mat with 'labels'"), "labels", label_file)
    setid = load_mat(split_file, "a setid.mat with 'trnid', 'valid', 'tstid'")
    ids = np.concatenate([integer_vector(setid, key, split_file) for key in keys])
    if ids.min() < 1 or ids.max() > len(labels):
        raise ForgetkitError(
            f"{split_file}: '{'/'.join(keys)}' holds image ids outside 1..{len(labels)} (imagelabels.mat labels "
            f"{len(labels)} images); the two files are from different releases"
        )
    listed = flowers_names()
    numbers = [str(number) for number in range(1, len(listed) + 1)]
    split_labels = labels[ids - 1] - 1
    if split_labels.min() < 0 or split_labels.max() >= len(listed):
        raise ForgetkitError(
            f"{label_file}: labels must be 1..{len(listed)}, found {split_labels.min() + 1}..{split_labels.max() + 1}"
        )
    names = chosen_names(choice, numbers, lambda _: listed)
    paths = [base / "jpg" / f"image_{image_id:05d}.jpg" for image_id in ids.tolist()]
    return LabelledImages(paths, split_labels, names, base)


def folder_images(source: Path, split: str, choice: str | Path) -> LabelledImages:
    root = split_folder(source, split, SPLIT_FOLDERS)
    folders, paths, labels = scan_class_folders(root)
    names = chosen_names(choice, folders, lambda _: keyed_names(folders, str(root)))
    return LabelledImages(paths, labels, names, root)


def keyed_names(keys: Sequence[str], where: str) -> list[str]:
    """Class names for folder or ClassLabel keys: numbers name classes by label (1-based, or 0-based when
    a 0 is among them); other keys are names already."""
    if not all(key.isdigit() for key in keys):
        return list(keys)
    names = flowers_names()
    offset = 0 if any(int(key) == 0 for key in keys) else 1
    numbers = [int(key) - offset for key in keys]
    bad = [key for key, number in zip(keys, numbers) if number >= len(names)]
    if bad:
        raise ForgetkitError(
            f"{where}: class {bad[0]!r} is past Flowers102's {len(names)} classes; pass --class-names FILE"
        )
    return [names[number] for number in numbers]
