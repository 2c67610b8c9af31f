"""Hugging Face datasets as classification sources (`hf_images`), shown through `imagenet-vqa`:
a `save_to_disk` folder and a Hub dataset in the local cache (`hf:OWNER/NAME`), both read offline."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import open_clip
import pytest
from classification_sources import (
    cache_hub_dataset,
    check_questions,
    hf_dataset,
    manifest,
    output_bytes,
    photo_bytes,
    save_hf,
)
from datasets import Dataset, Features, Image, Value

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.imagenet_classes import _synset_lemmas, imagenet_label_names, imagenet_wnids
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]
# The authors' names: each class's first WordNet synonym ("hammerhead", not open_clip's "hammerhead shark").
AUTHORS_NAMES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray"]
VAL_LABELS = [0, 1, 2, 3, 4, 5, 0, 2, 4]


def build(source: Path | str, out: Path, clip: ClipSpec, **overrides) -> Path:
    options = dict(source=Path(source), out=out, split="val", clip=clip)
    run_builder("imagenet-vqa", BuildOptions(**{**options, **overrides}))
    return out


def truth_by_row(labels: list[int], names: list[str]):
    return lambda record: names[labels[int(record["id"].rsplit("/", 1)[1])]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict with train and validation splits whose ClassLabel names are WordNet ids."""
    return save_hf(
        tmp_path_factory.mktemp("saved") / "imagenet",
        {"train": hf_dataset([0, 1, 2, 3, 4, 5], WNIDS, seed=100), "validation": hf_dataset(VAL_LABELS, WNIDS)},
    )


