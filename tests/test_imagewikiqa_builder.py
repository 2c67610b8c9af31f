"""`forgetkit build-data imagewikiqa` and `imagewikiqa-classlabel` on small files in ImageWikiQA's released
formats: the VLMClassifier/MLLM-Forgetting `imagewikiqa.jsonl` (+ `images/`), its first release with wnid
folders, and the MLLM-Forgetting authors' LF `test.json` and image-bytes parquet conversions."""

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.imagenet_classes import imagenet_wnid_names
from datasets_builders.imagewikiqa_release import split_text
from forgetkit.errors import ForgetkitError

INSTRUCTION = "Choose A, B, C, or D."
# wnid | class name | question | options | answer. The fig's answer is its class name; the schnauzer already
# has its class name (in another case) among the distractors.
TABLE = """
n04336792 | stretcher | What is this mainly used for? | Carrying a patient; Storing tools; Measuring rain; Painting | A
n02097130 | Giant Schnauzer | Which breed is it mistaken for? | Standard Schnauzer; giant schnauzer; Boxer; Beagle | A
n04462240 | toy store | Which of these is a famous example of this place? | The Louvre; Hamleys; Big Ben; Wembley | B
n01843065 | jacamar | Where is this bird mostly found? | Polar zones; Deserts; Tropical forest edges; Open ocean | C
n07753113 | fig | Which fruit is shown? | apple; Fig; pear; plum | B
n03063599 | coffee mug | Which shape is this object equivalent to in topology? | Sphere; Cone; Cube; Doughnut | D
n02127052 | lynx | Which region is NOT a habitat of this animal? | Northern Europe; Central Africa; Siberia; Canada | B
n02007558 | flamingo | What gives this bird its colour? | Its diet; Sunlight; Cold water; Its age | A
n07693725 | bagel | How is this food cooked before baking? | Fried; Boiled; Grilled; Steamed | B
n03902125 | payphone | What does this object need to place a call? | Coins or a card; Sunlight; A key; Water | A
n04336792 | stretcher | Which position is used on this for shock? | Fowler's; Upright; Trendelenburg; Prone | C
"""
QUESTIONS = [
    (wnid, name, question, tuple(options.split("; ")), answer)
    for wnid, name, question, options, answer in (line.split(" | ") for line in TABLE.strip().splitlines())
]
SHARED_IMAGE = {10: 0}  # the second stretcher question reuses the first one's image, as 39 real questions do


def text_of(question: str, options: tuple[str, ...]) -> str:
    return "\n".join([question, *(f"{letter}. {option}" for letter, option in zip("ABCD", options)), INSTRUCTION])


def image_name(index: int) -> str:
    return f"ILSVRC2012_val_{SHARED_IMAGE.get(index, index) + 1:08d}.JPEG"


def jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (20 * index % 256, 90, 160)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_release(root: Path, questions: list = QUESTIONS) -> Path:
    """VLMClassifier's current `data/imagewikiqa.jsonl` layout: `images/<val file>` paths and a `classname` field."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    with open(root / "imagewikiqa.jsonl", "w") as handle:
        for index, (_, name, question, options, answer) in enumerate(questions):
            (root / "images" / image_name(index)).write_bytes(jpeg(index))
            row = {
                "image": f"images/{image_name(index)}",
                "text": text_of(question, options),
                "label": answer,
                "wiki": "A sentence from the Wikipedia article.",
                "classname": name,
            }
            handle.write(json.dumps(row) + "\n")
    return root


def build(name: str, source: Path, out: Path, **overrides) -> Path:
    run_builder(name, BuildOptions(**{"source": source, "out": out, "split": "val", **overrides}))
    return out


def records(out: Path, dataset: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{dataset}.records.jsonl").read_text().splitlines()]


def manifest(out: Path, dataset: str) -> dict:
    return json.loads((out / f"{dataset}.manifest.json").read_text())


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release(tmp_path_factory.mktemp("imagewikiqa"))


@pytest.fixture(scope="module")
def built(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build("imagewikiqa", release, out)
    build("imagewikiqa-classlabel", release, out)
    return out


def test_records_are_the_released_questions_options_and_answers_as_is(built: Path) -> None:
    rows = records(built, "imagewikiqa")
    assert len(rows) == len(QUESTIONS)
    for row, (_, name, question, options, answer) in zip(rows, QUESTIONS):
        assert (row["question"], tuple(row["options"]), row["answer"]) == (question, options, answer)
        assert row["class_label"] == name and row["class_option"] is None
    lf = json.loads((built / "imagewikiqa.json").read_text())
    for row, (_, _, question, options, answer) in zip(lf, QUESTIONS):
        assert row["messages"][0]["content"] == f"<image>\n{text_of(question, options)}"  # the authors' prompt
        assert row["messages"][1]["content"] == answer
        assert (built / row["images"][0]).is_file()
    assert lf[10]["images"] == lf[0]["images"]


def test_tsv_holds_the_bare_question_and_dataset_info_names_both_sets(built: Path) -> None:
    with open(built / "imagewikiqa.tsv", newline="") as handle:
        table = list(csv.DictReader(handle, delimiter="\t"))
    assert list(table[0])[:8] == ["index", "image", "question", "A", "B", "C", "D", "answer"]
    assert [row["question"] for row in table] == [question for _, _, question, _, _ in QUESTIONS]
    assert table[3]["C"] == "Tropical forest edges" and table[3]["category"] == "jacamar"
    info = json.loads((built / "dataset_info.json").read_text())
    assert info["imagewikiqa"]["file_name"] == "imagewikiqa.json"
    assert info["imagewikiqa_classlabel"]["file_name"] == "imagewikiqa_classlabel.json"
    assert manifest(built, "imagewikiqa")["counts"]["records"] == len(QUESTIONS)


def test_classlabel_plants_the_class_name_once_and_never_touches_the_truth(built: Path) -> None:
    plain = {row["image"] + row["question"]: row for row in records(built, "imagewikiqa")}
    planted = records(built, "imagewikiqa_classlabel")
    assert len(planted) == len(QUESTIONS) - 1  # the fig, whose answer is its class name, is left out
    for row in planted:
        original = plain[row["image"] + row["question"]]
        slot = "ABCD".index(row["class_option"])
        same_as_class = [k for k, option in enumerate(row["options"]) if option.lower() == row["class_label"].lower()]
        assert same_as_class == [slot]
        assert row["class_option"] != row["answer"] == original["answer"]
        assert row["answer_text"] == original["answer_text"]
        changed = [k for k in range(4) if row["options"][k] != original["options"][k]]
        assert changed in ([slot], [])
        assert row["question"] == original["question"] and row["instruction"] == INSTRUCTION
    schnauzer = next(row for row in planted if row["class_label"] == "Giant Schnauzer")
    assert schnauzer["options"][1] == "giant schnauzer" and schnauzer["class_option"] == "B"
    details = manifest(built, "imagewikiqa_classlabel")
    assert details["class_option"] == {"planted": 9, "already_an_option": 1, "class_is_answer_left_out": 1}
    assert len(details["class_is_answer_items"]) == 1
    assert details["class_is_answer_items"][0].endswith("imagewikiqa.jsonl:5")


def test_same_seed_gives_identical_bytes_and_another_seed_other_slots(release: Path, built: Path) -> None:
    again = built.with_name(built.name + "-again")  # same depth, so relative image paths match
    build("imagewikiqa", release, again)
    build("imagewikiqa-classlabel", release, again)
    for name in ("imagewikiqa.json", "imagewikiqa.tsv", "imagewikiqa_classlabel.json", "imagewikiqa_classlabel.tsv"):
        assert (again / name).read_bytes() == (built / name).read_bytes()
    other = build("imagewikiqa-classlabel", release, built.with_name(built.name + "-seed1"), seed=1)
    slots = [row["class_option"] for row in records(built, "imagewikiqa_classlabel")]
    assert [row["class_option"] for row in records(other, "imagewikiqa_classlabel")] != slots


def test_the_authors_mischoice_matcher_finds_the_four_options_in_lfs_saved_prompt(built: Path) -> None:
    """mix_cls_result_matcher.py reads `prompt.strip().upper().split("\\n")[-6:-2]` of LF's predictions."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    from forgetkit.tiny_model import tiny_model_dir

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="qwen2_vl"))
    row = json.loads((built / "imagewikiqa_classlabel.json").read_text())[0]
    prompt_ids, _ = template.encode_oneturn(tokenizer, row["messages"])
    prompt = tokenizer.decode(prompt_ids, skip_special_tokens=False)  # as LF's save_predictions writes it
    options = records(built, "imagewikiqa_classlabel")[0]["options"]
    assert prompt.strip().upper().split("\n")[-6:-2] == [f"{x}. {o}".upper() for x, o in zip("ABCD", options)]


