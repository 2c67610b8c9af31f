"""StanfordCars-VQA (paper §2.1, ID^T-OOD^I): Stanford Cars (Krause et al., 2013) as 4-option CLIP-hard MCQs.

Sources, tried in this order:
- a Hugging Face dataset (`save_to_disk` folder or `hf:NAME`), read by `hf_images`;
- torchvision's layout (`torchvision.datasets.StanfordCars`), `SOURCE/stanford_cars/` or `SOURCE/` holding
  `devkit/cars_meta.mat` (`class_names`: 196 names), `devkit/cars_train_annos.mat` and
  `cars_test_annos_withlabels.mat` (`annotations`: a struct array with `fname` and a 1-based `class`; the
  test file may also sit in devkit/), and the images in `cars_train/` and `cars_test/`; read with scipy.io.loadmat;
- an ImageFolder named by class, `SOURCE/<split>/<class name>/<image>` (e.g. the Kaggle "by classes" copy).
Splits: train (8,144 images) and test (8,041), the devkit's, which are the authors' (their `cars.jsonl` puts
cars_train/ in train and cars_test/ in test).

Class names (`--class-names`): the devkit's cars_meta.mat names for the devkit layout, folder or ClassLabel
names for the other sources, as
- `authors` (default): with the model year first, '2000 AM General Hummer SUV', as the authors'
  `cars_classes.json` writes each devkit name (github lihe50hz/MLLM-Forgetting, commit 16d5831); a name that does
  not end in a year is kept;
- `devkit`: as written, 'AM General Hummer SUV 2000';
- a file of `<key> <name>` lines, the key being the 1-based class number, the folder name, or the ClassLabel
  name/index.
"""

from __future__ import annotations

import re
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
    describe_choice,
    integer_vector,
    load_mat,
    scan_class_folders,
    split_folder,
)
from forgetkit.errors import ForgetkitError

SPLITS = ("train", "test")
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",)}
ANNOTATIONS = {
    "train": (("devkit/cars_train_annos.mat",), "cars_train"),
    "test": (("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"), "cars_test"),
}
"""Per split: where its labelled annotation file may be (torchvision's place first) and its image folder."""
NAME_LISTS = ("authors", "devkit")
YEAR_LAST = re.compile(r"(?P<model>.*\S) (?P<year>(?:19|20)\d\d)")
LAYOUTS = (
    "torchvision's Stanford Cars folder (stanford_cars/ with devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
    "cars_test_annos_withlabels.mat, cars_train/, cars_test/), an ImageFolder (SOURCE/<split>/<class>/*.jpg), "
    "a datasets save_to_disk folder, or hf:OWNER/NAME"
)


def year_first(name: str) -> str:
    """The authors' form of a Stanford Cars name: the model year moved to the front."""
    match = YEAR_LAST.fullmatch(name)
    return f"{match['year']} {match['model']}" if match else name


def listed_names(names: Sequence[str], choice: str) -> list[str]:
    """`names` as the named list `choice` (`NAME_LISTS`) writes them."""
    return [year_first(name) for name in names] if choice == "authors" else list(names)


OUTPUT = "stanford_cars_vqa_{split}"
"""The dataset this builder writes (`{split}`: `--split`)."""


@register("stanford-cars-vqa", params=QUESTION_PARAM, output=OUTPUT)
def build(options: BuildOptions) -> BuildResult:
    """Stanford Cars (devkit, ImageFolder or HF dataset) -> 4-option CLIP-hard MCQs (stanford_cars_vqa_<split>)."""
    check_split(options, "stanford-cars-vqa", SPLITS)
    dataset = OUTPUT.format(split=options.split)
    question = classification_question("stanford_cars_vqa", options)
    choice = class_name_choice(options, NAME_LISTS)
    if is_hf_source(options.source):
        images = hf_source_images(
            options, dataset, choice, lambda label_names, _: listed_names(label_names, str(choice))
        )
    else:
        source = options.require_source(LAYOUTS)
        base = source / "stanford_cars" if (source / "stanford_cars").is_dir() else source
        devkit = ("devkit", "cars_train", "cars_test", "cars_test_annos_withlabels.mat")
        if any((base / name).exists() for name in devkit):
            images = devkit_images(base, options, choice)
        else:
            images = folder_images(source, options, choice)
    return build_classification(images, dataset, options, question=question, name_source=describe_choice(choice))


