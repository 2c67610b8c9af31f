"""`forgetkit build-data mix`: LF interleave_over settings checked by LF's own parser, and materialised mixes
that equal what LF's own loader builds from the same settings and seed."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.mix import interleave_order
from datasets_builders.output import export_rows
from forgetkit.errors import ForgetkitError
from forgetkit.exporters import lf_dataset_entry

BASE_ROWS = 40
WITH_ROWS = 6


def lf_rows(prefix: str, count: int, image: str | None) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"<image>\n{prefix} question {i}" if image else f"{prefix} question {i}"},
                {"role": "assistant", "content": f"{prefix} answer {i}"},
            ],
            "images": [image] if image else [],
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --out folder holding two LF datasets, as earlier build-data runs leave it (JSON, entry, manifest)."""
    out = tmp_path_factory.mktemp("data")
    (out / "images").mkdir()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(out / "images" / "cat.png")
    export_rows(lf_rows("cls", BASE_ROWS, "images/cat.png"), "cls_train", BuildOptions(None, out), _entry("cls_train"))
    export_rows(lf_rows("chat", WITH_ROWS, None), "chat", BuildOptions(None, out), _entry("chat"))
    return out


def _entry(name: str) -> dict:
    return lf_dataset_entry(f"{name}.json")


def mix(out: Path, *specs: str, **overrides):
    options = BuildOptions(source=None, out=out, base=overrides.pop("base", "cls_train"), mix=specs, **overrides)
    return run_builder("mix", options)


def lf_args(out: Path, work: Path, settings: dict, seed: int = 0) -> dict:
    return {
        "model_name_or_path": "not-loaded",
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "full",
        "template": "qwen2_vl",
        "dataset_dir": str(out),
        "output_dir": str(work / "lf-out"),
        "cache_dir": str(work / "hf-cache"),
        "seed": seed,
        "report_to": "none",
        **settings,
    }


def lf_merged(out: Path, work: Path, settings: dict, seed: int):
    """What LF's loader makes of `settings`: dataset_info lookup, sharegpt conversion, its own mixing."""
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import get_train_args

    model_args, data_args, training_args, _, _ = get_train_args(lf_args(out, work, settings, seed))
    return _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage="sft")


def test_default_writes_lf_mix_settings_and_says_how_to_use_them(data: Path, capsys) -> None:
    result = mix(data, "chat:0.5")
    assert result.dataset == "mix_cls_train_chat_0.5"
    settings = json.loads((data / "mix_cls_train_chat_0.5.mix.json").read_text())
    assert settings == {"dataset": "cls_train,chat", "mix_strategy": "interleave_over", "interleave_probs": "0.5,0.5"}
    assert "mix_cls_train_chat_0.5" not in json.loads((data / "dataset_info.json").read_text())
    manifest = json.loads((data / "mix_cls_train_chat_0.5.manifest.json").read_text())
    assert manifest["component_rows"] == {"cls_train": BASE_ROWS, "chat": WITH_ROWS}
    assert manifest["probabilities"] == {"cls_train": "0.5", "chat": "0.5"}
    printed = capsys.readouterr().out
    assert "interleave_probs: 0.5,0.5" in printed and "--dataset cls_train,chat" in printed


def test_llamafactory_parser_accepts_the_settings(data: Path, tmp_path: Path) -> None:
    from llamafactory.hparams import get_train_args

    mix(data, "chat:0.3", params={"name": "hybrid"})
    settings = json.loads((data / "hybrid.mix.json").read_text())
    _, data_args, *_ = get_train_args(lf_args(data, tmp_path, settings))
    assert data_args.dataset == ["cls_train", "chat"]
    assert data_args.mix_strategy == "interleave_over"
    assert data_args.interleave_probs == [0.7, 0.3]


def test_several_with_datasets_share_what_the_base_leaves(data: Path) -> None:
    export_rows(lf_rows("ocr", 5, None), "ocr", BuildOptions(None, data), _entry("ocr"))
    mix(data, "chat:0.25", "ocr:0.15", params={"name": "three"})
    settings = json.loads((data / "three.mix.json").read_text())
    assert settings["dataset"] == "cls_train,chat,ocr"
    assert settings["interleave_probs"] == "0.6,0.25,0.15"