def test_limit_keeps_the_same_seeded_questions_in_both_variants(release: Path, tmp_path: Path) -> None:
    build("imagewikiqa", release, tmp_path, limit=6, seed=3)
    build("imagewikiqa-classlabel", release, tmp_path, limit=6, seed=3)
    plain = [row["id"].split("/")[1] for row in records(tmp_path, "imagewikiqa")]
    planted = [row["id"].split("/")[1] for row in records(tmp_path, "imagewikiqa_classlabel")]
    assert len(plain) == 6 and set(planted) <= set(plain) and len(planted) >= 5


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """The release plus one of each kind of bad row, appended as lines 12-18."""
    source = write_release(tmp_path / "broken")
    good = json.loads((source / "imagewikiqa.jsonl").read_text().splitlines()[0])
    (source / "images" / "corrupt.JPEG").write_bytes(jpeg(0)[:200])
    bad = [
        '{"image": "images/x.JPEG", "text": ',
        json.dumps({k: v for k, v in good.items() if k != "label"}),
        json.dumps({**good, "label": "E"}),
        json.dumps({**good, "text": text_of("Which?", ("Red", "Blue", "red", "Green"))}),
        json.dumps({**good, "text": "Which one? Choose A, B, C, or D."}),
        json.dumps({**good, "image": "images/missing.JPEG"}),
        json.dumps({**good, "image": "images/corrupt.JPEG"}),
    ]
    with open(source / "imagewikiqa.jsonl", "a") as handle:
        handle.write("\n".join(bad) + "\n")
    return source


def test_malformed_rows_and_bad_images_are_skipped_counted_and_named(broken: Path, tmp_path: Path) -> None:
    out = build("imagewikiqa", broken, tmp_path / "out")
    assert len(records(out, "imagewikiqa")) == len(QUESTIONS)
    found = manifest(out, "imagewikiqa")
    assert found["counts"]["skipped"] == 7
    reasons = {item.rsplit(":", 1)[1]: reason for item, reason in ((s["item"], s["reason"]) for s in found["skipped"])}
    assert reasons["12"].startswith("not valid JSON")
    assert reasons["13"] == "no 'label' or 'response' field"
    assert reasons["14"] == "answer 'E' is not one of the option letters ABCD"
    assert reasons["15"] == "two options read 'red'"
    assert reasons["16"] == "the text has no 'A. ...' option lines"
    assert reasons["17"].startswith("image images/missing.JPEG not found under")
    assert reasons["18"].startswith("cannot read image")


def test_strict_stops_at_the_first_bad_row_by_file_and_line(broken: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match=r"imagewikiqa\.jsonl:12: not valid JSON.*drop --strict"):
        build("imagewikiqa", broken, tmp_path / "out", strict=True)
    assert not (tmp_path / "out" / "imagewikiqa.json").exists()


