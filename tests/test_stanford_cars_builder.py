"""`forgetkit build-data stanford-cars-vqa` on torchvision's Stanford Cars devkit layout (.mat annotations),
on a class-named ImageFolder and on a Hugging Face dataset, with the authors' year-first class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from classification_sources import (
    check_prompts,
    check_questions,
    hf_dataset,
    manifest,
    output_bytes,
    save_hf,
    save_photo,
)

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.stanford_cars_vqa import year_first
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

DEVKIT = [
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Audi R8 Coupe 2012",
    "Ram C/V Cargo Van Minivan 2012",
    "Tesla Model S Sedan 2012",
    "smart fortwo Convertible 2012",
]
"""cars_meta.mat's class_names (devkit classes 1, 2, 15, 174, 185, 196)."""
NAMES = [
    "2000 AM General Hummer SUV",
    "2012 Acura RL Sedan",
    "2012 Audi R8 Coupe",
    "2012 Ram C/V Cargo Van Minivan",
    "2012 Tesla Model S Sedan",
    "2012 smart fortwo Convertible",
]
"""The same classes in the authors' data/raw_datasets/cars_classes.json (commit 16d5831), byte for byte."""
QUESTION = "What is the make and model of the car in this image? Please answer with a single letter (A, B, C or D)."
"""data/processors/stanfordcars_to_vqa_json.py at commit 16d5831 of the authors' repository, byte for byte."""
CLASSES = {"train": [1, 2, 3, 4, 5, 6, 1, 3], "test": [6, 5, 4, 3, 2, 1, 2]}
"""The 1-based `class` of each annotation, per split."""
FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


