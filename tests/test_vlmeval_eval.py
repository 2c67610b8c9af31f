"""The VLMEvalKit stage: forgetkit's model class under VLMEvalKit's own runner and MMMU / VMCBench scoring."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from forgetkit.errors import ForgetkitError
from forgetkit.fixtures.hf_cache import place_in_hub_cache
from forgetkit.fixtures.vlmeval_data import TINY_MMMU, TINY_VMCBENCH, write_mmmu_tsv, write_vmcbench_tsv
from forgetkit.models import FAMILIES
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stages.vlmeval import stage as vlmeval_eval
from forgetkit.stages.vlmeval.runner import EMPTY_IS_MISSING
from forgetkit.stages.vlmeval.stage import VMCBENCH_CATEGORIES, predictions_path, run_vlmeval
from forgetkit.study import launch, plan
from forgetkit.tiny_model import tiny_model_dir

NA_TEXTS = ["NA", "None", "null", "N/A"]
"""Option texts pandas reads as missing unless told otherwise."""


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return tiny_model_dir()


@pytest.fixture(scope="module")
def vlmeval_model(tmp_path_factory: pytest.TempPathFactory):
    """forgetkit.stages.vlmeval.model imported with LMUData set first, so the import creates no ~/LMUData."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMUData", str(tmp_path_factory.mktemp("LMUData-import")))
        from forgetkit.stages.vlmeval import model as vlmeval_model

        yield vlmeval_model


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (90, 60), (210, 30, 30)).save(path)
    return path


