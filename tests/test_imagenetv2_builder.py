"""`forgetkit build-data imagenetv2-vqa` on the release's class-index folders and on a Hugging Face copy."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
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
from datasets_builders.imagenet_classes import imagenet_names
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

CLASSES = (0, 1, 2, 10, 100, 999)
"""Folder '10' sorts before '2': names must follow the number, not the position."""
PER_CLASS = 2
NAMES, _ = imagenet_names("authors", None)
QUESTION = "What is the class of this image? Please answer with a single letter (A, B, C or D)."
"""data/processors/imagenetv2_to_vqa_json.py at commit 16d5831 of the authors' repository, byte for byte."""


def build(source: Path, out: Path, clip: ClipSpec, **overrides) -> Path:
    run_builder(
        "imagenetv2-vqa", BuildOptions(**{**dict(source=source, out=out, split="test", clip=clip), **overrides})
    )
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """imagenetv2-matched-frequency-format-val/<class index>/<hash>.jpeg, as the tarball unpacks."""
    root = tmp_path_factory.mktemp("v2")
    for index in CLASSES:
        for n in range(PER_CLASS):
            save_photo(
                root / "imagenetv2-matched-frequency-format-val" / str(index) / f"{index:04d}{n}abc.jpeg", index, n
            )
    return root


def by_folder(record: dict) -> str:
    return NAMES[int(Path(record["image"]).parent.name)]


def test_each_image_is_asked_with_its_imagenet_class_name(
    release: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(release, tmp_path / "out", offline_clip)  # the folder holding the variant
    built = check_questions(out, "imagenetv2_vqa_test", by_folder)
    assert len(built) == len(CLASSES) * PER_CLASS
    assert manifest(out, "imagenetv2_vqa_test")["counts"]["classes"] == len(CLASSES)
    again = build(release / "imagenetv2-matched-frequency-format-val", tmp_path / "again", offline_clip)
    assert output_bytes(again, "imagenetv2_vqa_test") == output_bytes(out, "imagenetv2_vqa_test")
    check_prompts(out, "imagenetv2_vqa_test", QUESTION)


def test_the_authors_first_synonyms_by_default_and_open_clips_names_as_an_option(
    release: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(release, tmp_path / "out", offline_clip)
    assert {record["class_label"] for record in check_questions(out, "imagenetv2_vqa_test", by_folder)} == {
        "tench",
        "goldfish",
        "great white shark",
        "brambling",
        "black swan",
        "toilet tissue",
    }
    clip = build(release, tmp_path / "clip", offline_clip, class_names=Path("openclip"))
    check_questions(
        clip, "imagenetv2_vqa_test", lambda r: open_clip.IMAGENET_CLASSNAMES[int(Path(r["image"]).parent.name)]
    )
    assert manifest(clip, "imagenetv2_vqa_test")["class_name_source"] == "openclip"


def test_val_is_another_name_for_the_one_test_set(release: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    out = build(release, tmp_path / "out", offline_clip, split="val")
    assert len(check_questions(out, "imagenetv2_vqa_val", by_folder)) == len(CLASSES) * PER_CLASS
    with pytest.raises(ForgetkitError, match="no split 'train'.*one test set"):
        build(release, tmp_path / "out", offline_clip, split="train")


def test_a_missing_variant_or_bad_folder_is_named(release: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="no imagenetv2-top-images-format-val"):
        build(release, tmp_path / "out", offline_clip, params={"variant": "top-images"})
    with pytest.raises(ForgetkitError, match="unknown ImageNetV2 variant 'newest'"):
        build(release, tmp_path / "out", offline_clip, params={"variant": "newest"})
    with pytest.raises(ForgetkitError, match="does not exist; pass the ImageNetV2 folder"):
        build(tmp_path / "nowhere", tmp_path / "out", offline_clip)


def test_a_hugging_face_copy_with_index_labels(tmp_path: Path, offline_clip: ClipSpec) -> None:
    label_names = [str(index) for index in sorted(CLASSES, key=str)]  # an imagefolder copy sorts them as text
    labels = [0, 1, 2, 3, 4, 5, 5, 3]
    source = save_hf(tmp_path / "hf", {"test": hf_dataset(labels, label_names)})
    out = build(source, tmp_path / "out", offline_clip)
    check_questions(out, "imagenetv2_vqa_test", lambda r: NAMES[int(label_names[labels[int(r["id"].rsplit("/")[-1])]])])
    assert sorted(path.name for path in (out / "images" / "imagenetv2_vqa_test").iterdir()) == sorted(
        f"{row}.jpg" for row in range(len(labels))
    )


def test_class_names_override_and_colliding_names(release: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    names = tmp_path / "names.txt"
    names.write_text("0 fish\n1 fish\n2 shark\n10 bird\n100 goose\n999 paper\n")  # '0' and '1' collide
    out = build(release, tmp_path / "out", offline_clip, class_names=names)
    custom = {"0": "fish", "1": "fish", "2": "shark", "10": "bird", "100": "goose", "999": "paper"}
    check_questions(out, "imagenetv2_vqa_test", lambda record: custom[Path(record["image"]).parent.name])
