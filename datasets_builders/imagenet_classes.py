"""ImageNet's 1,000 classes, shared by imagenet-vqa, imagenetv2-vqa and imagewikiqa: their WordNet ids in
class-index order (timm's synset list), the named lists `--class-names` picks from (`authors`, the first synonym
of each class's metadata line; `openclip`, open_clip's CLIP names), and the names of an ImageNet copy's class
folders or Hugging Face ClassLabels.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import open_clip

from datasets_builders.classification import LabelledImages
from datasets_builders.hf_images import hf_source_images
from datasets_builders.registry import BuildOptions
from datasets_builders.sources import chosen_names, class_name_choice, describe_choice, folder_class_names
from forgetkit.errors import ForgetkitError

ORDER_CHECK = 0.9
"""Share of 1,000 HF label names that must agree with the standard ImageNet-1k order to be read in it."""
NAME_LISTS = ("authors", "openclip")
METADATA = "metadata.txt"


def imagenet_wnid_names() -> dict[str, str]:
    """WordNet id → CLIP class name for the 1,000 ImageNet-1k classes, in their standard order."""
    return dict(zip(imagenet_wnids(), open_clip.IMAGENET_CLASSNAMES))


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (timm ships the list)."""
    wnids = resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text().split()
    if len(wnids) != len(open_clip.IMAGENET_CLASSNAMES):
        raise RuntimeError("timm's synset list and open_clip's ImageNet names disagree in length")
    return wnids


def imagenet_names(choice: str, source: Path | None) -> tuple[list[str], str]:
    """The 1,000 names of list `choice` (`NAME_LISTS`) in class-index order, and their source for the manifest."""
    if choice == "openclip":
        return list(open_clip.IMAGENET_CLASSNAMES), choice
    metadata = source / METADATA if source is not None and source.is_dir() else None
    if metadata is not None and metadata.is_file():
        lines, origin = read_metadata(metadata), f"first synonyms in SOURCE/{METADATA}"
    else:
        lemmas = _synset_lemmas()
        lines, origin = [lemmas[wnid] for wnid in imagenet_wnids()], "first synonyms of timm's ImageNet synset words"
    return [line.split(",")[0].strip() for line in lines], f"{choice} ({origin})"


def read_metadata(path: Path) -> list[str]:
    """The authors' metadata.txt: a Python dict literal of class index (0-999) -> comma-separated synonyms."""
    count = len(open_clip.IMAGENET_CLASSNAMES)
    try:
        table = ast.literal_eval(path.read_text(encoding="utf-8"))
    except (ValueError, SyntaxError) as err:
        raise ForgetkitError(f"{path} is not a Python dict literal ({err}); remove it or pass --class-names") from None
    if not isinstance(table, dict) or set(table) != set(range(count)):
        raise ForgetkitError(f"{path} must map each class index 0-{count - 1} to its synonyms; remove it or fix it")
    return [str(table[index]) for index in range(count)]


def imagenet_label_names(
    label_names: list[str], where: str, index_names: Sequence[str] = open_clip.IMAGENET_CLASSNAMES
) -> list[str]:
    """Names (`index_names`, in class-index order) for the ClassLabel names of an ImageNet copy on the Hub.

    WordNet-id labels map by id; labels that are class indices ('0'..'999', as an imagefolder copy of ImageNetV2
    has) map by index. 1,000 other labels are read in the standard class-index order (the order of
    ILSVRC/imagenet-1k, whose names are the synset words, 'tench, Tinca tinca'), but only after checking it:
    the first word of each label must be a synonym of that index's synset (timm's synset-to-lemma list) or
    its CLIP name, so a copy with, say, alphabetically sorted labels fails instead of mislabelling.
    """
    wnid_names = dict(zip(imagenet_wnids(), index_names))
    if all(name in wnid_names for name in label_names):
        return [wnid_names[name] for name in label_names]
    clip_names = list(open_clip.IMAGENET_CLASSNAMES)
    if all(name.isdigit() and int(name) < len(index_names) for name in label_names):
        return [index_names[int(name)] for name in label_names]
    if len(label_names) == len(clip_names):
        lemmas = _synset_lemmas()
        synonyms = [{word.strip().lower() for word in lemmas[wnid].split(",")} for wnid in imagenet_wnids()]
        agree = sum(
            name.split(",")[0].strip().lower() in {*words, clip.lower()}
            for name, words, clip in zip(label_names, synonyms, clip_names)
        )
        if agree >= ORDER_CHECK * len(clip_names):
            return list(index_names)
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


def imagenet_choice(options: BuildOptions, source: Path | None) -> tuple[str | Path, list[str], str]:
    """What `--class-names` asks of an ImageNet build: the choice, the 1,000 names of a named list in class-index
    order (none for a file; `source` may hold the authors' metadata.txt) and the names' source for the manifest."""
    choice = class_name_choice(options, NAME_LISTS)
    if isinstance(choice, Path):
        return choice, [], describe_choice(choice)
    return choice, *imagenet_names(choice, source)


def hf_imagenet_images(options: BuildOptions, dataset: str) -> tuple[LabelledImages, str]:
    """The Hugging Face ImageNet(-like) `--source` split as image files named by `--class-names`, and the names'
    source."""
    choice, index_names, name_source = imagenet_choice(options, None)
    images = hf_source_images(
        options, dataset, choice, lambda labels, where: imagenet_label_names(labels, where, index_names)
    )
    return images, name_source


def folder_names(
    options: BuildOptions, source: Path, folders: Sequence[str], keys: Sequence[str], keys_name: str
) -> tuple[list[str], str]:
    """Each class folder's `--class-names` name, ImageNet class i's folder being `keys[i]` (its WordNet id or
    index), and the names' source for the manifest."""
    choice, index_names, name_source = imagenet_choice(options, source)
    listed = dict(zip(keys, index_names))
    return chosen_names(choice, folders, lambda _: folder_class_names(folders, listed, keys_name)), name_source
