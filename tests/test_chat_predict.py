"""Prediction through LLaMA-Factory's ChatModel engines (vLLM on a GPU): same answers as LF prediction.

vLLM needs a GPU, so here the stage runs LF's HF engine through the very same code; only
`infer_backend` differs.
"""

import json
from pathlib import Path

import pytest

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.recipes import CPU
from forgetkit.render import DataSpec, render_predict
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stages import llamafactory
from forgetkit.stages.chat_predict import engine_args, eval_rows
from forgetkit.stages.evaluate import Evaluation, member, settings_config
from forgetkit.study import plan
from forgetkit.tiny_model import tiny_model_dir

DATASET = "imagenet_vqa_val"
PIXELS = 4096


@pytest.fixture(scope="module")
def built(shapes: Path, offline_clip: ClipSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    names = shapes / "class_names.txt"
    build("imagenet-vqa", BuildOptions(source=shapes, out=out, split="val", class_names=names, clip=offline_clip))
    return out


def settings(data: Path, backend: str = "huggingface") -> dict:
    return {
        "backend": backend,
        "model": str(tiny_model_dir()),
        "adapter": None,
        "template": "qwen2_vl",
        "dataset_dir": str(data),
        "dataset": DATASET,
        "image_max_pixels": PIXELS,
        "cutoff_len": 512,
        "max_new_tokens": 4,
        "trust_remote_code": False,
    }


def test_rows_are_the_prompt_turns_with_images_found_in_the_data_folder(built: Path) -> None:
    rows = eval_rows(built, DATASET)
    assert len(rows) == 24
    first = rows[0]
    assert first["messages"][0]["role"] == "user" and first["messages"][0]["content"].startswith("<image>\n")
    assert first["label"] in "ABCD" and all(Path(image).is_file() for image in first["images"])


def test_decoding_is_greedy_on_both_engines(built: Path) -> None:
    args = engine_args(settings(built, "vllm"))
    assert args["infer_backend"] == "vllm" and args["temperature"] == 0.0 and args["do_sample"] is False
    assert args["image_max_pixels"] == PIXELS and "adapter_name_or_path" not in args
    lora = engine_args(settings(built) | {"adapter": "saves/lora"})
    assert lora["adapter_name_or_path"] == "saves/lora" and lora["finetuning_type"] == "lora"


@pytest.mark.parametrize(("rank", "engine_rank"), [(8, 8), (48, 64), (64, 64), (320, 320), (None, 32)])
def test_a_vllm_engine_stays_on_its_own_gpu_and_holds_the_adapters_rank(
    built: Path, tmp_path: Path, rank: int | None, engine_rank: int
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    if rank is not None:
        (adapter / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    args = engine_args(settings(built, "vllm") | {"adapter": str(adapter)})
    assert args["vllm_config"] == {"tensor_parallel_size": 1}
    assert args["vllm_max_lora_rank"] == engine_rank
    assert "vllm_config" not in engine_args(settings(built)), "LF's HF engine gets no vLLM settings"


def test_the_engine_runs_the_models_own_code_only_when_the_study_trusts_it(built: Path) -> None:
    assert engine_args(settings(built, "vllm"))["trust_remote_code"] is False
    assert engine_args(settings(built, "vllm") | {"trust_remote_code": True})["trust_remote_code"] is True


def test_answers_equal_lf_prediction_on_the_same_model(built: Path, tmp_path: Path) -> None:
    data = DataSpec(dataset_dir=str(built), image_max_pixels=PIXELS, cutoff_len=512)
    text = render_predict(tiny_model_dir(), "qwen2_vl", DATASET, data, tmp_path / "lf", CPU, max_new_tokens=4)
    llamafactory.run("train", text, tmp_path / "predict.yaml", tmp_path / "predict.log", tmp_path / "lf", "predict")
    expected = [json.loads(line) for line in (tmp_path / "lf" / "generated_predictions.jsonl").read_text().splitlines()]

    run = RunDir(tmp_path / "run").create()
    chat = member(run, "chat", "zero-shot", DATASET, settings_config(settings(built)), ())
    Evaluation(run, "zero-shot", [chat], "cpu", (), chunk_rows=10)()
    got = [json.loads(line) for line in Path(chat.target).read_text().splitlines()]
    assert [row["predict"] for row in got] == [row["predict"] for row in expected]
    assert [row["label"] for row in got] == [row["label"].strip() for row in expected]


def test_a_vllm_study_plans_the_chat_model_stage(built: Path, tmp_path: Path) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text(
        f"name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {{dataset_dir: {built}}}\n"
        f"eval: {{datasets: [{DATASET}], backend: vllm}}\nrecipes: {{r: {{steps: 2, save_steps: 2}}}}\n"
    )
    run = RunDir(tmp_path / "run")
    zero_shot = plan(load_study(spec), run)[0]
    assert [(m.kind, m.name) for m in zero_shot.action.members] == [("chat", f"predict zero-shot {DATASET}")]
    spec.write_text(spec.read_text().replace("backend: vllm", "backend: auto"))
    zero_shot = plan(load_study(spec), run)[0]
    assert [m.kind for m in zero_shot.action.members] == ["predict"], "no vLLM on a CPU study"


def test_a_dataset_missing_from_dataset_info_is_one_line_error(built: Path) -> None:
    with pytest.raises(ForgetkitError, match="dataset 'nope' is not in"):
        eval_rows(built, "nope")
