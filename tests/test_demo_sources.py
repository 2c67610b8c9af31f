"""The demo's data: drawn sources in released layouts, built by the real builders into one LF dataset folder."""

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from forgetkit.clip_encoder import ClipSpec
from forgetkit.demo import CAPTIONS, build_demo_data
from forgetkit.fixtures.demo_sources import DOMAINS, WIKI_QUESTIONS
from forgetkit.fixtures.synthetic import OOD_COLORS, OOD_SHAPES, class_names
from forgetkit.records import CLASSIFICATION_QUESTION
from forgetkit.resources import bundled
from forgetkit.spec import load_study
from forgetkit.tiny_model import tiny_model_dir

ROWS = {
    "imagenet_vqa_train": 192,
    "imagenet_vqa_val": 48,
    "flowers102_vqa_test": 36,
    "imagewikiqa": 24,
    "mllmcl_rs_train": 20,
    "mllmcl_med_train": 20,
    "mllmcl_med_train_replay4": 24,
    "mllmcl_rs_test": 10,
    "mllmcl_med_test": 10,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, offline_clip: ClipSpec) -> Path:
    return build_demo_data(tmp_path_factory.mktemp("demo") / "work", clip=offline_clip)


def lf_rows(data: Path, dataset: str) -> list[dict]:
    return json.loads((data / f"{dataset}.json").read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def demo_spec() -> dict:
    return yaml.safe_load(bundled("runs/demo.yaml").read_text())


def test_every_dataset_the_demo_spec_names_is_built(data: Path) -> None:
    spec = demo_spec()
    info = json.loads((data / "dataset_info.json").read_text())
    named = [name for names in spec["eval"]["quadrants"].values() for name in names] + spec["data"]["train"]
    named.append(spec["eval"]["probe"])
    continual = load_study(bundled("runs/demo.yaml")).continual
    named += list(continual.test_sets)
    for sequence in continual.sequences.values():
        named += [continual.train_set(index, sequence.replay) for index in range(len(continual.tasks))]
    assert "mllmcl_med_train_replay4" in named
    assert set(spec["eval"]["quadrants"]) == {"ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I"}
    for name in named:
        if name.startswith("vlmeval:"):
            assert (data / "lmudata" / f"{name.removeprefix('vlmeval:')}.tsv").is_file()
        else:
            assert name in info and (data / info[name]["file_name"]).is_file()


def test_each_dataset_has_its_rows_and_every_image_resolves_against_the_data_folder(data: Path) -> None:
    info = json.loads((data / "dataset_info.json").read_text())
    assert set(info) == set(ROWS) | {CAPTIONS}
    assert all((data / row["images"][0]).is_file() for row in lf_rows(data, CAPTIONS))
    for dataset, count in ROWS.items():
        rows = lf_rows(data, dataset)
        assert len(rows) == count == json.loads((data / f"{dataset}.manifest.json").read_text())["counts"]["records"]
        assert all((data / row["images"][0]).is_file() for row in rows)


def test_ood_image_set_asks_the_training_question_about_classes_training_never_shows(data: Path) -> None:
    records = jsonl(data / "flowers102_vqa_test.records.jsonl")
    unseen = set(class_names(OOD_SHAPES, OOD_COLORS))
    assert {record["class_label"] for record in records} == unseen
    assert all(set(record["options"]) <= unseen for record in records)
    assert unseen.isdisjoint(class_names())
    assert {record["question"] for record in records} == {CLASSIFICATION_QUESTION}


def test_imagewikiqa_asks_knowledge_questions_about_the_training_shapes(data: Path) -> None:
    records = jsonl(data / "imagewikiqa.records.jsonl")
    answers = {question.text: question.answers for question in WIKI_QUESTIONS}
    for record in records:
        colour, shape = record["class_label"].split()
        truth = answers[record["question"]].get(shape) or answers[record["question"]][colour]
        assert record["options"][ord(record["answer"]) - ord("A")] == truth
        assert record["instruction"] == "Choose A, B, C, or D."
    per_image = {record["image"]: record["class_label"] for record in records}
    assert sorted(per_image.values()) == sorted(class_names()) and len(records) == 2 * len(per_image)


def test_mllm_cl_domains_have_their_own_answers_and_replay_adds_rs_rows_to_med(data: Path) -> None:
    def answers(dataset: str) -> list[str]:
        return [row["messages"][1]["content"] for row in lf_rows(data, dataset)]

    for name, domain in DOMAINS.items():
        for split in ("train", "test"):
            found = answers(f"mllmcl_{name.lower()}_{split}")
            assert sorted(set(found)) == sorted(domain.answers)
            assert found.count(domain.answers[0]) == found.count(domain.answers[1])
    meta = jsonl(data / "mllmcl_rs_test.meta.jsonl")
    assert [row["answer"] for row in meta] == answers("mllmcl_rs_test")
    replayed = lf_rows(data, "mllmcl_med_train_replay4")
    assert replayed[:20] == lf_rows(data, "mllmcl_med_train")
    rs_rows = lf_rows(data, "mllmcl_rs_train")
    assert len(replayed[20:]) == 4 and all(row in rs_rows for row in replayed[20:])


def test_every_answer_fits_in_the_demo_generation_budget(data: Path) -> None:
    """The tiny model's tokenizer must be able to emit each answer and its end token within max_new_tokens."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir())
    budget = demo_spec()["eval"]["max_new_tokens"]
    for dataset in ROWS:
        for answer in {row["messages"][1]["content"] for row in lf_rows(data, dataset)}:
            assert len(tokenizer(answer)["input_ids"]) + 1 <= budget, (dataset, answer)


def test_a_rebuild_elsewhere_gives_identical_files_and_a_rerun_builds_nothing(
    data: Path, tmp_path: Path, offline_clip: ClipSpec
) -> None:
    again = build_demo_data(tmp_path / "work", clip=offline_clip)
    written = sorted(path.name for path in data.iterdir() if path.is_file())
    assert written == sorted(path.name for path in again.iterdir() if path.is_file())
    for name in written:
        if name.endswith(".manifest.json"):
            first, second = (json.loads((folder / name).read_text()) for folder in (data, again))
            sources = first.pop("source"), second.pop("source")
            assert (sources == (None, None) or sources[0] != sources[1]) and first == second  # drawn sets: no source
        else:
            assert (again / name).read_bytes() == (data / name).read_bytes(), name
    stamps = {path: path.stat().st_mtime_ns for path in again.rglob("*")}
    build_demo_data(tmp_path / "work", clip=offline_clip)
    assert {path: path.stat().st_mtime_ns for path in again.rglob("*")} == stamps
