"""`forgetkit build-data imagenet-vqa` on a drawn image folder, with random-weight CLIP (offline)."""

import json
import shutil
from pathlib import Path

import open_clip
import pytest
from classification_sources import check_prompts, check_questions, manifest, save_photo

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.imagenet_classes import _synset_lemmas, imagenet_names, imagenet_wnid_names, imagenet_wnids
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

OFFLINE_CLIP = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=16, cache_dir=None)
QUESTION = "What is the class of this image? Please answer with a single letter (A, B, C or D)."
"""data/processors/imagenet_to_vqa_json.py at commit 16d5831 of the authors' repository, byte for byte."""


def build(source: Path, out: Path, **overrides) -> list[dict]:
    options = dict(source=source, out=out, split="val", class_names=source / "class_names.txt", clip=OFFLINE_CLIP)
    run_builder("imagenet-vqa", BuildOptions(**{**options, **overrides}))
    return json.loads((out / "imagenet_vqa_val.json").read_text())


@pytest.fixture(scope="module")
def built(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build(shapes, out)
    return out


def test_every_image_becomes_a_four_option_question_with_distinct_texts(built: Path, shapes: Path) -> None:
    rows = json.loads((built / "imagenet_vqa_val.json").read_text())
    names = dict(line.split(" ", 1) for line in (shapes / "class_names.txt").read_text().splitlines())
    assert len(rows) == 12 * 2
    for row in rows:
        question, *options = row["messages"][0]["content"].removeprefix("<image>\n").splitlines()
        assert question == QUESTION
        assert [o[:3] for o in options] == ["A. ", "B. ", "C. ", "D. "]
        texts = [o[3:] for o in options]
        assert len(set(texts)) == 4
        answer = row["messages"][1]["content"]
        image = built / row["images"][0]
        assert image.is_file()
        assert texts["ABCD".index(answer)] == names[image.parent.name]


def test_dataset_info_and_tsv_are_written_beside_the_json(built: Path) -> None:
    info = json.loads((built / "dataset_info.json").read_text())
    assert info["imagenet_vqa_val"]["file_name"] == "imagenet_vqa_val.json"
    header = (built / "imagenet_vqa_val.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["index", "image", "question", "A", "B", "C", "D", "answer", "category"]


def test_same_seed_gives_identical_bytes(built: Path, shapes: Path) -> None:
    again = built.with_name(built.name + "-again")  # same depth, so relative image paths match
    build(shapes, again)
    names = ["imagenet_vqa_val.json", "imagenet_vqa_val.tsv", "imagenet_vqa_val.records.jsonl"]
    for name in [*names, "imagenet_vqa_val.manifest.json"]:
        assert (again / name).read_bytes() == (built / name).read_bytes()


def test_manifest_says_how_the_set_was_made_and_hashes_every_file(built: Path, shapes: Path) -> None:
    import hashlib

    manifest = json.loads((built / "imagenet_vqa_val.manifest.json").read_text())
    assert manifest["source"] == str(shapes.resolve()) and manifest["split"] == "val" and manifest["seed"] == 0
    assert manifest["clip"] == {
        "model": "tiny-random-clip",
        "pretrained": "none",
        "weights_id": "random-seed0",
        "quick_gelu": False,
        "templates": "photo",
        "prompts": ["a photo of {}"],
    }
    assert manifest["question"] == QUESTION
    digest = hashlib.sha256((shapes / "class_names.txt").read_bytes()).hexdigest()
    assert manifest["class_name_source"] == f"file class_names.txt (sha256 {digest})"
    assert manifest["counts"]["records"] == 24 and manifest["counts"]["skipped"] == 0
    assert sum(manifest["counts"]["answers"].values()) == 24
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((built / name).read_bytes()).hexdigest() == digest


def test_limit_takes_a_seeded_subset(shapes: Path, tmp_path: Path) -> None:
    rows = build(shapes, tmp_path / "a", limit=5, seed=3)
    assert len(rows) == 5
    assert rows == build(shapes, tmp_path / "b", limit=5, seed=3)


def test_corrupt_image_is_skipped_counted_and_listed_in_the_manifest(shapes: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(shapes, source)
    broken = source / "val" / "s0000003" / "val_0001.png"
    broken.write_bytes(b"definitely not a png")
    rows = build(source, tmp_path / "out")
    assert len(rows) == 12 * 2 - 1
    manifest = json.loads((tmp_path / "out" / "imagenet_vqa_val.manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 1
    assert manifest["skipped"][0]["item"] == str(broken)


def test_strict_stops_at_a_corrupt_image_by_name_and_writes_nothing(shapes: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(shapes, source)
    broken = source / "val" / "s0000003" / "val_0001.png"
    broken.write_bytes(b"definitely not a png")
    out = tmp_path / "out"
    with pytest.raises(ForgetkitError, match=f"cannot read image {broken}"):
        build(source, out, strict=True)
    assert not (out / "imagenet_vqa_val.json").exists()


def test_a_class_folder_without_images_is_refused_by_name_not_offered_as_a_distractor(
    shapes: Path, tmp_path: Path
) -> None:
    """As torchvision's ImageFolder, which the authors' ImageNet builder reads with: a folder of no image is
    no class."""
    source = tmp_path / "source"
    shutil.copytree(shapes, source)
    (source / "val" / "n09999999").mkdir()
    (source / "val" / "n09999999" / "Thumbs.db").write_bytes(b"not an image")
    out = tmp_path / "out"
    with pytest.raises(ForgetkitError, match=r"1 class folder\(s\) under .*val hold no images, e.g. 'n09999999'"):
        build(source, out)
    assert not out.exists()


def test_folders_without_names_get_a_clear_error(shapes: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match="no name in the ImageNet-1k synset list.*--class-names"):
        build(shapes, tmp_path, class_names=None)
    with pytest.raises(ForgetkitError, match="does not exist"):
        build(tmp_path / "missing", tmp_path)


def test_duplicate_class_names_never_give_two_equal_options(shapes: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    lines = (shapes / "class_names.txt").read_text().splitlines()
    lines[1] = lines[1].split(" ", 1)[0] + " red circle"  # same name as folder 0, like ImageNet's two "missile"s
    names.write_text("\n".join(lines))
    for row in build(shapes, tmp_path / "out", class_names=names):
        options = row["messages"][0]["content"].splitlines()[2:]
        assert len({o[3:] for o in options}) == 4


def test_imagenet_wnids_map_to_clip_class_names() -> None:
    names = imagenet_wnid_names()
    assert len(names) == 1000
    assert names["n01440764"] == "tench"
    assert names["n02123045"] == "tabby cat"


def test_unknown_dataset_lists_the_registered_ones() -> None:
    with pytest.raises(ForgetkitError, match="unknown dataset 'imagenet'.*imagenet-vqa"):
        run_builder("imagenet", BuildOptions(source=None, out=Path(".")))


def test_each_prompt_is_the_authors_byte_for_byte_and_the_paper_text_is_an_option(
    built: Path, shapes: Path, tmp_path: Path
) -> None:
    check_prompts(built, "imagenet_vqa_val", QUESTION)
    build(shapes, tmp_path, params={"question": "paper"})
    paper = "What is the class of this image? Please answer with a single letter (A, B, C, or D)."
    check_prompts(tmp_path, "imagenet_vqa_val", paper)
    with pytest.raises(ForgetkitError, match="question='verbatim' is unknown; pass question=released or"):
        build(shapes, tmp_path, params={"question": "verbatim"})


def test_the_authors_names_are_the_first_synonym_of_each_class_and_openclip_is_an_option() -> None:
    names, source = imagenet_names("authors", None)
    assert source == "authors (first synonyms of timm's ImageNet synset words)"
    assert (names[0], names[4], names[7], names[134], names[517]) == ("tench", "hammerhead", "cock", "crane", "crane")
    assert names[264] == "Cardigan" and names[474] == "cardigan"
    assert imagenet_names("openclip", None) == (list(open_clip.IMAGENET_CLASSNAMES), "openclip")
    assert open_clip.IMAGENET_CLASSNAMES[4] == "hammerhead shark"


WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]


@pytest.fixture(scope="module")
def with_metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SOURCE/val/<wnid>/*.JPEG and the authors' SOURCE/metadata.txt, a dict literal of class index -> synonyms."""
    root = tmp_path_factory.mktemp("imagenet")
    for label, wnid in enumerate(WNIDS):
        for n in range(2):
            save_photo(root / "val" / wnid / f"{wnid}_{n}.JPEG", label, n)
    lemmas = _synset_lemmas()
    table = {index: lemmas[wnid] for index, wnid in enumerate(imagenet_wnids())}
    table[0] = "Tinca tinca, tench"
    (root / "metadata.txt").write_text(repr(table))
    return root


def test_the_sources_metadata_txt_names_the_classes_by_its_first_synonyms(with_metadata: Path, tmp_path: Path) -> None:
    build(with_metadata, tmp_path / "authors", class_names=None)
    authors = ["Tinca tinca", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    built = check_questions(
        tmp_path / "authors", "imagenet_vqa_val", lambda r: authors[WNIDS.index(r["id"].split("/")[1])]
    )
    assert {record["class_label"] for record in built} == set(authors)
    source = manifest(tmp_path / "authors", "imagenet_vqa_val")["class_name_source"]
    assert source == "authors (first synonyms in SOURCE/metadata.txt)"
    build(with_metadata, tmp_path / "openclip", class_names=Path("openclip"))
    clip = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]
    check_questions(tmp_path / "openclip", "imagenet_vqa_val", lambda r: clip[WNIDS.index(r["id"].split("/")[1])])
    assert manifest(tmp_path / "openclip", "imagenet_vqa_val")["class_name_source"] == "openclip"
    with pytest.raises(ForgetkitError, match="--class-names clip is neither a file nor one of this builder's lists"):
        build(with_metadata, tmp_path / "bad", class_names=Path("clip"))


def test_a_metadata_txt_that_is_not_the_authors_dict_is_refused(with_metadata: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(with_metadata, source)
    (source / "metadata.txt").write_text("{0: 'tench, Tinca tinca'}")
    with pytest.raises(ForgetkitError, match=r"metadata.txt must map each class index 0-999 to its synonyms"):
        build(source, tmp_path / "out", class_names=None)