def read_items(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_stage_scores_tiny_mmmu_and_vmcbench_through_vlmevalkit(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lmu = tmp_path / "LMUData"
    write_mmmu_tsv(lmu, n_val=4)
    vmcbench = write_vmcbench_tsv(lmu)
    table = list(csv.reader(vmcbench.read_text(encoding="utf-8").splitlines(), delimiter="\t"))
    assert table[0][2:6] == ["A", "B", "C", "D"]
    table[1][2:6] = NA_TEXTS
    vmcbench.write_text("".join("\t".join(row) + "\n" for row in table), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    log = tmp_path / "logs" / "vlmeval.log"

    scores = run_vlmeval(
        model_dir, [TINY_MMMU, TINY_VMCBENCH], lmu, tmp_path / "eval", log, image_max_pixels=4096, max_new_tokens=4
    )

    assert set(scores) == {TINY_MMMU, TINY_VMCBENCH}
    mmmu = read_items(predictions_path(tmp_path / "eval", TINY_MMMU))
    vmc = read_items(predictions_path(tmp_path / "eval", TINY_VMCBENCH))
    # MMMU reports the validation split only (the TSV also has 2 dev rows); VMCBench every row.
    assert [item["index"] for item in mmmu] == [1, 2, 3, 4]
    assert {item["split"] for item in mmmu} == {"validation"}
    assert {item["category"] for item in vmc} == set(VMCBENCH_CATEGORIES)
    for name, items in ((TINY_MMMU, mmmu), (TINY_VMCBENCH, vmc)):
        assert 0.0 <= scores[name] <= 1.0
        assert set(items[0]) >= {"index", "prediction", "answer", "correct"}
        assert scores[name] == pytest.approx(sum(item["correct"] for item in items) / len(items), abs=1e-4)
    # The open MMMU question keeps its free-text answer; VLMEvalKit scored it as a two-option one.
    assert mmmu[-1]["answer"] == "4"
    assert log.read_text(encoding="utf-8").startswith(f"$ {sys.executable} -m forgetkit.stages.vlmeval.runner --config")
    assert "--judge exact_matching" in log.read_text(encoding="utf-8").splitlines()[0]
    assert not (home / "LMUData").exists()
    # The runner read the texts pandas calls missing as texts: VLMEvalKit's result sheet holds them verbatim.
    sheet = tmp_path / "eval" / "vlmeval" / vlmeval_eval.MODEL_NAME / f"forgetkit_{TINY_VMCBENCH}_result.xlsx"
    result = pd.read_excel(sheet, **EMPTY_IS_MISSING)
    assert result.loc[result["index"] == 0, ["A", "B", "C", "D"]].values.tolist() == [NA_TEXTS]
    assert json.loads((tmp_path / "eval" / "vlmeval_config.json").read_text())["data"][TINY_VMCBENCH] == {
        "class": "SeededVMCBench",
        "dataset": TINY_VMCBENCH,
    }


@pytest.mark.slow
def test_a_studys_vlmeval_stage_runs_a_model_named_by_hub_id_from_the_hf_cache(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's studies name their model by hub id (`qwen2.5-vl-3b` is `Qwen/Qwen2.5-VL-3B-Instruct`); the
    stage reads it from the HF cache, offline, as LLaMA-Factory's stages do."""
    snapshot = place_in_hub_cache(model_dir, "forgetkit-test/tiny-qwen2.5-vl", tmp_path / "hf" / "hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text("{}")
    write_mmmu_tsv(tmp_path / "data" / "lmudata", n_val=2)
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: hub\nmodel: forgetkit-test/tiny-qwen2.5-vl\ntemplate: qwen2_vl\nhardware: cpu\n"
        "data: {dataset_dir: data, train: []}\nrecipes: {lora: {method: lora, steps: 2, save_steps: 2}}\n"
        f"eval: {{datasets: ['vlmeval:{TINY_MMMU}'], vlmeval_min_pixels: 64, vlmeval_max_pixels: 4096, "
        "max_new_tokens: 4}\n"
    )
    run = RunDir(tmp_path / "run")

    launch(load_study(spec), run.root, only="vlmeval zero-shot")

    rows = read_items(run.predictions("zero-shot", f"vlmeval:{TINY_MMMU}"))
    assert len(rows) == 2 and all(set(row) == {"predict", "label", "correct"} for row in rows)
    config = json.loads(run.config("vlmeval zero-shot").with_suffix(".json").read_text())
    assert config["model"]["forgetkit"]["model_path"] == str(snapshot)
    assert {step.name: step.done for step in plan(load_study(spec), run)}["vlmeval zero-shot"]


@pytest.mark.slow
def test_a_local_tsv_under_mmmus_pinned_name_is_refused_not_redownloaded(model_dir: Path, tmp_path: Path) -> None:
    lmu = tmp_path / "LMUData"
    tsv = write_mmmu_tsv(lmu, name="MMMU_DEV_VAL", n_val=1)
    before = tsv.read_bytes()
    with pytest.raises(ForgetkitError) as caught:
        run_vlmeval(model_dir, ["MMMU_DEV_VAL"], lmu, tmp_path / "eval", tmp_path / "vlmeval.log")
    message = str(caught.value)
    assert "\n" not in message
    assert "md5" in message and "rename it" in message and str(tmp_path / "vlmeval.log") in message
    assert tsv.read_bytes() == before


@pytest.mark.parametrize(
    ("case", "fix"),
    [
        ("missing-tsv", "put VLMEvalKit's"),
        ("unknown-dataset", "name it so it contains"),
        ("bad-kind", "use one of"),
        ("not-a-model", "pass a saved checkpoint"),
        ("wrong-kind", "pass kind to match"),
        ("not-an-adapter", "pass the adapter directory"),
        ("vmcbench-categories", "needs rows from all 20"),
    ],
)
def test_bad_inputs_fail_in_one_line_before_vlmevalkit_starts(
    case: str, fix: str, model_dir: Path, tmp_path: Path
) -> None:
    lmu = tmp_path / "LMUData"
    write_mmmu_tsv(lmu, n_val=1)
    args = {"model_path": model_dir, "datasets": [TINY_MMMU], "kind": "qwen2_5_vl", "adapter": None}
    if case == "missing-tsv":
        args["datasets"] = ["MMMU_DEV_VAL"]
    elif case == "unknown-dataset":
        args["datasets"] = ["imagenet_vqa_val"]
    elif case == "bad-kind":
        args["kind"] = "qwen3"
    elif case == "not-a-model":
        args["model_path"] = tmp_path
    elif case == "wrong-kind":
        args["kind"] = "llava"
    elif case == "not-an-adapter":
        args["adapter"] = tmp_path
    else:
        write_vmcbench_tsv(lmu)
        frame = pd.read_csv(lmu / f"{TINY_VMCBENCH}.tsv", sep="\t")
        frame[frame["category"] != "GQA"].to_csv(lmu / f"{TINY_VMCBENCH}.tsv", sep="\t", index=False)
        args["datasets"] = [TINY_VMCBENCH]
    log = tmp_path / "vlmeval.log"
    with pytest.raises(ForgetkitError) as caught:
        run_vlmeval(args.pop("model_path"), args.pop("datasets"), lmu, tmp_path / "eval", log, **args)
    assert "\n" not in str(caught.value)
    assert fix in str(caught.value)
    assert not log.exists(), "VLMEvalKit was started although the inputs were wrong"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-lmudata", "set LMUData to the directory holding the TSVs"),
        ("not-json", "is not valid JSON"),
        ("data-not-entries", "'data' must map names to entries with 'class' and 'dataset'"),
    ],
)
def test_runner_refuses_a_bad_environment_or_config_in_one_line_before_importing_vlmevalkit(
    case: str, message: str, tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "LMUData"}
    env["HOME"] = str(tmp_path)
    if case != "no-lmudata":
        env["LMUData"] = str(tmp_path)
    config = tmp_path / "cfg.json"
    config.write_text("{model: }" if case == "not-json" else json.dumps({"model": {}, "data": {"MMMU": "MMMUDataset"}}))
    done = subprocess.run(
        [sys.executable, "-m", "forgetkit.stages.vlmeval.runner", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ForgetkitError: ") and message in lines[0]
    assert not (tmp_path / "LMUData").exists()


def test_a_dataset_vlmevalkit_did_not_score_names_its_reason(tmp_path: Path) -> None:
    root = tmp_path / "vlmeval" / vlmeval_eval.MODEL_NAME
    root.mkdir(parents=True)
    (root / "status.json").write_text(json.dumps({"datasets": {TINY_MMMU: {"error_message": "KeyError: 'answer'"}}}))
    log = tmp_path / "vlmeval.log"
    log.write_text("$ ...\n")
    with pytest.raises(ForgetkitError, match=r"did not score MMMU_DEV_VAL_tiny: KeyError: 'answer'; full log: "):
        vlmeval_eval._collect(root, TINY_MMMU, tmp_path, log)


def test_qwen_checkpoint_answers_a_vlmevalkit_message(vlmeval_model, model_dir: Path, picture: Path) -> None:
    vlm = vlmeval_model.ForgetkitVLM(str(model_dir), image_max_pixels=4096, max_new_tokens=3)
    message = [{"type": "image", "value": str(picture)}, {"type": "text", "value": "What colour is it?"}]
    answer = vlm.generate(message, dataset=TINY_MMMU)
    assert isinstance(answer, str)
    assert vlm.generate(message, dataset=TINY_MMMU) == answer, "greedy decoding must repeat itself"
    assert vlm.generation_config.do_sample is False and vlm.generation_config.repetition_penalty == 1.0
    assert next(vlm.model.parameters()).device.type == "cpu"
    assert vlm.model.config._attn_implementation == "sdpa"


def test_image_limits_default_to_vlmevalkits_own_entry_for_the_model(
    vlmeval_model, model_dir: Path, tmp_path: Path
) -> None:
    """VLMEvalKit's Qwen2.5-VL entries gave the paper's zero-shot MMMU/VMCBench; LLaVA's set no limits."""
    assert vlmeval_model.vlmeval_pixel_limits("Qwen2.5-VL-3B-Instruct") == (1280 * 28 * 28, 16384 * 28 * 28)
    assert vlmeval_model.vlmeval_pixel_limits("llava_v1.5_7b") == (None, None)
    vlm = vlmeval_model.ForgetkitVLM(str(model_dir), vlmeval_entry="Qwen2.5-VL-7B-Instruct", image_max_pixels=4096)
    assert (vlm.image_min_pixels, vlm.image_max_pixels) == (1280 * 28 * 28, 4096)  # a given limit wins
    small = Image.new("RGB", (100, 50))
    assert vlmeval_model.fit_pixels(small, 16384 * 28 * 28, 1280 * 28 * 28).size == (1416, 708)
    assert vlmeval_model.fit_pixels(small, None, None).size == (100, 50)
    with pytest.raises(ForgetkitError, match="VLMEvalKit has no model 'Qwen9'"):
        vlmeval_model.vlmeval_pixel_limits("Qwen9")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_s_checkpoint_answers_a_vlmevalkit_message(
    vlmeval_model, family: str, picture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each family's stand-in, loaded as its transformers class, gets the picture as its own image tokens."""
    vlm = vlmeval_model.ForgetkitVLM(str(tiny_model_dir(family=family)), kind=family, max_new_tokens=3)
    assert type(vlm.model).__name__ == FAMILIES[family].hf_class
    seen: list[dict] = []
    generate = vlm.model.generate
    monkeypatch.setattr(vlm.model, "generate", lambda **inputs: seen.append(inputs) or generate(**inputs))

    answer = vlm.generate([{"type": "image", "value": str(picture)}, {"type": "text", "value": "Colour?"}])

    assert isinstance(answer, str)
    (inputs,) = seen
    assert inputs["pixel_values"].numel() > 0
    image_token = vlm.model.config.image_token_id if family != "llava" else vlm.model.config.image_token_index
    assert int((inputs["input_ids"] == image_token).sum()) >= 9


def test_lora_adapter_is_merged_into_the_base(vlmeval_model, model_dir: Path, tmp_path: Path, picture: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration

    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    original = base.model.language_model.layers[0].self_attn.q_proj.weight.detach().clone()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    vlm = vlmeval_model.ForgetkitVLM(str(model_dir), adapter=str(tmp_path / "adapter"), max_new_tokens=2)
    merged = vlm.model.model.language_model.layers[0].self_attn.q_proj
    assert type(merged) is torch.nn.Linear, "the adapter must be merged, not left as LoRA layers"
    assert not torch.allclose(merged.weight, original)
    assert isinstance(vlm.generate([{"type": "image", "value": str(picture)}, {"type": "text", "value": "?"}]), str)


def test_fit_pixels_keeps_images_within_trainings_limits(vlmeval_model) -> None:
    big = vlmeval_model.fit_pixels(Image.new("L", (400, 100)), max_pixels=4096, min_pixels=1024)
    assert big.mode == "RGB" and big.width * big.height <= 4096 and big.width == 4 * big.height
    small = vlmeval_model.fit_pixels(Image.new("RGB", (20, 10)), max_pixels=4096, min_pixels=1024)
    assert small.size == (45, 22)
    same = vlmeval_model.fit_pixels(Image.new("RGB", (50, 40)), max_pixels=4096, min_pixels=1024)
    assert same.size == (50, 40)


def test_seeded_vmcbench_scores_unparseable_answers_the_same_every_time(
    vlmeval_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    lmu = tmp_path / "LMUData"
    write_vmcbench_tsv(lmu)
    monkeypatch.setenv("LMUData", str(lmu))
    dataset = vlmeval_model.SeededVMCBench(dataset=TINY_VMCBENCH)
    predictions = dataset.data.drop(columns=["image"]).assign(prediction="no letter here")

    def hits(evaluate, state: int) -> list[int]:
        pred = tmp_path / f"pred{state}.xlsx"
        predictions.to_excel(pred, index=False)
        random.seed(state)
        evaluate(dataset, str(pred))
        return list(pd.read_excel(tmp_path / f"pred{state}_result.xlsx")["hit"])

    assert hits(vlmeval_model.SeededVMCBench.evaluate, 1) == hits(vlmeval_model.SeededVMCBench.evaluate, 2)
    unseeded = vlmeval_model.VMCBenchDataset.evaluate
    assert hits(unseeded, 1) != hits(unseeded, 2), "the answers must reach VMCBench's random fallback"
