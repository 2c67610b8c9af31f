"""`forgetkit build-data caltech101-vqa` on torchvision's 101_ObjectCategories folders and on Hugging Face
datasets: the authors' split file and class names by default, the seeded per-class split as an option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from classification_sources import (
    check_prompts,
    check_questions,
    hf_dataset,
    manifest,
    output_bytes,
    records,
    save_hf,
    save_photo,
)

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.caltech101_vqa import CALTECH101_FOLDERS, authors_folder_names, caltech101_folder_names
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

FOLDERS = ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes", "yin_yang")
NAMES = {
    "Faces": "face",
    "Faces_easy": "face",
    "Leopards": "leopard",
    "accordion": "accordion",
    "airplanes": "airplane",
    "yin_yang": "yin yang",
}
"""The authors' names (data/raw_datasets/caltech_classes.json): the two face folders are one class."""
CLIP_BENCHMARK = {
    "Faces": "off-center face",
    "Faces_easy": "centered face",
    "Leopards": "leopard",
    "accordion": "accordion",
    "airplanes": "airplane",
    "yin_yang": "yin and yang symbol",
}
PER_CLASS = 5
SEEDED = {"split_file": "seeded", "train_per_class": "2"}
AUTHORS_SPLIT = {"train": (1, 3), "test": (2, 4, 5)}
"""Image numbers per split in the test's caltech.jsonl, for every category."""
QUESTION = "What is the object category in this image? Please answer with a single letter (A, B, C or D)."
"""data/processors/caltech101_to_vqa_json.py at commit 16d5831 of the authors' repository, byte for byte."""


