"""StanfordCars-VQA (paper §2.1, ID^T-OOD^I): Stanford Cars (Krause et al., 2013) as 4-option CLIP-hard MCQs.

Sources, tried in this order:
- a Hugging Face dataset (`save_to_disk` folder or `hf:NAME`), read by `hf_images`;
- torchvision's layout (`torchvision.datasets.StanfordCars`), `SOURCE/stanford_cars/` or `SOURCE/` holding
  `devkit/cars_meta.mat` (`class_names`: 196 names), `devkit/cars_train_annos.mat` and
  `cars_test_annos_withlabels.mat` (`annotations`: a struct array with `fname` and a 1-based `class`; the
  test file may also sit in devkit/), and the images in `cars_train/` and `cars_test/`; read with scipy.io.loadmat;
- an ImageFolder named by class, `SOURCE/<split>/<class name>/<image>` (e.g. the Kaggle "by classes" copy).
Splits: train (8,144 images) and test (8,041).

Class names: the devkit's cars_meta.mat (e.g. 'AM General Hummer SUV 2000'); folder or ClassLabel names as
written for the other sources. `--class-names` overrides (`<key> <name>` lines, the key being the 1-based class
number, the folder name, or the ClassLabel name/index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets_builders.classification import (
    LabelledImages,
    build_classification,
    folder_class_names,
    read_class_names,
    scan_class_folders,
)
from datasets_builders.flowers102_vqa import integer_vector, load_mat, split_folder
from datasets_builders.hf_images import hf_class_names, hf_labelled_images, is_hf_source, open_hf_images
from datasets_builders.registry import BuildOptions, BuildResult, register
from forgetkit.errors import ForgetkitError

SPLITS = ("train", "test")
SPLIT_FOLDERS = {"train": ("train",), "test": ("test",)}
ANNOTATIONS = {
    "train": (("devkit/cars_train_annos.mat",), "cars_train"),
    "test": (("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat"), "cars_test"),
}
"""Per split: where its labelled annotation file may be (torchvision's place first) and its image folder."""
LAYOUTS = (
    "torchvision's Stanford Cars folder (stanford_cars/ with devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
    "cars_test_annos_withlabels.mat, cars_train/, cars_test/), an ImageFolder (SOURCE/<split>/<class>/*.jpg), "
    "a datasets save_to_disk folder, or hf:OWNER/NAME"
)


@register("stanford-cars-vqa")
def build(options: BuildOptions) -> BuildResult:
    """Stanford Cars (devkit, ImageFolder or HF dataset) -> 4-option CLIP-hard MCQs (stanford_cars_vqa_<split>)."""
    if options.split not in SPLITS:
        raise ForgetkitError(f"stanford-cars-vqa has no split {options.split!r}; choose train or test")
    dataset = f"stanford_cars_vqa_{options.split}"
    if options.source is not None and is_hf_source(options.source):
        hf = open_hf_images(options.source, options.split)
        names = hf_class_names(hf, options, lambda label_names, _: list(label_names))
        return build_classification(hf_labelled_images(hf, names, options, dataset), dataset, options)
    source = options.require_source(LAYOUTS)
    base = source / "stanford_cars" if (source / "stanford_cars").is_dir() else source
    if any((base / name).exists() for name in ("devkit", "cars_train", "cars_test", "cars_test_annos_withlabels.mat")):
        images = devkit_images(base, options)
    else:
        images = folder_images(source, options)
    return build_classification(images, dataset, options)


def devkit_images(base: Path, options: BuildOptions) -> LabelledImages:
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
    if options.class_names is not None:
        keys = [str(number) for number in range(1, len(names) + 1)]
        names = folder_class_names(keys, read_class_names(options.class_names), str(options.class_names))
    return LabelledImages([images / name for name in files], classes - 1, names, images)


def folder_images(source: Path, options: BuildOptions) -> LabelledImages:
    root = split_folder(source, options.split, SPLIT_FOLDERS)
    folders, paths, labels = scan_class_folders(root)
    names = folders
    if options.class_names is not None:
        names = folder_class_names(folders, read_class_names(options.class_names), str(options.class_names))
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
