"""ImageNet-VQA (paper §2, App. B.1): ImageNet classification as 4-option CLIP-hard MCQs.

Source: an ImageNet-style folder, `SOURCE/<split>/<wnid>/<image>` or `SOURCE/<wnid>/<image>`.
Class names: open_clip's 1,000 CLIP-cleaned ImageNet names, matched to WordNet ids through timm's
ordered synset list; `--class-names` overrides them (any folder names, e.g. a custom subset).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import open_clip

from datasets_builders.classification import (
    LabelledImages,
    build_classification,
    folder_class_names,
    read_class_names,
    scan_class_folders,
)
from datasets_builders.registry import BuildOptions, BuildResult, register


def imagenet_wnid_names() -> dict[str, str]:
    """WordNet id → CLIP class name for the 1,000 ImageNet-1k classes, in their standard order."""
    return dict(zip(imagenet_wnids(), open_clip.IMAGENET_CLASSNAMES))


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (timm ships the list)."""
    wnids = resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text().split()
    if len(wnids) != len(open_clip.IMAGENET_CLASSNAMES):
        raise RuntimeError("timm's synset list and open_clip's ImageNet names disagree in length")
    return wnids


def split_root(source: Path, split: str) -> Path:
    return source / split if (source / split).is_dir() else source


@register("imagenet-vqa")
def build(options: BuildOptions) -> BuildResult:
    """ImageNet(-style) folders → 4-option CLIP-hard MCQs (imagenet_vqa_<split>)."""
    root = split_root(options.require_source("the ImageNet folder (SOURCE/<split>/<wnid>/*.JPEG)"), options.split)
    folders, paths, labels = scan_class_folders(root)
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
    else:
        names = folder_class_names(folders, imagenet_wnid_names(), "the ImageNet-1k synset list")
    return build_classification(LabelledImages(paths, labels, names, root), f"imagenet_vqa_{options.split}", options)