def annotations(classes: list[int], fields: tuple[str, ...] = FIELDS) -> np.ndarray:
    """A 1xN MATLAB struct array like the devkit's: uint8/uint16 scalars and the image file name."""
    values = {"bbox_x1": 1, "bbox_y1": 2, "bbox_x2": 30, "bbox_y2": 20}
    array = np.zeros((1, len(classes)), dtype=[(field, "O") for field in fields])
    for n, label in enumerate(classes):
        cell = {**values, "class": label, "fname": f"{n + 1:05d}.jpg"}
        array[0, n] = tuple(
            np.array([cell[field]]) if field == "fname" else np.array([[cell[field]]], dtype=np.uint16)
            for field in fields
        )
    return array


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/stanford_cars/ as torchvision.datasets.StanfordCars expects it."""
    base = tmp_path_factory.mktemp("torchvision") / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([DEVKIT], dtype=object)})
    scipy.io.savemat(base / "devkit" / "cars_train_annos.mat", {"annotations": annotations(CLASSES["train"])})
    scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": annotations(CLASSES["test"])})
    for split, classes in CLASSES.items():
        for n, label in enumerate(classes):
            save_photo(base / f"cars_{split}" / f"{n + 1:05d}.jpg", label, n)
    return base.parent


def by_file(split: str, names: list[str] = NAMES):
    return lambda record: names[CLASSES[split][int(Path(record["image"]).stem) - 1] - 1]


def build(source: Path, out: Path, clip: ClipSpec, split: str = "test", **overrides) -> Path:
    run_builder(
        "stanford-cars-vqa", BuildOptions(**{**dict(source=source, out=out, split=split, clip=clip), **overrides})
    )
    return out


def test_each_split_is_asked_with_the_devkit_class_names(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    for split, classes in CLASSES.items():
        out = build(torchvision_root, tmp_path / split, offline_clip, split=split)
        assert len(check_questions(out, f"stanford_cars_vqa_{split}", by_file(split))) == len(classes)
        assert manifest(out, f"stanford_cars_vqa_{split}")["counts"]["classes"] == len(set(classes))
        check_prompts(out, f"stanford_cars_vqa_{split}", QUESTION)
    assert manifest(out, "stanford_cars_vqa_test")["class_name_source"] == "authors"


def test_the_devkit_names_as_written_are_an_option(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(torchvision_root, tmp_path / "out", offline_clip, class_names=Path("devkit"))
    check_questions(out, "stanford_cars_vqa_test", by_file("test", DEVKIT))
    assert manifest(out, "stanford_cars_vqa_test")["class_name_source"] == "devkit"


def test_the_authors_names_put_the_model_year_first() -> None:
    assert [year_first(name) for name in DEVKIT] == NAMES
    assert [year_first(name) for name in NAMES] == NAMES
    assert year_first("Some Car") == "Some Car"


def test_same_seed_gives_identical_bytes(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    first = build(torchvision_root, tmp_path / "a", offline_clip)
    second = build(torchvision_root / "stanford_cars", tmp_path / "b", offline_clip)  # the folder itself works too
    assert output_bytes(first, "stanford_cars_vqa_test") == output_bytes(second, "stanford_cars_vqa_test")


def test_missing_devkit_files_and_malformed_annotations_are_named(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    source = tmp_path / "copy"
    shutil.copytree(torchvision_root, source)
    base = source / "stanford_cars"
    (base / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(ForgetkitError, match=r"cars_test_annos_withlabels.mat is missing; the test split needs"):
        build(source, tmp_path / "out", offline_clip)
    unlabelled = annotations(CLASSES["test"], fields=("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "fname"))
    scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": unlabelled})  # the devkit's test file
    with pytest.raises(ForgetkitError, match=r"must be a struct array with fields fname and class.*withlabels"):
        build(source, tmp_path / "out", offline_clip)
    scipy.io.savemat(base / "cars_test_annos_withlabels.mat", {"annotations": annotations([1, 7])})
    with pytest.raises(ForgetkitError, match=r"class must be 1..6 \(cars_meta.mat has 6 names\), found 1..7"):
        build(source, tmp_path / "out", offline_clip)
    shutil.rmtree(base / "devkit")
    with pytest.raises(ForgetkitError, match=r"devkit/cars_meta.mat is missing; the Stanford Cars devkit names"):
        build(source, tmp_path / "out", offline_clip)
    (base / "devkit").mkdir()
    (base / "devkit" / "cars_meta.mat").write_bytes(b"MATLAB 5.0 MAT-file, but then nothing")
    with pytest.raises(ForgetkitError, match=r"cannot read .*cars_meta.mat as a MATLAB .mat file"):
        build(source, tmp_path / "out", offline_clip)


def test_an_image_named_in_the_annotations_but_missing_is_skipped_and_counted(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    source = tmp_path / "copy"
    shutil.copytree(torchvision_root, source)
    missing = source / "stanford_cars" / "cars_test" / "00002.jpg"
    missing.unlink()
    out = build(source, tmp_path / "out", offline_clip)
    assert len(check_questions(out, "stanford_cars_vqa_test", by_file("test"))) == len(CLASSES["test"]) - 1
    assert [item["item"] for item in manifest(out, "stanford_cars_vqa_test")["skipped"]] == [str(missing)]


def test_unknown_split_is_refused(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="no split 'val'; choose train or test"):
        build(torchvision_root, tmp_path / "out", offline_clip, split="val")


def test_class_names_override_keyed_by_class_number(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("1 Hummer\n2 sedan\n3 coupe\n4 coupe\n5 sedan\n6 smart\n")  # colliding names
    out = build(torchvision_root, tmp_path / "out", offline_clip, class_names=names)
    custom = ["Hummer", "sedan", "coupe", "coupe", "sedan", "smart"]
    check_questions(
        out, "stanford_cars_vqa_test", lambda r: custom[CLASSES["test"][int(Path(r["image"]).stem) - 1] - 1]
    )


def test_a_class_named_image_folder_and_a_hugging_face_dataset(tmp_path: Path, offline_clip: ClipSpec) -> None:
    for label, name in enumerate(DEVKIT):  # Kaggle's car_data/{train,test}/<class name>/*.jpg
        save_photo(tmp_path / "car_data" / "test" / name.replace("/", "-") / f"{label:05d}.jpg", label, label)
    out = build(tmp_path / "car_data", tmp_path / "folder-out", offline_clip)
    check_questions(out, "stanford_cars_vqa_test", lambda record: year_first(Path(record["image"]).parent.name))
    labels = [0, 1, 2, 3, 4, 5, 5]
    source = save_hf(tmp_path / "hf", {"train": hf_dataset([0, 1], DEVKIT), "test": hf_dataset(labels, DEVKIT)})
    out = build(source, tmp_path / "hf-out", offline_clip)
    check_questions(out, "stanford_cars_vqa_test", lambda record: NAMES[labels[int(record["id"].split("/")[-1])]])