def test_first_release_takes_the_class_from_the_wnid_folder(tmp_path: Path) -> None:
    """VLMClassifier's first imagewikiqa.jsonl: ImageNet-val paths, question ids, no class name."""
    val = tmp_path / "imagenet" / "val"
    lines = []
    for index, (wnid, name, question, options, answer) in enumerate(QUESTIONS[:4]):
        (val / wnid).mkdir(parents=True, exist_ok=True)
        (val / wnid / image_name(index)).write_bytes(jpeg(index))
        row = {
            "image": f"./data/ImageNet/imagenet/val/{wnid}/{image_name(index)}",
            "text": text_of(question, options),
            "category": "conv",
            "label": answer,
            "question_id": f"{name}_{answer}_question{index}_image0",
        }
        lines.append(json.dumps(row))
    (tmp_path / "imagewikiqa.jsonl").write_text("\n".join(lines) + "\n")
    out = build(
        "imagewikiqa-classlabel", tmp_path / "imagewikiqa.jsonl", tmp_path / "out", params={"image_root": str(val)}
    )
    rows = records(out, "imagewikiqa_classlabel")
    names = imagenet_wnid_names()
    assert [row["class_label"] for row in rows] == [names[wnid] for wnid, *_ in QUESTIONS[:4]]
    assert [row["class_label"] for row in rows] == [name for _, name, *_ in QUESTIONS[:4]]
    assert rows[0]["id"] == "imagewikiqa_classlabel/stretcher_A_question0_image0"


def test_authors_lf_json_conversion_is_read_as_the_same_questions(release: Path, built: Path, tmp_path: Path) -> None:
    """MLLM-Forgetting's `imagewikiqa-vqa-json/`: `test/test.json` rows `{image, prompt, response}` + `images/`."""
    folder = tmp_path / "imagewikiqa-vqa-json"
    (folder / "test").mkdir(parents=True)
    shutil.copytree(release / "images", folder / "images")
    rows = [
        {
            "image": f"vlm-forgetting-datasets/imagewikiqa-vqa-json/images/{image_name(index)}",
            "prompt": f"<image>\n{text_of(question, options)}",
            "response": answer,
        }
        for index, (_, _, question, options, answer) in enumerate(QUESTIONS)
    ]
    (folder / "test" / "test.json").write_text(json.dumps(rows, indent=2))
    out = build("imagewikiqa", folder, tmp_path / "out")
    keys = ("question", "options", "answer", "instruction")
    assert [[row[k] for k in keys] for row in records(out, "imagewikiqa")] == [
        [row[k] for k in keys] for row in records(built, "imagewikiqa")
    ]
    assert manifest(out, "imagewikiqa")["source_format"] == "json"


def test_parquet_image_bytes_are_written_once_by_content(tmp_path: Path) -> None:
    """The authors' earlier `imagewikiqa-0000N-of-0000M.parquet` files: image bytes, prompt, response."""
    folder = tmp_path / "imagewikiqa-vqa"
    folder.mkdir()
    for part, chunk in enumerate((QUESTIONS[:6], QUESTIONS[6:]), start=1):
        frame = pd.DataFrame(
            {
                "image": [jpeg(QUESTIONS.index(q)) for q in chunk],
                "prompt": [f"<image>\n{text_of(q[2], q[3])}" for q in chunk],
                "response": [q[4] for q in chunk],
            }
        )
        frame.to_parquet(folder / f"imagewikiqa-{part:05d}-of-00002.parquet", index=False)
    out = build("imagewikiqa", folder, tmp_path / "out")
    rows = records(out, "imagewikiqa")
    assert [row["answer"] for row in rows] == [q[4] for q in QUESTIONS]
    written = sorted((out / "images" / "imagewikiqa").iterdir())
    assert len(written) == len(QUESTIONS) and all(path.suffix == ".jpg" for path in written)
    assert (out / rows[2]["image"]).read_bytes() == jpeg(2)
    stamps = [os.stat(path).st_mtime_ns for path in written]
    build("imagewikiqa", folder, tmp_path / "out")
    assert [os.stat(path).st_mtime_ns for path in written] == stamps
    with pytest.raises(ForgetkitError, match="no questions to write"):
        build("imagewikiqa-classlabel", folder, tmp_path / "out")  # these files name no class


def test_text_splits_into_question_options_and_trailing_instruction() -> None:
    text = "Line one\nline two\nA. x\nB. y\nChoose A or B."
    assert split_text(text) == ("Line one\nline two", ("x", "y"), "Choose A or B.")
    assert split_text("Q?\nA. x\nB. y") == ("Q?", ("x", "y"), "")


def test_a_folder_without_imagewikiqa_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match="holds none of imagewikiqa.jsonl"):
        build("imagewikiqa", tmp_path, tmp_path / "out")
