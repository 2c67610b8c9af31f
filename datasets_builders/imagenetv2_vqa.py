"""ImageNetV2-VQA (paper §2.1, the second ID^T-ID^I set): ImageNetV2 as 4-option CLIP-hard MCQs.

Source: the ImageNetV2 release (Recht et al., 2019; tarballs on huggingface.co/datasets/vaishaal/ImageNetV2),
one folder per ImageNet class named by its index, `imagenetv2-matched-frequency-format-val/<0..999>/<hash>.jpeg`.
`--source` is that folder, or a folder holding it (the variant picked with `--param variant=`, also matching
clip-benchmark's renamed `ImageNetV2-<variant>`); or a Hugging Face dataset (`save_to_disk` folder or
`hf:NAME`), read by `hf_images`, with ImageNet's labels.
Class names: the same 1,000 CLIP-cleaned ImageNet names as imagenet-vqa, by class index; `--class-names`
overrides them (`<folder> <name>` lines, the folder being the class index).
ImageNetV2 is one test set, so `--split` only names the output: `test` or `val` (imagenetv2_vqa_<split>).
"""

from __future__ import annotations

from pathlib import Path

import open_clip

from datasets_builders.classification import (
    LabelledImages,
    build_classification,
    folder_class_names,
    read_class_names,
    scan_class_folders,
)
from datasets_builders.hf_images import is_hf_source
from datasets_builders.imagenet_vqa import hf_imagenet_images
from datasets_builders.registry import BuildOptions, BuildResult, register
from forgetkit.errors import ForgetkitError

VARIANTS = ("matched-frequency", "threshold0.7", "top-images")
SPLITS = ("test", "val")
LAYOUTS = (
    "the ImageNetV2 folder of class-index folders (imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg), "
    "a folder holding it, a datasets save_to_disk folder, or hf:OWNER/NAME"
)


@register(
    "imagenetv2-vqa",
    params={
        "variant": f"which ImageNetV2 folder to read under --source: {', '.join(VARIANTS)} (default matched-frequency)"
    },
)
def build(options: BuildOptions) -> BuildResult:
    """ImageNetV2 class-index folders or a Hugging Face dataset -> 4-option CLIP-hard MCQs (imagenetv2_vqa_<split>)."""
    if options.split not in SPLITS:
        raise ForgetkitError(
            f"imagenetv2-vqa has no split {options.split!r}: ImageNetV2 is one test set; pass --split test or val"
        )
    dataset = f"imagenetv2_vqa_{options.split}"
    if options.source is not None and is_hf_source(options.source):
        return build_classification(hf_imagenet_images(options.source, options, dataset), dataset, options)
    root = variant_root(options.require_source(LAYOUTS), options.param("variant") or VARIANTS[0])
    folders, paths, labels = scan_class_folders(root)
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
    else:
        index_names = {str(index): name for index, name in enumerate(open_clip.IMAGENET_CLASSNAMES)}
        names = folder_class_names(folders, index_names, "ImageNet's class indices 0-999")
    return build_classification(LabelledImages(paths, labels, names, root), dataset, options)


def variant_root(source: Path, variant: str) -> Path:
    """`source` itself when it holds class-index folders, else its folder for `variant`."""
    if variant not in VARIANTS:
        raise ForgetkitError(f"unknown ImageNetV2 variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    if not source.is_dir():
        raise ForgetkitError(f"source {source} is not a folder; pass {LAYOUTS}")
    if any(child.is_dir() and child.name.isdigit() for child in source.iterdir()):
        return source
    for name in (f"imagenetv2-{variant}-format-val", f"ImageNetV2-{variant}"):
        if (source / name).is_dir():
            return source / name
    raise ForgetkitError(
        f"{source} has no class-index folders (0..999) and no imagenetv2-{variant}-format-val; pass {LAYOUTS}"
    )
