"""ImageNet-VQA (paper §2, App. B.1): ImageNet classification as 4-option CLIP-hard MCQs.

Source: an ImageNet-style folder, `SOURCE/<split>/<wnid>/<image>` or `SOURCE/<wnid>/<image>`; or a
Hugging Face dataset (a `save_to_disk` folder or `hf:NAME` in the local cache, e.g. `hf:ILSVRC/imagenet-1k`,
read by `hf_images`).
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
from datasets_builders.hf_images import hf_class_names, hf_labelled_images, is_hf_source, open_hf_images
from datasets_builders.registry import BuildOptions, BuildResult, register
from forgetkit.errors import ForgetkitError

ORDER_CHECK = 0.9
"""Share of 1,000 HF label names that must agree with the standard ImageNet-1k order to be read in it."""


def imagenet_wnid_names() -> dict[str, str]:
    """WordNet id → CLIP class name for the 1,000 ImageNet-1k classes, in their standard order."""
    return dict(zip(imagenet_wnids(), open_clip.IMAGENET_CLASSNAMES))


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (timm ships the list)."""
    wnids = resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text().split()
    if len(wnids) != len(open_clip.IMAGENET_CLASSNAMES):
        raise RuntimeError("timm's synset list and open_clip's ImageNet names disagree in length")
    return wnids


def imagenet_label_names(label_names: list[str], where: str) -> list[str]:
    """CLIP names for the ClassLabel names of an ImageNet copy on the Hub.

    WordNet-id labels map by id; labels that are class indices ('0'..'999', as an imagefolder copy of ImageNetV2
    has) map by index. 1,000 other labels are read in the standard class-index order (the order of
    ILSVRC/imagenet-1k, whose names are the synset words, 'tench, Tinca tinca'), but only after checking it:
    the first word of each label must be a synonym of that index's synset (timm's synset-to-lemma list) or
    its CLIP name, so a copy with, say, alphabetically sorted labels fails instead of mislabelling.
    """
    wnid_names = imagenet_wnid_names()
    if all(name in wnid_names for name in label_names):
        return [wnid_names[name] for name in label_names]
    clip_names = list(open_clip.IMAGENET_CLASSNAMES)
    if all(name.isdigit() and int(name) < len(clip_names) for name in label_names):
        return [clip_names[int(name)] for name in label_names]
    if len(label_names) == len(clip_names):
        lemmas = _synset_lemmas()
        synonyms = [{word.strip().lower() for word in lemmas[wnid].split(",")} for wnid in imagenet_wnids()]
        agree = sum(
            name.split(",")[0].strip().lower() in {*words, clip.lower()}
            for name, words, clip in zip(label_names, synonyms, clip_names)
        )
        if agree >= ORDER_CHECK * len(clip_names):
            return clip_names
        raise ForgetkitError(
            f"{where}: its 1,000 ClassLabel names are not in the standard ImageNet-1k order (only {agree} agree "
            "with it); pass --class-names FILE with one '<ClassLabel name or index> <class name>' line per class"
        )
    raise ForgetkitError(
        f"{where}: its {len(label_names)} ClassLabel names are neither WordNet ids, class indices, nor the 1,000 "
        "ImageNet-1k classes; pass --class-names FILE with one '<ClassLabel name or index> <class name>' line per class"
    )


def _synset_lemmas() -> dict[str, str]:
    text = resources.files("timm.data._info").joinpath("imagenet_synset_to_lemma.txt").read_text()
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def hf_imagenet_images(source: Path, options: BuildOptions, dataset: str) -> LabelledImages:
    """A Hugging Face ImageNet(-like) split as image files with CLIP class names (or `--class-names`)."""
    images = open_hf_images(source, options.split)
    return hf_labelled_images(images, hf_class_names(images, options, imagenet_label_names), options, dataset)


def split_root(source: Path, split: str) -> Path:
    return source / split if (source / split).is_dir() else source


@register("imagenet-vqa")
def build(options: BuildOptions) -> BuildResult:
    """ImageNet(-style) folders or a Hugging Face dataset → 4-option CLIP-hard MCQs (imagenet_vqa_<split>)."""
    if options.source is not None and is_hf_source(options.source):
        dataset = f"imagenet_vqa_{options.split}"
        return build_classification(hf_imagenet_images(options.source, options, dataset), dataset, options)
    root = split_root(
        options.require_source(
            "the ImageNet folder (SOURCE/<split>/<wnid>/*.JPEG), a datasets save_to_disk folder, or hf:OWNER/NAME"
        ),
        options.split,
    )
    folders, paths, labels = scan_class_folders(root)
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
    else:
        names = folder_class_names(folders, imagenet_wnid_names(), "the ImageNet-1k synset list")
    return build_classification(LabelledImages(paths, labels, names, root), f"imagenet_vqa_{options.split}", options)
