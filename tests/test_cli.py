"""The `forgetkit` command line: every verb explains itself, bad input is one line on stderr, exit 2."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from forgetkit.cli import app, main

runner = CliRunner()


@pytest.mark.parametrize(
    "verb", [None, "build-data", "render-config", "launch", "score", "report", "probe", "demo", "doctor"]
)
def test_every_verb_has_help(verb: str | None) -> None:
    result = runner.invoke(app, [verb, "--help"] if verb else ["--help"], prog_name="forgetkit")
    assert result.exit_code == 0
    assert "Usage: forgetkit" in result.output


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["forgetkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_render_config_prints_the_papers_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "render-config", "--part", "llm", "--lr", "1e-6")
    assert code == 0
    config = yaml.safe_load(out)
    assert config["learning_rate"] == 1e-6 and config["freeze_vision_tower"] is True


def test_render_config_trusts_model_code_only_with_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _, default, _ = run_main(monkeypatch, capsys, "render-config")
    code, trusted, _ = run_main(monkeypatch, capsys, "render-config", "--trust-remote-code")
    assert code == 0
    assert yaml.safe_load(default)["trust_remote_code"] is False
    assert yaml.safe_load(trusted)["trust_remote_code"] is True


def test_render_config_writes_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    target = tmp_path / "train.yaml"
    code, _, err = run_main(monkeypatch, capsys, "render-config", "--part", "vision", "--lr", "1e-5", "-o", str(target))
    assert code == 0 and f"wrote {target}" in err
    assert yaml.safe_load(target.read_text())["freeze_vision_tower"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build-data", "cifar", "--source", "x", "--out", "y"], "unknown dataset 'cifar'"),
        (["build-data", "imagenet-vqa", "--source", "/no/such/dir", "--out", "y"], "does not exist"),
        (["build-data"], "name a dataset to build"),
        (["build-data", "imagenet-vqa", "--param", "domain"], "--param 'domain' is not key=value"),
        (["build-data", "imagenet-vqa", "--param", "domain=RS"], "imagenet-vqa has no parameter 'domain'"),
        (["score", "/no/such/file.jsonl"], "does not exist"),
        (["launch", "/no/such/spec.yaml"], "study spec /no/such/spec.yaml does not exist"),
        (["render-config", "--model", "my-vlm"], "unknown model 'my-vlm'"),
        (["render-config", "--batch-size", "10", "--gpus", "4"], "global batch 10 is not a multiple"),
        (["render-config", "--preset", "fig9"], "unknown preset 'fig9'"),
        (["render-config", "--part", "mlp-gate-up"], "needs --method lora"),
        (["render-config", "--lr", "nan"], "render-config.lr: must be a positive finite number, got nan"),
        (["render-config", "--lr", "inf"], "render-config.lr: must be a positive finite number, got inf"),
        (["render-config", "--epochs", "nan"], "render-config.epochs: must be a positive finite number, got nan"),
        (["render-config", "--gpus", "0"], "hardware needs at least 1 device"),
        (["render-config", "--gpus", "-2"], "hardware needs at least 1 device"),
        (["render-config", "--dataset", "a,b", "--mix-ratio", "nan"], "ratios are finite numbers such as 0.5"),
        (["render-config", "-o", "."], "-o . is a folder; name the YAML file to write"),
        (["build-data", "imagenet-vqa", "--split", "x/../../escaped"], "--split 'x/../../escaped' names output files"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_build_data_refuses_an_out_that_is_a_file_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("")
    code, _, err = run_main(monkeypatch, capsys, "build-data", "imagenet-vqa", "--out", str(tmp_path / "data"))
    assert code == 2 and f"error: --out {tmp_path / 'data'} is a file; name a folder" in err


def test_render_config_preset_with_trainable_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_main(monkeypatch, capsys, "render-config", "--preset", "fig2-d", "--check-trainable")
    assert code == 0
    assert yaml.safe_load(out)["freeze_vision_tower"] is False
    assert "trains vision_tower (full); frozen: projector, llm" in err


def test_check_trainable_prints_the_named_family_s_own_modules(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_main(
        monkeypatch, capsys, "render-config", "--model", "qwen3-vl-4b", "--part", "attn", "--check-trainable"
    )
    assert code == 0 and yaml.safe_load(out)["template"] == "qwen3_vl_nothink"
    assert "qwen3_vl modules (qwen3-vl-4b): vision_tower: visual.pos_embed, visual.patch_embed, visual.blocks, " in err
    assert "visual.deepstack_merger_list; projector: visual.merger; llm: language_model, lm_head" in err
    assert "self_attn.q_norm" in err and "all 36 layers" in err  # Qwen3's own attention, every layer of the 4B


def test_check_trainable_refuses_a_family_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    model = tmp_path / "gemma"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gemma3", "text_config": {"num_hidden_layers": 34}}')
    args = ("render-config", "--model", str(model), "--template", "gemma3", "--check-trainable", "--no-validate")
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--check-trainable needs a model of a family forgetkit knows" in err
    assert "has model type 'gemma3'" in err and "visual.merger" not in err


def test_render_config_lists_presets(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_main(monkeypatch, capsys, "render-config", "--list-presets")
    assert code == 0 and "table3-b" in out and "App. C.4 (b)" in out


def test_build_data_list_names_every_builder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from datasets_builders import BUILDERS

    code, out, _ = run_main(monkeypatch, capsys, "build-data", "--list")
    assert code == 0
    for name in BUILDERS:
        assert name in out


def test_build_data_reports_rows_and_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, shapes: Path, tmp_path: Path
) -> None:
    args = ["--source", str(shapes), "--out", str(tmp_path), "--class-names", str(shapes / "class_names.txt")]
    clip = ["--clip-model", "tiny-random-clip", "--clip-pretrained", "none", "--no-cache", "--num-workers", "0"]
    code, out, _ = run_main(monkeypatch, capsys, "build-data", "imagenet-vqa", *args, *clip, "--split", "train")
    assert code == 0
    assert "imagenet_vqa_train: 36 rows" in out
    assert not (tmp_path / "imagenet_vqa_train.tsv").exists(), "no TSV for a training split unless --tsv"
    manifest = json.loads((tmp_path / "imagenet_vqa_train.manifest.json").read_text())
    assert manifest["counts"]["records"] == 36 and manifest["clip"]["model"] == "tiny-random-clip"


def test_score_json_reports_accuracy(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text(
        '{"prompt": "p", "predict": "A", "label": "A\\n"}\n{"prompt": "p", "predict": "B", "label": "C\\n"}\n'
    )
    code, out, _ = run_main(monkeypatch, capsys, "score", str(path), "--matcher", "letter", "--json")
    assert code == 0
    assert json.loads(out) == {"accuracy": 0.5, "correct": 1, "total": 2, "matcher": "letter"}


def test_score_skips_malformed_lines_when_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text('{"predict": "A", "label": "A"}\nnot json\n{"predict": "B", "label": "C"}\n')
    code, _, err = run_main(monkeypatch, capsys, "score", str(path))
    assert code == 2 and f"{path}:2" in err
    code, out, _ = run_main(monkeypatch, capsys, "score", str(path), "--skip-bad", "--json")
    assert code == 0 and json.loads(out) == {
        "accuracy": 0.5,
        "correct": 1,
        "total": 2,
        "matcher": "letter",
        "skipped": 1,
    }


def test_report_writes_the_run_report_and_prints_its_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from test_report import two_recipe_run

    run = two_recipe_run(tmp_path / "run")
    code, out, _ = run_main(monkeypatch, capsys, "report", str(run), "--resamples", "200")
    assert code == 0 and "Table 1" in out and str(run / "report" / "report.md") in out
    assert (run / "report" / "fig2.png").is_file() and (run / "report" / "numbers.json").is_file()


def test_report_of_several_runs_merges_their_table2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from test_report import two_recipe_run

    runs = [str(two_recipe_run(tmp_path / name)) for name in ("a", "b")]
    code, _, err = run_main(monkeypatch, capsys, "report", *runs)
    assert code == 2 and "several runs: give --out DIR" in err
    code, out, _ = run_main(monkeypatch, capsys, "report", *runs, "--out", str(tmp_path / "t2"), "--resamples", "200")
    assert code == 0 and f"Table 2 of 2 runs: {tmp_path / 't2' / 'table2.md'}" in out
    assert all((Path(run) / "report" / "report.md").is_file() for run in runs)


def test_probe_of_a_model_against_itself_reports_no_drift(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    from forgetkit.fixtures.captions import write_caption_set
    from forgetkit.tiny_model import tiny_model_dir

    write_caption_set(tmp_path / "data")
    args = ["probe", "tiny-qwen2.5-vl", str(tiny_model_dir()), "--data", str(tmp_path / "data")]
    args += ["--dataset", "shape_captions", "--image-max-pixels", "4096", "--output", str(tmp_path / "probe.json")]
    code, out, _ = run_main(monkeypatch, capsys, *args)
    assert code == 0 and "KL 0.0000 nats" in out and "top-token agreement 100.0%" in out
    assert json.loads((tmp_path / "probe.json").read_text())["kl"] == 0


def test_spec_errors_name_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: x\nmodel: tiny-qwen2.5-vl\ndata: {dataset_dir: d}\neval: {datasets: [v]}\n"
        "recipes: {r: {lr: 1e-3, stepz: 3}}\n"
    )
    code, _, err = run_main(monkeypatch, capsys, "launch", str(spec))
    assert code == 2 and "recipes.r: unknown recipe key(s) ['stepz']" in err


def test_render_config_has_an_option_per_recipe_knob_helped_by_the_knob_itself() -> None:
    from dataclasses import fields

    from forgetkit.recipes import Recipe

    help_text = " ".join(runner.invoke(app, ["render-config", "--help"], env={"COLUMNS": "400"}).output.split())
    for knob in fields(Recipe):
        assert f"--{knob.name.replace('_', '-')} " in help_text
        assert " ".join(knob.metadata["help"].removesuffix(".").split()) in help_text
    assert "Global batch size (default 16)." in help_text
    rendered = runner.invoke(app, ["render-config", "--optim", "sgd", "--lora-rank", "4", "--method", "lora"])
    assert rendered.exit_code == 0, rendered.output
    assert "optim: sgd" in rendered.output.replace('"', "") and "lora_rank: 4" in rendered.output