def test_ratio_zero_leaves_the_dataset_out_instead_of_waiting_for_it_forever(data: Path) -> None:
    mix(data, "chat:0", params={"name": "pure"})
    assert json.loads((data / "pure.mix.json").read_text()) == {"dataset": "cls_train"}


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (("chat:1",), "at least 0 and below 1"),
        (("chat:-0.1",), "at least 0 and below 1"),
        (("chat",), "is not NAME:RATIO"),
        (("chat:half",), "is not NAME:RATIO"),
        (("chat:0.6", "ocr:0.4"), "add up to 1.0; they must stay below 1"),
        (("cls_train:0.5",), "appears twice"),
        ((), "at least one --with"),
        (("llava_665k:0.5",), r"'llava_665k' is not in .*dataset_info.json; available: chat, cls_train"),
    ],
)
def test_bad_mixes_fail_with_the_fix(data: Path, tmp_path: Path, specs: tuple, message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for name in ("cls_train", "chat"):
        (out / f"{name}.json").write_text((data / f"{name}.json").read_text())
    (out / "dataset_info.json").write_text(json.dumps({"cls_train": _entry("cls_train"), "chat": _entry("chat")}))
    with pytest.raises(ForgetkitError, match=message):
        mix(out, *specs)


def test_materialized_mix_equals_llamafactorys_own_interleave_over(data: Path, tmp_path: Path) -> None:
    mix(data, "chat:0.3", params={"name": "lf_mixed"})
    settings = json.loads((data / "lf_mixed.mix.json").read_text())
    mix(data, "chat:0.3", params={"name": "rows_mixed"}, materialize=True, seed=11)
    by_lf = lf_merged(data, tmp_path / "a", settings, seed=11)
    ours = lf_merged(data, tmp_path / "b", {"dataset": "rows_mixed"}, seed=11)
    assert len(ours) == len(by_lf) > BASE_ROWS + WITH_ROWS
    for column in ("_prompt", "_response", "_images"):
        assert ours[column] == by_lf[column]


def test_materialized_mix_uses_every_row_and_oversamples_the_smaller_set(data: Path) -> None:
    result = mix(data, "chat:0.3", params={"name": "counted"}, materialize=True, seed=3)
    rows = json.loads((data / "counted.json").read_text())
    assert result.records == len(rows)
    answers = [row["messages"][1]["content"] for row in rows]
    assert {f"cls answer {i}" for i in range(BASE_ROWS)} <= set(answers)
    assert {f"chat answer {i}" for i in range(WITH_ROWS)} <= set(answers)
    chat = sum(answer.startswith("chat") for answer in answers)
    assert chat > WITH_ROWS, "the 6-row set must be drawn again once exhausted"
    assert abs(chat / len(rows) - 0.3) < 0.12
    manifest = json.loads((data / "counted.manifest.json").read_text())
    assert manifest["components"]["chat"]["drawn"] == chat
    assert all((data / row["images"][0]).is_file() for row in rows if row["images"])
    assert json.loads((data / "dataset_info.json").read_text())["counted"] == _entry("counted")


def test_materialized_mix_is_seeded(data: Path) -> None:
    mix(data, "chat:0.5", params={"name": "seed_a"}, materialize=True, seed=5)
    mix(data, "chat:0.5", params={"name": "seed_b"}, materialize=True, seed=5)
    mix(data, "chat:0.5", params={"name": "seed_c"}, materialize=True, seed=6)
    a, b, c = ((data / f"seed_{x}.json").read_bytes() for x in "abc")
    assert a == b != c


def test_large_ratio_shares_match_the_requested_probabilities() -> None:
    which, rows = interleave_order([20000, 5000], [0.5, 0.5], seed=0)
    assert abs((which == 1).mean() - 0.5) < 0.01
    assert np.bincount(rows[which == 1]).min() >= 1


def test_interleave_order_is_hf_interleave_datasets_all_exhausted() -> None:
    from datasets import Dataset, interleave_datasets

    lengths, probs = [9, 2, 5], [0.5, 0.3, 0.2]
    parts = [Dataset.from_dict({"part": [k] * n, "row": list(range(n))}) for k, n in enumerate(lengths)]
    expected = interleave_datasets(parts, probabilities=probs, seed=4, stopping_strategy="all_exhausted")
    which, rows = interleave_order(lengths, probs, seed=4)
    assert which.tolist() == list(expected["part"]) and rows.tolist() == list(expected["row"])


def test_materialize_refuses_parts_lf_would_read_differently(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text(json.dumps(lf_rows("a", 2, None)))
    (out / "b.json").write_text(json.dumps([{"conversations": [{"from": "human", "value": "q"}]}]))
    other = {"file_name": "b.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}}
    (out / "dataset_info.json").write_text(json.dumps({"a": _entry("a"), "b": other}))
    with pytest.raises(ForgetkitError, match="different dataset_info.json layouts"):
        mix(out, "b:0.5", base="a", materialize=True)
