"""ImageNet-VQA (paper §2, App. B.1): ImageNet classification as 4-option CLIP-hard MCQs.

Source: an ImageNet-style folder, `SOURCE/<split>/<wnid>/<image>` or `SOURCE/<wnid>/<image>`; or a
Hugging Face dataset (a `save_to_disk` folder or `hf:NAME` in the local cache, e.g. `hf:ILSVRC/imagenet-1k`,
read by `hf_images`).
Class names (`--class-names`), matched to WordNet ids through timm's ordered synset list:
- `authors` (default): as the authors' builder names them, the first comma-separated synonym of each class's
  line in ImageNet's metadata ('tench, Tinca tinca' -> 'tench'): `SOURCE/metadata.txt` when there is one (the
  authors' file, a Python dict of class index -> synonyms), else the same synset words as timm ships them;
- `openclip`: open_clip's 1,000 CLIP-cleaned names ('hammerhead shark' where the authors have 'hammerhead');
- a file of `<folder> <class name>` lines (any folder names, e.g. a custom subset).
Classes whose names differ only in case are one option text: the authors' 'crane' and 'maillot' each name two
classes, and 'Cardigan' (the corgi) and 'cardigan' (the sweater) become one more, so 997 option texts.
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
from datasets_builders.sources import scan_class_folders


def split_root(source: Path, split: str) -> Path:
    return source / split if (source / split).is_dir() else source


OUTPUT = "imagenet_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register("imagenet-vqa", params=QUESTION_PARAM, output=OUTPUT)
def build(options: BuildOptions) -> BuildResult:
    """ImageNet(-style) folders or a Hugging Face dataset → 4-option CLIP-hard MCQs (imagenet_vqa_<split>)."""
    dataset = OUTPUT.format(split=options.split)
    question = classification_question("imagenet_vqa", options)
    if is_hf_source(options.source):
        images, name_source = hf_imagenet_images(options, dataset)
        return build_classification(images, dataset, options, question=question, name_source=name_source)
    source = options.require_source(
        "the ImageNet folder (SOURCE/<split>/<wnid>/*.JPEG), a datasets save_to_disk folder, or hf:OWNER/NAME"
    )
    root = split_root(source, options.split)
    folders, paths, labels = scan_class_folders(root)
    names, name_source = folder_names(options, source, folders, imagenet_wnids(), "the ImageNet-1k synset list")
    images = LabelledImages(paths, labels, names, root)
    return build_classification(images, dataset, options, question=question, name_source=name_source)