def test_a_saved_dataset_becomes_image_files_and_questions_with_the_authors_names(
    saved: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(saved, tmp_path / "out", offline_clip)  # --split val finds the 'validation' split
    check_questions(out, "imagenet_vqa_val", truth_by_row(VAL_LABELS, AUTHORS_NAMES))
    stored = datasets.load_from_disk(str(saved))["validation"].cast_column("image", Image(decode=False))
    for row, cell in enumerate(stored["image"]):
        assert (out / "images" / "imagenet_vqa_val" / f"{row}.jpg").read_bytes() == cell["bytes"]
    counts = manifest(out, "imagenet_vqa_val")["counts"]
    assert counts["records"] == len(VAL_LABELS)
    assert counts["classes"] == len(WNIDS)


def test_a_rerun_keeps_the_written_images_and_gives_identical_bytes(
    saved: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(saved, tmp_path / "out", offline_clip)
    images = sorted((out / "images" / "imagenet_vqa_val").iterdir())
    stamps = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in images]
    first = output_bytes(out, "imagenet_vqa_val")
    build(saved, out, offline_clip)
    assert [(path.stat().st_ino, path.stat().st_mtime_ns) for path in images] == stamps
    assert output_bytes(out, "imagenet_vqa_val") == first


def test_a_cut_short_image_is_written_again(saved: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    out = build(saved, tmp_path / "out", offline_clip)
    image = out / "images" / "imagenet_vqa_val" / "3.jpg"
    whole = image.read_bytes()
    image.write_bytes(whole[:10])
    build(saved, out, offline_clip)
    assert image.read_bytes() == whole


def test_limit_writes_only_the_chosen_images_and_matches_a_full_build_subset(
    saved: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    out = build(saved, tmp_path / "out", offline_clip, limit=4, seed=2)
    assert len(list((out / "images" / "imagenet_vqa_val").iterdir())) == 4
    assert len(check_questions(out, "imagenet_vqa_val", truth_by_row(VAL_LABELS, AUTHORS_NAMES))) == 4


def test_a_cached_hub_dataset_is_read_offline(
    tmp_path: Path, offline_clip: ClipSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hf-cache"
    cache_hub_dataset(cache, "someone/tiny-imagenet", {"validation": hf_dataset(VAL_LABELS, WNIDS)})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    out = build("hf:someone/tiny-imagenet", tmp_path / "out", offline_clip)
    check_questions(out, "imagenet_vqa_val", truth_by_row(VAL_LABELS, AUTHORS_NAMES))
    with pytest.raises(ForgetkitError, match="someone/absent is not in the Hugging Face datasets cache.*load_dataset"):
        build("hf:someone/absent", tmp_path / "out2", offline_clip)


def test_class_names_file_keys_are_classlabel_names_or_indices(
    saved: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("n01440764 fish one\n1 fish two\n2 shark\n3 shark\n4 hammer\n5 ray\n")  # two classes named shark
    out = build(saved, tmp_path / "out", offline_clip, class_names=names)
    check_questions(
        out, "imagenet_vqa_val", truth_by_row(VAL_LABELS, ["fish one", "fish two", *["shark"] * 2, "hammer", "ray"])
    )
    names.write_text("n01440764 fish one\n")
    with pytest.raises(ForgetkitError, match=r"class 1 \('n01443537'\) has no name in .*names.txt"):
        build(saved, tmp_path / "out", offline_clip, class_names=names)


def test_a_corrupt_image_is_skipped_and_counted_and_a_row_without_image_too(
    tmp_path: Path, offline_clip: ClipSpec
) -> None:
    features = hf_dataset([0], WNIDS).features
    cells = [{"bytes": photo_bytes(label, row), "path": f"{row}.jpg"} for row, label in enumerate(VAL_LABELS)]
    cells[1] = {"bytes": b"not an image", "path": "broken.jpg"}
    cells[2] = None
    rows = Dataset.from_dict({"image": cells, "label": VAL_LABELS}, features=features)
    source = save_hf(tmp_path / "source", {"validation": rows})
    out = build(source, tmp_path / "out", offline_clip)
    built = check_questions(out, "imagenet_vqa_val", truth_by_row(VAL_LABELS, AUTHORS_NAMES))
    assert len(built) == len(VAL_LABELS) - 2
    skipped = manifest(out, "imagenet_vqa_val")["skipped"]
    reasons = {item["item"]: item["reason"] for item in skipped}
    assert len(reasons) == 2
    assert "UnidentifiedImageError" in reasons[str(out / "images" / "imagenet_vqa_val" / "1.jpg")]
    assert [reason for item, reason in reasons.items() if item.endswith("row 2")] == [
        "no image bytes and no readable path"
    ]
    with pytest.raises(ForgetkitError, match="row 2 has no image"):
        build(source, tmp_path / "strict", offline_clip, strict=True)


def test_bad_sources_get_errors_that_say_what_to_do(saved: Path, tmp_path: Path, offline_clip: ClipSpec) -> None:
    with pytest.raises(ForgetkitError, match="has no split 'test'; its splits: train, validation"):
        build(saved, tmp_path / "out", offline_clip, split="test")
    no_labels = Dataset.from_dict(
        {"image": [{"bytes": photo_bytes(0, 0), "path": "a.jpg"}], "label": [0]},
        features=Features({"image": Image(), "label": Value("int64")}),
    )
    with pytest.raises(ForgetkitError, match="no column with the datasets ClassLabel feature.*label \\(Value\\)"):
        build(save_hf(tmp_path / "no-labels", {"validation": no_labels}), tmp_path / "out", offline_clip)
    unlabelled = hf_dataset([0, 1], WNIDS).cast_column("label", Value("int64")).map(lambda row: {"label": -1})
    unlabelled = unlabelled.cast(hf_dataset([0], WNIDS).features)
    with pytest.raises(ForgetkitError, match="has no labelled rows"):
        build(save_hf(tmp_path / "unlabelled", {"validation": unlabelled}), tmp_path / "out", offline_clip)


def test_imagenet_label_names_accepts_the_standard_order_and_rejects_another() -> None:
    lemmas = _synset_lemmas()
    synset_words = [lemmas[wnid] for wnid in imagenet_wnids()]  # what ILSVRC/imagenet-1k's ClassLabel holds
    assert imagenet_label_names(synset_words, "hub copy") == list(open_clip.IMAGENET_CLASSNAMES)
    assert imagenet_label_names(["0", "10", "2"], "v2 copy") == [open_clip.IMAGENET_CLASSNAMES[i] for i in (0, 10, 2)]
    shuffled = list(np.random.default_rng(0).permutation(synset_words))
    with pytest.raises(ForgetkitError, match="not in the standard ImageNet-1k order.*--class-names"):
        imagenet_label_names(shuffled, "sorted copy")
    with pytest.raises(ForgetkitError, match="neither WordNet ids, class indices"):
        imagenet_label_names(["cat", "dog"], "pets")
