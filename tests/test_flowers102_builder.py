"""`forgetkit build-data flowers102-vqa` on torchvision's Flowers102 files (jpg/, imagelabels.mat, setid.mat),
on an ImageFolder and on a Hugging Face dataset; the authors' train (trnid + valid) and test (tstid) by default."""

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
from datasets_builders.flowers102_vqa import flowers_names
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

NAMES = flowers_names()
LABELS = np.array([1, 2, 3, 4, 5, 6] * 3)
"""imagelabels.mat: the 1-based class of image i+1 (18 images, 6 classes)."""
SPLIT_IDS = {"trnid": [1, 2, 3, 4, 5, 6], "valid": [7, 8, 9, 10, 11, 12], "tstid": [18, 13, 16, 14, 17, 15]}
SETID = {"splits": "setid"}
QUESTION = "What is the class of this image? Please answer with a single letter (A, B, C or D)."
"""data/processors/flower102_to_vqa_json.py at commit 16d5831 of the authors' repository, byte for byte."""


def build(source: Path, out: Path, clip: ClipSpec, split: str = "test", **overrides) -> Path:
    options = dict(source=source, out=out, split=split, clip=clip)
    run_builder("flowers102-vqa", BuildOptions(**{**options, **overrides}))
    return out


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/flowers-102/ as torchvision.datasets.Flowers102 downloads it."""
    root = tmp_path_factory.mktemp("torchvision")
    base = root / "flowers-102"
    for image_id, label in enumerate(LABELS.tolist(), start=1):
        save_photo(base / "jpg" / f"image_{image_id:05d}.jpg", label, image_id)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": LABELS.astype(np.float64).reshape(1, -1)})
    scipy.io.savemat(base / "setid.mat", {key: np.array([ids], dtype=np.uint16) for key, ids in SPLIT_IDS.items()})
    return root


def by_image_id(record: dict) -> str:
    image_id = int(Path(record["image"]).stem.removeprefix("image_"))
    return NAMES[LABELS[image_id - 1] - 1]


def image_ids(built: list[dict]) -> list[int]:
    return [int(Path(record["image"]).stem.removeprefix("image_")) for record in built]


def test_the_authors_train_is_trnid_and_valid_and_their_test_is_tstid(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    train = check_questions(
        build(torchvision_root, tmp_path / "train", offline_clip, split="train"), "flowers102_vqa_train", by_image_id
    )
    assert image_ids(train) == SPLIT_IDS["trnid"] + SPLIT_IDS["valid"]
    test = build(torchvision_root, tmp_path / "test", offline_clip)
    assert image_ids(check_questions(test, "flowers102_vqa_test", by_image_id)) == SPLIT_IDS["tstid"]
    check_prompts(test, "flowers102_vqa_test", QUESTION)
    assert manifest(test, "flowers102_vqa_test")["class_name_source"] == "authors"
    with pytest.raises(ForgetkitError, match="the authors' Flowers102 split has no 'val'.*--param splits=setid"):
        build(torchvision_root, tmp_path / "val", offline_clip, split="val")
    with pytest.raises(ForgetkitError, match="--param splits='official' is unknown"):
        build(torchvision_root, tmp_path / "val", offline_clip, params={"splits": "official"})


def test_with_splits_setid_each_split_holds_its_setid_images_asked_with_their_flower_name(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    seen = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        out = build(torchvision_root, tmp_path / split, offline_clip, split=split, params=SETID)
        built = check_questions(out, f"flowers102_vqa_{split}", by_image_id)
        seen[split] = image_ids(built)
        assert seen[split] == SPLIT_IDS[key]  # setid.mat order
        assert manifest(out, f"flowers102_vqa_{split}")["class_names"] == 102
    assert (tmp_path / "test" / "flowers102_vqa_test.tsv").is_file()
    assert not (tmp_path / "train" / "flowers102_vqa_train.tsv").exists()


def test_same_seed_gives_identical_bytes(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    first = build(torchvision_root / "flowers-102", tmp_path / "a", offline_clip)  # the folder itself works too
    second = build(torchvision_root, tmp_path / "b", offline_clip)
    assert output_bytes(first, "flowers102_vqa_test") == output_bytes(second, "flowers102_vqa_test")


def test_missing_or_malformed_mat_files_are_named(
    torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    source = tmp_path / "copy"
    shutil.copytree(torchvision_root, source)
    base = source / "flowers-102"
    (base / "setid.mat").unlink()
    with pytest.raises(ForgetkitError, match=r"setid.mat is missing; torchvision's Flowers102 folder holds"):
        build(source, tmp_path / "out", offline_clip)
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]])})
    with pytest.raises(ForgetkitError, match=r"setid.mat has no variable 'tstid' \(it has: trnid, valid\)"):
        build(source, tmp_path / "out", offline_clip)
    scipy.io.savemat(base / "setid.mat", {"tstid": np.array([[1, 99]])})
    with pytest.raises(ForgetkitError, match=r"'tstid' holds image ids outside 1..18"):
        build(source, tmp_path / "out", offline_clip)
    (base / "imagelabels.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(ForgetkitError, match=r"cannot read .*imagelabels.mat as a MATLAB .mat file"):
        build(source, tmp_path / "out", offline_clip)


def test_unknown_split_is_refused(torchvision_root: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="no split 'validation'; choose one of: train, val, test"):
        build(torchvision_root, tmp_path / "out", offline_clip, split="validation")


def test_an_image_folder_with_numbered_classes(tmp_path: Path, offline_clip: ClipSpec) -> None:
    for label in (1, 2, 3, 10, 102):  # Udacity's flower_data/{train,valid}/<1..102>/ layout
        for n in range(2):
            save_photo(tmp_path / "flower_data" / "valid" / str(label) / f"image_{label}_{n}.jpg", label, n)
    out = build(tmp_path / "flower_data", tmp_path / "out", offline_clip, split="val")  # val finds valid/
    check_questions(out, "flowers102_vqa_val", lambda record: NAMES[int(Path(record["image"]).parent.name) - 1])
    with pytest.raises(ForgetkitError, match=r"has no folder for split 'test' \(it has valid\)"):
        build(tmp_path / "flower_data", tmp_path / "out", offline_clip, split="test")


def test_a_hugging_face_dataset_and_a_class_names_override(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = ["pink primrose", "globe thistle", "sunflower", "water lily", "rose", "lotus"]
    labels = [0, 1, 2, 3, 4, 5, 1, 3]
    source = save_hf(
        tmp_path / "hf", {"train": hf_dataset([0, 1], label_names), "test": hf_dataset(labels, label_names)}
    )
    out = build(source, tmp_path / "out", offline_clip)
    check_questions(out, "flowers102_vqa_test", lambda record: label_names[labels[int(record["id"].split("/")[-1])]])
    names = tmp_path / "names.txt"
    names.write_text("0 flower\n1 flower\n2 sunflower\n3 lily\n4 rose\n5 lotus\n")  # two classes called flower
    out = build(source, tmp_path / "renamed", offline_clip, class_names=names)
    renamed = ["flower", "flower", "sunflower", "lily", "rose", "lotus"]
    check_questions(out, "flowers102_vqa_test", lambda record: renamed[labels[int(record["id"].split("/")[-1])]])


def test_class_names_are_clip_benchmarks_cleaned_list_which_is_the_authors() -> None:
    assert len(NAMES) == 102
    assert NAMES[:3] == ["pink primrose", "hard-leaved pocket orchid", "canterbury bells"]  # flowers_classes.json
    assert NAMES[59] == "pink and yellow dahlia"  # torchvision's list has 'pink-yellow dahlia?'
    assert NAMES[76] == "passion flower"  # the authors' flowers.jsonl label of image_00001 (imagelabels.mat: 77)
    assert NAMES[-1] == "blackberry lily"
