"""`forgetkit build-data mllm-cl` on a miniature MLLM-CL tree (RS, Med, Fin) in the released layout."""

import json
from pathlib import Path

import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.mllm_cl import FIN_LETTER, FIN_YES_NO
from forgetkit.errors import ForgetkitError

TRAIN_ROWS = {"RS": 30, "Med": 24, "Fin": 6}
ORDER = "RS,Med,Fin"


def train_row(domain: str, i: int) -> dict:
    return {
        "id": f"{domain.lower()}_{i}",
        "image": f"images/{domain.lower()}_{i % 3}.png",
        "conversations": [
            {"from": "human", "value": f"<image>\n{domain} question {i}?"},
            {"from": "gpt", "value": f"{domain} answer {i}"},
        ],
    }


TEST_ROWS = {
    "RS": [
        {"question_id": 0, "image": "images/rs_0.png", "text": "Is there a road?", "answer": "yes"},
        {"question_id": 1, "image": "images/rs_1.png", "text": "How many buildings are there?", "answer": "12"},
        {"question_id": 2, "image": "images/rs_2.png", "text": "Is it rural or urban?", "answer": "rural"},
    ],
    "Med": [{"question_id": "med_0", "image": "images/med_0.png", "text": "What organ is shown?", "answer": "lung"}],
    "Fin": [
        {"question_id": 10, "image": "images/fin_0.png", "text": "Did the stock rise?", "answer": "Yes"},
        {
            "question_id": 11,
            "image": "images/fin_1.png",
            "text": "Which trend fits best?\nA. up\nB. down\nC. flat\nD. none",
            "answer": "B",
        },
    ],
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("Domain_data")
    for domain, count in TRAIN_ROWS.items():
        folder = root / domain
        (folder / "images").mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (20, 20), (60 * k, 100, 20)).save(folder / "images" / f"{domain.lower()}_{k}.png")
        rows = [train_row(domain, i) for i in range(count)]
        if domain == "Fin":
            rows.append({"id": "fin_bad", "image": "images/fin_0.png", "conversations": [rows[0]["conversations"][0]]})
            rows.append({**train_row("Fin", 99), "image": "images/lost.png"})
        (folder / "train.json").write_text(json.dumps(rows))
        tests = TEST_ROWS[domain] + ([{"question_id": 12, "image": "images/fin_2.png"}] if domain == "Fin" else [])
        (folder / "test.json").write_text(json.dumps(tests))
    return root


def build(source: Path, out: Path, domain: str, split: str = "train", **params) -> tuple[list[dict], dict]:
    options = BuildOptions(source=source, out=out, split=split, params={"domain": domain, **params})
    result = run_builder("mllm-cl", options)
    rows = json.loads((out / f"{result.dataset}.json").read_text())
    return rows, json.loads((out / f"{result.dataset}.manifest.json").read_text())


def test_train_conversations_become_lf_rows_with_images_resolved_against_out(source: Path, tmp_path: Path) -> None:
    rows, manifest = build(source, tmp_path, "rs")
    assert manifest["dataset"] == "mllmcl_rs_train"
    assert len(rows) == TRAIN_ROWS["RS"]
    assert rows[4]["messages"] == [
        {"role": "user", "content": "<image>\nRS question 4?"},
        {"role": "assistant", "content": "RS answer 4"},
    ]
    image = (tmp_path / rows[4]["images"][0]).resolve()
    assert image == (source / "RS" / "images" / "rs_1.png").resolve()


def test_test_split_keeps_the_answer_as_label_and_a_meta_line_per_row(source: Path, tmp_path: Path) -> None:
    rows, manifest = build(source, tmp_path, "RS", split="test")
    meta = [json.loads(line) for line in (tmp_path / "mllmcl_rs_test.meta.jsonl").read_text().splitlines()]
    assert manifest["meta"] == "mllmcl_rs_test.meta.jsonl"
    assert [m["question_id"] for m in meta] == [0, 1, 2]
    for row, question, line in zip(rows, TEST_ROWS["RS"], meta):
        assert row["messages"][0]["content"] == "<image>\n" + question["text"]
        assert row["messages"][1]["content"] == question["answer"] == line["answer"]
        assert (tmp_path / row["images"][0]).is_file()
        assert line["text"] == question["text"] and line["domain"] == "RS"
    assert json.loads((tmp_path / "dataset_info.json").read_text())["mllmcl_rs_test"]["file_name"] == (
        "mllmcl_rs_test.json"
    )


def test_fin_questions_get_model_fin_answer_format_suffixes(source: Path, tmp_path: Path) -> None:
    rows, manifest = build(source, tmp_path, "Fin", split="test")
    prompts = [row["messages"][0]["content"] for row in rows]
    assert prompts[0] == "<image>\nDid the stock rise?" + FIN_YES_NO
    assert prompts[1].endswith("D. none" + FIN_LETTER)
    assert manifest["counts"] == {"records": 2, "skipped": 1}
    assert "missing or empty 'text'" in manifest["skipped"][0]["reason"]


