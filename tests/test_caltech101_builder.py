"""`forgetkit build-data caltech101-vqa` on torchvision's 101_ObjectCategories folders and on Hugging Face
datasets, with the seeded per-class train/test split."""

from __future__ import annotations

from pathlib import Path

import pytest
from classification_sources import check_questions, hf_dataset, manifest, output_bytes, records, save_hf, save_photo

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.caltech101_vqa import CALTECH101_FOLDERS, caltech101_folder_names
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

FOLDERS = ("BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes", "yin_yang")
NAMES = {
    "Faces": "off-center face",
    "Faces_easy": "centered face",
    "Leopards": "leopard",
    "accordion": "accordion",
    "airplanes": "airplane",
    "yin_yang": "yin and yang symbol",
}
PER_CLASS = 5
TRAIN = {"train_per_class": "2"}


def build(source: Path, out: Path, clip: ClipSpec, split: str = "test", **overrides) -> Path:
    options = dict(source=source, out=out, split=split, clip=clip, params=TRAIN)
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


def by_folder(record: dict) -> str:
    return NAMES[Path(record["image"]).parent.name]


def images_of(out: Path, split: str) -> set[str]:
    """`<category>/<file>` of every image in a built split."""
    return {"/".join(Path(record["image"]).parts[-2:]) for record in records(out, f"caltech101_vqa_{split}")}


def test_train_and_test_split_every_class_without_background(
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
    assert manifest(test, "caltech101_vqa_test")["class_names"] == len(NAMES)


def test_the_split_follows_split_seed_not_seed(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    base = images_of(build(torchvision_root, tmp_path / "a", offline_clip, split="train"), "train")
    assert images_of(build(torchvision_root, tmp_path / "b", offline_clip, split="train", seed=7), "train") == base
    moved = build(torchvision_root, tmp_path / "c", offline_clip, split="train", params={**TRAIN, "split_seed": "1"})
    assert images_of(moved, "train") != base


def test_same_seed_gives_identical_bytes(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    first = build(torchvision_root, tmp_path / "a", offline_clip)
    second = build(torchvision_root / "caltech101", tmp_path / "b", offline_clip)  # one level down works too
    assert output_bytes(first, "caltech101_vqa_test") == output_bytes(second, "caltech101_vqa_test")


def test_bad_split_and_params_are_refused(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="no split 'val'; choose train or test"):
        build(torchvision_root, tmp_path / "out", offline_clip, split="val")
    with pytest.raises(ForgetkitError, match="train_per_class='many' must be a whole number"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={"train_per_class": "many"})
    with pytest.raises(ForgetkitError, match="test split is empty.*lower --param train_per_class"):
        build(torchvision_root, tmp_path / "out", offline_clip, params={"train_per_class": "30"})


def test_a_single_split_hugging_face_dataset_is_split_per_class(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = [folder.lower() for folder in FOLDERS]  # e.g. 'background_google', 'faces', ...
    labels = [label for label in range(len(FOLDERS)) for _ in range(PER_CLASS)]
    source = save_hf(tmp_path / "hf", {"train": hf_dataset(labels, label_names)})
    by_row = {name.lower(): text for name, text in NAMES.items()}

    def truth(record: dict) -> str:
        return by_row[label_names[labels[int(record["id"].split("/")[-1])]]]

    train = check_questions(
        build(source, tmp_path / "train", offline_clip, split="train"), "caltech101_vqa_train", truth
    )
    test = check_questions(build(source, tmp_path / "test", offline_clip), "caltech101_vqa_test", truth)
    assert (len(train), len(test)) == (2 * len(NAMES), (PER_CLASS - 2) * len(NAMES))
    assert not {record["id"] for record in train} & {record["id"] for record in test}


def test_a_hugging_face_dataset_with_both_splits_is_taken_as_published(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = list(FOLDERS[1:])
    labels = [0, 1, 2, 3, 4, 5]
    source = save_hf(
        tmp_path / "hf", {"train": hf_dataset([0, 1, 2, 3], label_names), "test": hf_dataset(labels, label_names)}
    )
    out = build(source, tmp_path / "out", offline_clip)
    built = check_questions(
        out, "caltech101_vqa_test", lambda r: NAMES[label_names[labels[int(r["id"].split("/")[-1])]]]
    )
    assert len(built) == len(labels)


def test_class_names_override_with_a_collision(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    names = tmp_path / "names.txt"
    names.write_text(
        "Faces face\nFaces_easy face\nLeopards cat\naccordion squeezebox\nairplanes plane\nyin_yang sign\n"
    )
    out = build(torchvision_root, tmp_path / "out", offline_clip, class_names=names)
    custom = dict(line.split(" ", 1) for line in names.read_text().splitlines())
    check_questions(out, "caltech101_vqa_test", lambda record: custom[Path(record["image"]).parent.name])


def test_clip_benchmark_names_line_up_with_the_sorted_category_folders() -> None:
    names = caltech101_folder_names()
    assert list(CALTECH101_FOLDERS) == sorted(CALTECH101_FOLDERS)
    assert len(names) == 102
    assert names["background_google"] == "background"
    assert names["car_side"] == "side of a car"
    assert names["cougar_face"] == "face of a cougar cat"
    assert names["snoopy"] == "snoopy (cartoon beagle)"
    assert names["yin_yang"] == "yin and yang symbol"
