"""Hundreds of malformed specs and option values: each ends in exit 2 with one bounded `error:` line naming
where it is wrong, never a traceback, never a value taken for something else."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from forgetkit.cli import main

VALID = {
    "name": "s",
    "model": "tiny-qwen2.5-vl",
    "seed": 1,
    "hardware": {"devices": 1, "per_device_batch_size": 2, "bf16": False, "device": "cpu"},
    "data": {"dataset_dir": "data", "train": ["imagenet_vqa_train"], "cutoff_len": 512, "image_max_pixels": 4096},
    "eval": {"datasets": ["imagenet_vqa_val"], "batch_size": 2, "max_new_tokens": 4, "scoring": "generate"},
    "recipes": {"r": {"lr": 1.0e-4, "steps": 4, "save_steps": 2, "warmup": 0.1, "batch_size": 4}},
    "continual": {"tasks": ["rs", "med"], "sequences": {"inc": {"strategy": "inclora", "steps": 2, "replay": 2}}},
}
NOT_COUNTS = [0, -1, 2.9, True, "2", "abc", None, [], {}, math.nan, "x" * 5000]
NOT_RATES = [0, -1e-4, math.nan, math.inf, True, "fast", None, [1e-4], {}]
NOT_FLAGS = ["no", "yes", 1, 0, None, [], "true"]
NOT_NAMES = ["../../x", "a/b", "", ".hidden", 3, None, ["ok", 4], {"a": 1}, "n" * 400 + "/x"]
NOT_TEXTS = [3, 2.5, True, [], {}]
CASES: list[tuple[tuple[str, ...], list[Any]]] = [
    (("name",), NOT_NAMES),
    (("model",), [3, None, [], {}, True]),
    (("seed",), [-1, 2.5, "abc", True, None, [], math.nan]),
    (("hardware", "devices"), NOT_COUNTS),
    (("hardware", "per_device_batch_size"), NOT_COUNTS),
    (("hardware", "bf16"), NOT_FLAGS),
    (("hardware", "device"), ["tpu", 3, None, []]),
    (("hardware", "dataloader_workers"), [-1, 1.5, "2", True]),
    (("hardware",), ["tpu", 3, [], None]),
    (("data", "cutoff_len"), NOT_COUNTS),
    (("data", "image_max_pixels"), NOT_COUNTS),
    (("data", "train"), NOT_NAMES),
    (("data", "dataset_dir"), NOT_TEXTS),
    (("data",), ["data", 3, [], None]),
    (("eval", "batch_size"), NOT_COUNTS),
    (("eval", "max_new_tokens"), NOT_COUNTS),
    (("eval", "datasets"), NOT_NAMES),
    (("eval", "probe"), [n for n in NOT_NAMES if n is not None]),
    (("eval", "scoring"), ["fast", 3, []]),
    (("eval", "backend"), ["tgi", 3]),
    (("eval", "vlmeval_max_pixels"), [n for n in NOT_COUNTS if n is not None]),
    (("eval", "quadrants"), [["a"], "a", {"ID-ID": ["a"]}, {"ID^T-ID^I": 3}, {"ID^T-ID^I": ["../x"]}]),
    (("recipes", "r", "lr"), NOT_RATES),
    (("recipes", "r", "steps"), [0, -1, 2.9, True, "2", "abc", [], {}, math.nan]),
    (("recipes", "r", "save_steps"), NOT_COUNTS),
    (("recipes", "r", "batch_size"), NOT_COUNTS),
    (("recipes", "r", "epochs"), NOT_RATES[:6]),
    (("recipes", "r", "warmup"), [-0.1, 1, 1.5, math.nan, True, "abc"]),
    (("recipes", "r", "part"), ["eyes", 3, None, []]),
    (("recipes", "r", "method"), ["qlora", 3]),
    (("recipes", "r", "lora_rank"), NOT_COUNTS),
    (("recipes", "r", "optim"), NOT_TEXTS),
    (("recipes", "r", "preset"), ["nope", 3, []]),
    (("recipes", "r", "mix_ratio"), ["abc", math.nan, -1, 0.5]),
    (("recipes", "r", "train"), NOT_NAMES),
    (("recipes", "r", "unknown_knob"), [1]),
    (("recipes", "r"), [3, "fast", []]),
    (("recipes",), [3, "r", [], {}]),
    (("continual", "tasks"), [[], "rs", [3], ["rs", "rs"], ["../x"], None]),
    (("continual", "sequences", "inc", "strategy"), ["magic", 3, None]),
    (("continual", "sequences", "inc", "replay"), [0, -2, 2.5, True, "20"]),
    (("continual", "sequences", "inc", "steps"), [0, 2.9, "x"]),
    (("continual", "eval"), ["some", 3]),
    (("continual",), [3, [], "x"]),
    (("trust_remote_code",), NOT_FLAGS),
    (("extra_key",), [1]),
    (("template",), [3, []]),
]
SPECS = [(keys, value) for keys, values in CASES for value in values]


def with_value(keys: tuple[str, ...], value: Any) -> dict:
    spec = copy.deepcopy(VALID)
    target = spec
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return spec


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["forgetkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def assert_one_error_line(code: int, err: str, where: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (where, code, err[:2000])
    assert len(lines[0]) < 1000, (where, lines[0][:300])


def test_the_valid_spec_plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(VALID))
    monkeypatch.setattr(sys, "argv", ["forgetkit", "launch", str(path), "--dry-run"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0 and "10 stages, 0 done" in capsys.readouterr().out


def test_every_malformed_spec_is_one_error_line_naming_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert len(SPECS) > 250
    path = tmp_path / "study.yaml"
    wrong = []
    for keys, value in SPECS:
        path.write_text(yaml.safe_dump(with_value(keys, value), allow_unicode=True))
        code, err = run_main(monkeypatch, capsys, "launch", str(path), "--dry-run")
        lines = err.strip().splitlines()
        if not (code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) < 1000):
            wrong.append((".".join(keys), repr(value)[:60], code, err[-300:]))
        elif keys[-1] not in lines[0]:
            wrong.append((".".join(keys), repr(value)[:60], "key not named", lines[0][:300]))
    assert not wrong, "\n".join(map(str, wrong))


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "name: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
        "name: s\nmodel: [unclosed\n",
        "- a list\n- not a mapping\n",
        "\x00\x01binary",
        "name: " + "x" * 100_000 + "\nmodel: m\ndata: {}\nrecipes: {r: {}}\n",
    ],
)
def test_hostile_yaml_is_refused_quickly_with_a_bounded_line(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    code, err = run_main(monkeypatch, capsys, "launch", str(path), "--dry-run")
    assert_one_error_line(code, err, text[:40])


RENDER_BAD = [
    *(["--lr", v] for v in ("nan", "inf", "-1", "0", "fast", "")),
    *(["--epochs", v] for v in ("nan", "inf", "0", "-2", "x")),
    *(["--steps", v] for v in ("0", "-3", "2.9", "x")),
    *(["--gpus", v] for v in ("0", "-2", "1.5")),
    *(["--batch-size", v] for v in ("0", "-16")),
    ["--batch-size", "3", "--gpus", "2"],
    *(["--warmup", v] for v in ("1", "-0.5", "nan")),
    *(["--mix-ratio", v, "--dataset", "a,b"] for v in ("nan", "abc", "-1", "0")),
    *(["--part", v] for v in ("eyes", "")),
    *(["--method", v] for v in ("qlora",)),
    *(["--preset", v] for v in ("nope", "../x")),
    *(["--save-steps", v] for v in ("0", "x")),
    *(["--lora-rank", v] for v in ("0", "-8")),
    ["--method", "lora", "--part", "vision"],
    ["--lora-target", "q_proj"],
]


@pytest.mark.parametrize("args", RENDER_BAD, ids=" ".join)
def test_every_bad_render_config_option_is_one_error_line(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, err = run_main(monkeypatch, capsys, "render-config", *args)
    assert_one_error_line(code, err, " ".join(args))