def test_malformed_train_rows_and_missing_images_are_skipped_or_stop_a_strict_build(
    source: Path, tmp_path: Path
) -> None:
    rows, manifest = build(source, tmp_path, "Fin")
    assert len(rows) == TRAIN_ROWS["Fin"]
    reasons = " | ".join(item["reason"] for item in manifest["skipped"])
    assert "1 turns" in reasons and "lost.png does not exist" in reasons
    with pytest.raises(ForgetkitError, match=r"Fin/train.json\[6\] id=fin_bad"):
        run_builder(
            "mllm-cl",
            BuildOptions(source=source, out=tmp_path / "s", split="train", strict=True, params={"domain": "Fin"}),
        )


@pytest.fixture(scope="module")
def replays(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[dict], dict]]:
    out = tmp_path_factory.mktemp("replay")
    return {domain: build(source, out, domain, replay="20", order=ORDER) for domain in ("RS", "Med", "Fin")}


def test_replay_adds_twenty_rows_of_every_earlier_domain(replays) -> None:
    rs_rows, rs_manifest = replays["RS"]
    med_rows, med_manifest = replays["Med"]
    fin_rows, fin_manifest = replays["Fin"]
    assert rs_manifest["dataset"] == "mllmcl_rs_train_replay20" and rs_manifest["replayed"] == {}
    assert len(rs_rows) == TRAIN_ROWS["RS"]
    assert {k: len(v) for k, v in med_manifest["replayed"].items()} == {"RS": 20}
    assert {k: len(v) for k, v in fin_manifest["replayed"].items()} == {"RS": 20, "Med": 20}
    assert len(med_rows) == TRAIN_ROWS["Med"] + 20
    assert len(fin_rows) == TRAIN_ROWS["Fin"] + 40


def test_a_domains_replay_rows_are_the_same_whichever_later_domain_asks(replays) -> None:
    _, med_manifest = replays["Med"]
    fin_rows, fin_manifest = replays["Fin"]
    assert med_manifest["replayed"]["RS"] == fin_manifest["replayed"]["RS"]
    replayed_ids = [entry["id"] for past in ("RS", "Med") for entry in fin_manifest["replayed"][past]]
    assert len(set(replayed_ids)) == 40
    tail_answers = [row["messages"][1]["content"] for row in fin_rows[TRAIN_ROWS["Fin"] :]]
    domain_of = {"rs": "RS", "med": "Med"}
    expected = [f"{domain_of[i.split('_')[0]]} answer {i.split('_')[1]}" for i in replayed_ids]
    assert tail_answers == expected


def test_replay_never_oversamples_a_small_domain(source: Path, tmp_path: Path) -> None:
    _, manifest = build(source, tmp_path, "Med", replay="50", order=ORDER)
    rows = [entry["row"] for entry in manifest["replayed"]["RS"]]
    assert sorted(rows) == list(range(TRAIN_ROWS["RS"]))


def test_builds_are_byte_identical_and_the_seed_moves_the_replay(source: Path, tmp_path: Path) -> None:
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        options = BuildOptions(
            source=source,
            out=tmp_path / out,
            split="train",
            seed=seed,
            params={"domain": "Med", "replay": "20", "order": ORDER},
        )
        run_builder("mllm-cl", options)
    a, b, c = ((tmp_path / out / "mllmcl_med_train_replay20.json").read_bytes() for out in "abc")
    assert a == b != c


def test_limit_keeps_the_meta_lines_aligned(source: Path, tmp_path: Path) -> None:
    options = BuildOptions(source=source, out=tmp_path, split="test", limit=2, seed=4, params={"domain": "RS"})
    run_builder("mllm-cl", options)
    rows = json.loads((tmp_path / "mllmcl_rs_test.json").read_text())
    meta = [json.loads(line) for line in (tmp_path / "mllmcl_rs_test.meta.jsonl").read_text().splitlines()]
    assert len(rows) == len(meta) == 2
    assert [row["messages"][1]["content"] for row in rows] == [line["answer"] for line in meta]


@pytest.mark.parametrize(
    ("split", "params", "message"),
    [
        ("train", {"domain": "OCR"}, "'OCR' is not an MLLM-CL domain; choose from RS, Med, AD, Sci, Fin"),
        ("train", {}, "--param domain=... is required"),
        ("test", {"domain": "RS", "replay": "20"}, "replay is for --split train"),
        ("train", {"domain": "Med", "replay": "twenty"}, "must be a positive number"),
        ("train", {"domain": "Fin", "replay": "20"}, r"AD does not exist \(found: Fin, Med, RS\)"),
        ("train", {"domain": "Fin", "replay": "20", "order": "RS,Med"}, "Fin is not in --param order=RS,Med"),
        ("val", {"domain": "RS"}, "train and test splits"),
    ],
)
def test_bad_requests_fail_with_the_fix(source: Path, tmp_path: Path, split: str, params: dict, message: str) -> None:
    with pytest.raises(ForgetkitError, match=message):
        run_builder("mllm-cl", BuildOptions(source=source, out=tmp_path, split=split, params=params))
