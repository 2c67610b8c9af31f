"""ImageNet-VQA (paper §2, App. B.1): ImageNet classification as 4-option CLIP-hard MCQs.

Source: an ImageNet-style folder, `SOURCE/<split>/<wnid>/<image>` or `SOURCE/<wnid>/<image>`.
Class names: open_clip's 1,000 CLIP-cleaned ImageNet names, matched to WordNet ids through timm's
ordered synset list; `--class-names` overrides them (any folder names, e.g. a custom subset).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import open_clip

from datasets_builders.base import (
    BuildOptions,
    BuildResult,
    LabelledImages,
    classification_records,
    export,
    read_class_names,
    register,
    scan_class_folders,
)
from forgetkit.errors import ForgetkitError


def imagenet_wnid_names() -> dict[str, str]:
    """WordNet id → CLIP class name for the 1,000 ImageNet-1k classes, in their standard order."""
    wnids = resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text().split()
    if len(wnids) != len(open_clip.IMAGENET_CLASSNAMES):
        raise RuntimeError("timm's synset list and open_clip's ImageNet names disagree in length")
    return dict(zip(wnids, open_clip.IMAGENET_CLASSNAMES))


def split_root(source: Path, split: str) -> Path:
    return source / split if (source / split).is_dir() else source


def folder_class_names(folders: list[str], mapping: dict[str, str], mapping_name: str) -> list[str]:
    missing = [folder for folder in folders if folder not in mapping]
    if missing:
        raise ForgetkitError(
            f"{len(missing)} class folder(s) have no name in {mapping_name}, e.g. {missing[0]!r}; "
            "pass --class-names FILE with one '<folder> <class name>' line per class"
        )
    return [mapping[folder] for folder in folders]


@register("imagenet-vqa")
def build(options: BuildOptions) -> BuildResult:
    folders, paths, labels = scan_class_folders(split_root(options.source, options.split))
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
    else:
        names = folder_class_names(folders, imagenet_wnid_names(), "the ImageNet-1k synset list")
    images = LabelledImages(paths, labels, names).subset(options.limit, options.seed)
    dataset = f"imagenet_vqa_{options.split}"
    options.out.mkdir(parents=True, exist_ok=True)
    records = classification_records(images, dataset, options, options.out)
    return export(records, dataset, options.out)