def build(source: Path, out: Path, clip: ClipSpec, split: str = "test", **overrides) -> Path:
    options = dict(source=source, out=out, split=split, clip=clip, params=SEEDED)
    run_builder("caltech101-vqa", BuildOptions(**{**options, **overrides}))
    return out


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/caltech101/101_ObjectCategories/<category>/image_0001.jpg, as torchvision.datasets.Caltech101 unpacks."""
    root = tmp_path_factory.mktemp("torchvision")
    for label, folder in enumerate(FOLDERS):
        for n in range(1, PER_CLASS + 1):
            save_photo(root / "caltech101" / "101_ObjectCategories" / folder / f"image_{n:04d}.jpg", label, n)
    return root


def write_split_file(path: Path, label=lambda folder: NAMES[folder], extra: tuple[str, ...] = ()) -> Path:
    """A caltech.jsonl as the authors wrote it: absolute paths on their machine, the label, the split."""
    lines = [
        {"image": f"/pasteur/u/yuhuiz/data/Caltech101/101_ObjectCategories/{key}", "label": label(key.split("/")[0])}
        | {"split": split}
        for split, numbers in AUTHORS_SPLIT.items()
        for folder in FOLDERS[1:]
        for key in (f"{folder}/image_{n:04d}.jpg" for n in numbers)
    ]
    lines += [{"image": f"/elsewhere/{key}", "label": "accordion", "split": "test"} for key in extra]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def by_folder(record: dict) -> str:
    return NAMES[Path(record["image"]).parent.name]


def images_of(out: Path, split: str) -> set[str]:
    """`<category>/<file>` of every image in a built split."""
    return {"/".join(Path(record["image"]).parts[-2:]) for record in records(out, f"caltech101_vqa_{split}")}


def test_the_authors_split_file_in_the_source_chooses_each_splits_images(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    source = tmp_path / "source"
    shutil.copytree(torchvision_root, source)
    write_split_file(source / "caltech.jsonl", extra=("accordion/image_0099.jpg",))
    for split, numbers in AUTHORS_SPLIT.items():
        out = build(source, tmp_path / split, offline_clip, split=split, params={})
        check_questions(out, f"caltech101_vqa_{split}", by_folder)
        assert images_of(out, split) == {f"{folder}/image_{n:04d}.jpg" for folder in FOLDERS[1:] for n in numbers}
        check_prompts(out, f"caltech101_vqa_{split}", QUESTION)
    built = manifest(tmp_path / "test", "caltech101_vqa_test")
    assert built["skipped"] == [
        {
            "item": f"{source / 'caltech.jsonl'}:{6 * 5 + 1}",
            "reason": "accordion/image_0099.jpg is listed for test but not found under the category folders",
        }
    ]
    assert (built["class_names"], built["class_name_source"], built["question"]) == (5, "authors", QUESTION)


def test_both_face_folders_are_the_one_class_face(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    split_file = write_split_file(tmp_path / "caltech.jsonl")
    out = build(torchvision_root, tmp_path / "out", offline_clip, params={"split_file": str(split_file)})
    built = check_questions(out, "caltech101_vqa_test", by_folder)
    faces = [record for record in built if Path(record["image"]).parent.name in ("Faces", "Faces_easy")]
    assert len(faces) == 2 * len(AUTHORS_SPLIT["test"]) and {record["class_label"] for record in faces} == {"face"}
    assert all(not {"off-center face", "centered face"} & set(record["options"]) for record in built)


def test_a_split_file_that_labels_an_image_otherwise_or_is_missing_is_refused(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    wrong = write_split_file(tmp_path / "wrong.jsonl", label=lambda folder: CLIP_BENCHMARK[folder])
    with pytest.raises(ForgetkitError, match=r"wrong.jsonl:\d+: Faces/image_0002.jpg is labelled 'off-center face'"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={"split_file": str(wrong)})
    with pytest.raises(ForgetkitError, match=r"caltech.jsonl does not exist.*--param split_file=seeded"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={})
    with pytest.raises(ForgetkitError, match="--param train_per_class sets the seeded split; add --param split_file="):
        build(torchvision_root, tmp_path / "out", offline_clip, params={"train_per_class": "2"})


def test_the_seeded_split_divides_every_class_without_background(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    train = build(torchvision_root, tmp_path / "train", offline_clip, split="train")
    test = build(torchvision_root, tmp_path / "test", offline_clip, split="test")
    assert len(check_questions(train, "caltech101_vqa_train", by_folder)) == 2 * len(NAMES)
    built = check_questions(test, "caltech101_vqa_test", by_folder)
    assert len(built) == (PER_CLASS - 2) * len(NAMES)
    assert not images_of(train, "train") & images_of(test, "test")
    assert len(images_of(train, "train") | images_of(test, "test")) == PER_CLASS * len(NAMES)
    assert all("background" not in record["options"] and "BACKGROUND" not in record["image"] for record in built)


def test_the_seeded_split_follows_split_seed_not_seed(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    base = images_of(build(torchvision_root, tmp_path / "a", offline_clip, split="train"), "train")
    assert images_of(build(torchvision_root, tmp_path / "b", offline_clip, split="train", seed=7), "train") == base
    moved = build(torchvision_root, tmp_path / "c", offline_clip, split="train", params={**SEEDED, "split_seed": "1"})
    assert images_of(moved, "train") != base


def test_same_seed_gives_identical_bytes(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    first = build(torchvision_root, tmp_path / "a", offline_clip)
    second = build(torchvision_root / "caltech101", tmp_path / "b", offline_clip)  # one level down works too
    assert output_bytes(first, "caltech101_vqa_test") == output_bytes(second, "caltech101_vqa_test")


def test_bad_split_and_params_are_refused(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="no split 'val'; choose train or test"):
        build(torchvision_root, tmp_path / "out", offline_clip, split="val")
    with pytest.raises(ForgetkitError, match="train_per_class='many' must be a whole number"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={**SEEDED, "train_per_class": "many"})
    with pytest.raises(ForgetkitError, match="test split is empty.*lower --param train_per_class"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={**SEEDED, "train_per_class": "30"})


def test_a_single_split_hugging_face_dataset_is_split_per_class(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = [folder.lower() for folder in FOLDERS]  # e.g. 'background_google', 'faces', ...
    labels = [label for label in range(len(FOLDERS)) for _ in range(PER_CLASS)]
    source = save_hf(tmp_path / "hf", {"train": hf_dataset(labels, label_names)})
    by_row = {name.lower(): text for name, text in NAMES.items()}

    def truth(record: dict) -> str:
        return by_row[label_names[labels[int(record["id"].split("/")[-1])]]]

    params = {"train_per_class": "2"}
    train = check_questions(
        build(source, tmp_path / "train", offline_clip, split="train", params=params), "caltech101_vqa_train", truth
    )
    test = check_questions(build(source, tmp_path / "test", offline_clip, params=params), "caltech101_vqa_test", truth)
    assert (len(train), len(test)) == (2 * len(NAMES), (PER_CLASS - 2) * len(NAMES))
    assert not {record["id"] for record in train} & {record["id"] for record in test}
    with pytest.raises(ForgetkitError, match="split_file matches images by <category>/<file>, which a Hugging Face"):
        build(source, tmp_path / "out", offline_clip, params={"split_file": "caltech.jsonl"})


def test_a_hugging_face_dataset_with_both_splits_is_taken_as_published(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = list(FOLDERS[1:])
    labels = [0, 1, 2, 3, 4, 5]
    source = save_hf(
        tmp_path / "hf", {"train": hf_dataset([0, 1, 2, 3], label_names), "test": hf_dataset(labels, label_names)}
    )
    out = build(source, tmp_path / "out", offline_clip, params={})
    built = check_questions(
        out, "caltech101_vqa_test", lambda r: NAMES[label_names[labels[int(r["id"].split("/")[-1])]]]
    )
    assert len(built) == len(labels)


def test_clip_benchmark_names_and_a_names_file_are_options(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(torchvision_root, tmp_path / "clip", offline_clip, class_names=Path("clip-benchmark"))
    check_questions(out, "caltech101_vqa_test", lambda record: CLIP_BENCHMARK[Path(record["image"]).parent.name])
    assert manifest(out, "caltech101_vqa_test")["class_names"] == 6
    names = tmp_path / "names.txt"
    names.write_text(
        "Faces face\nFaces_easy face\nLeopards cat\naccordion squeezebox\nairplanes plane\nyin_yang sign\n"
    )
    out = build(torchvision_root, tmp_path / "out", offline_clip, class_names=names)
    custom = dict(line.split(" ", 1) for line in names.read_text().splitlines())
    check_questions(out, "caltech101_vqa_test", lambda record: custom[Path(record["image"]).parent.name])


def test_name_lists_line_up_with_the_sorted_category_folders() -> None:
    names = caltech101_folder_names()
    assert list(CALTECH101_FOLDERS) == sorted(CALTECH101_FOLDERS)
    assert len(names) == 102
    assert names["background_google"] == "background"
    assert names["car_side"] == "side of a car"
    assert names["cougar_face"] == "face of a cougar cat"
    assert names["snoopy"] == "snoopy (cartoon beagle)"
    assert names["yin_yang"] == "yin and yang symbol"
    authors = list(dict.fromkeys(authors_folder_names().values()))  # caltech_classes.json's order
    assert len(authors) == 100
    assert authors[:6] == ["face", "leopard", "motorbike", "accordion", "airplane", "anchor"]
    assert authors[-3:] == ["windsor chair", "wrench", "yin yang"]
    assert {"car side", "cougar face", "water lilly", "sea horse"} <= set(authors)
