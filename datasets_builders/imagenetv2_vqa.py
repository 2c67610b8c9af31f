"""ImageNetV2-VQA (paper §2.1, the second ID^T-ID^I set): ImageNetV2 as 4-option CLIP-hard MCQs.

Source: the ImageNetV2 release (Recht et al., 2019; tarballs on huggingface.co/datasets/vaishaal/ImageNetV2),
one folder per ImageNet class named by its index, `imagenetv2-matched-frequency-format-val/<0..999>/<hash>.jpeg`.
`--source` is that folder, or a folder holding it (the variant picked with `--param variant=`, also matching
clip-benchmark's renamed `ImageNetV2-<variant>`); or a Hugging Face dataset (`save_to_disk` folder or
`hf:NAME`), read by `hf_images`, with ImageNet's labels.
Class names: the same lists as imagenet-vqa, by class index (`authors`, the default, reads `SOURCE/metadata.txt`
when there is one, as the authors' builder reads ImageNet's; `openclip`), or a file of `<folder> <name>` lines,
the folder being the class index.
ImageNetV2 is one test set, so `--split` only names the output: `test` or `val` (imagenetv2_vqa_<split>).
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.classification import (
    QUESTION_PARAM,
    LabelledImages,
    build_classification,
    classification_question,
)
from datasets_builders.hf_images import is_hf_source
from datasets_builders.imagenet_classes import folder_names, hf_imagenet_images, imagenet_wnids
from datasets_builders.registry import BuildOptions, BuildResult, register
from datasets_builders.sources import check_split, scan_class_folders
from forgetkit.errors import ForgetkitError

VARIANTS = ("matched-frequency", "threshold0.7", "top-images")
SPLITS = ("test", "val")
LAYOUTS = (
    "the ImageNetV2 folder of class-index folders (imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg), "
    "a folder holding it, a datasets save_to_disk folder, or hf:OWNER/NAME"
)


OUTPUT = "imagenetv2_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register(
    "imagenetv2-vqa",
    params={
        "variant": f"which ImageNetV2 folder to read under --source: {', '.join(VARIANTS)} (default matched-frequency)",
        **QUESTION_PARAM,
    },
    output=OUTPUT,
)
def build(options: BuildOptions) -> BuildResult:
    """ImageNetV2 class-index folders or a Hugging Face dataset -> 4-option CLIP-hard MCQs (imagenetv2_vqa_<split>)."""
    check_split(options, "imagenetv2-vqa", SPLITS, ": ImageNetV2 is one test set")
    dataset = OUTPUT.format(split=options.split)
    question = classification_question("imagenetv2_vqa", options)
    if is_hf_source(options.source):
        images, name_source = hf_imagenet_images(options, dataset)
        return build_classification(images, dataset, options, question=question, name_source=name_source)
    source = options.require_source(LAYOUTS)
    root = variant_root(source, options.param("variant") or VARIANTS[0])
    folders, paths, labels = scan_class_folders(root)
    indices = [str(index) for index in range(len(imagenet_wnids()))]
    names, name_source = folder_names(options, source, folders, indices, "ImageNet's class indices 0-999")
    images = LabelledImages(paths, labels, names, root)
    return build_classification(images, dataset, options, question=question, name_source=name_source)


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