def devkit_images(base: Path, options: BuildOptions, choice: str | Path) -> LabelledImages:
    """The split's images in annotation order, labelled by the 1-based `class` of each annotation."""
    meta = base / "devkit" / "cars_meta.mat"
    if not meta.is_file():
        raise ForgetkitError(f"{meta} is missing; the Stanford Cars devkit names its 196 classes there ({LAYOUTS})")
    names = class_name_list(meta)
    candidates, image_folder = ANNOTATIONS[options.split]
    annotation_file = next((base / name for name in candidates if (base / name).is_file()), None)
    if annotation_file is None:
        raise ForgetkitError(
            f"{base / candidates[0]} is missing; the {options.split} split needs its labelled annotations ({LAYOUTS})"
        )
    images = base / image_folder
    if not images.is_dir():
        raise ForgetkitError(f"{images} is missing; it holds the {options.split} images named in {annotation_file}")
    files, classes = read_annotations(annotation_file)
    if classes.min() < 1 or classes.max() > len(names):
        raise ForgetkitError(
            f"{annotation_file}: class must be 1..{len(names)} (cars_meta.mat has {len(names)} names), "
            f"found {classes.min()}..{classes.max()}"
        )
    keys = [str(number) for number in range(1, len(names) + 1)]
    chosen = chosen_names(choice, keys, lambda list_name: listed_names(names, list_name))
    return LabelledImages([images / name for name in files], classes - 1, chosen, images)


def folder_images(source: Path, options: BuildOptions, choice: str | Path) -> LabelledImages:
    root = split_folder(source, options.split, SPLIT_FOLDERS)
    folders, paths, labels = scan_class_folders(root)
    names = chosen_names(choice, folders, lambda list_name: listed_names(folders, list_name))
    return LabelledImages(paths, labels, names, root)


def class_name_list(meta: Path) -> list[str]:
    """cars_meta.mat's `class_names`, a 1x196 cell array of strings."""
    mat = load_mat(meta, "the devkit's cars_meta.mat with a 'class_names' cell array")
    if "class_names" not in mat:
        raise ForgetkitError(f"{meta} has no variable 'class_names'; expected the devkit's cars_meta.mat")
    names = np.atleast_1d(np.asarray(mat["class_names"], dtype=object)).tolist()
    if not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise ForgetkitError(f"{meta}: 'class_names' must be a cell array of non-empty strings")
    return [name.strip() for name in names]


def read_annotations(path: Path) -> tuple[list[str], np.ndarray]:
    """An annotations .mat: the image file names and their 1-based classes."""
    mat = load_mat(path, "a Stanford Cars annotations file with an 'annotations' struct array")
    if "annotations" not in mat:
        raise ForgetkitError(f"{path} has no variable 'annotations'; expected a struct array with fname and class")
    annotations = np.atleast_1d(mat["annotations"])
    fields = annotations.dtype.names or ()
    if "fname" not in fields or "class" not in fields:
        raise ForgetkitError(
            f"{path}: 'annotations' must be a struct array with fields fname and class (it has: "
            f"{', '.join(fields) or 'no fields'}); the unlabelled devkit test file lacks class, use "
            "cars_test_annos_withlabels.mat"
        )
    files = [str(name) for name in annotations["fname"].tolist()]
    classes = integer_vector({"class": np.asarray(annotations["class"].tolist())}, "class", path)
    return files, classes
