"""Every export loads in the tool that consumes it: LLaMA-Factory's dataset loader and VLMEvalKit's MCQ loader."""

import json
import os
import shutil
from pathlib import Path

import pytest

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.testing.lf_loader import load_with_llamafactory


@pytest.fixture(scope="module")
def built(shapes: Path, offline_clip: ClipSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    build(
        "imagenet-vqa",
        BuildOptions(source=shapes, out=out, split="val", class_names=shapes / "class_names.txt", clip=offline_clip),
    )
    return out


def test_llamafactory_reads_the_json_through_dataset_info(built: Path) -> None:
    rows = json.loads((built / "imagenet_vqa_val.json").read_text())
    dataset, tokenizer = load_with_llamafactory(built, "imagenet_vqa_val")
    assert len(dataset) == len(rows)
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    first = dataset[0]
    assert image_pad in first["input_ids"], "LF did not expand the image into vision tokens"
    answer = tokenizer.decode([t for t in first["labels"] if t >= 0], skip_special_tokens=True).strip()
    assert answer == rows[0]["messages"][1]["content"]


def test_vlmevalkit_reads_the_tsv_as_a_custom_mcq_set_and_scores_it(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lmu = tmp_path / "LMUData"
    lmu.mkdir()
    shutil.copy(built / "imagenet_vqa_val.tsv", lmu / "imagenet_vqa_val.tsv")
    monkeypatch.setenv("LMUData", str(lmu))
    from vlmeval.dataset import build_dataset
    from vlmeval.dataset.image_mcq import CustomMCQDataset

    dataset = build_dataset("imagenet_vqa_val")
    assert isinstance(dataset, CustomMCQDataset)
    image, text = dataset.build_prompt(0)
    assert os.path.isfile(image["value"])
    assert "What is the class of this image?" in text["value"]
    assert "\nA. " in text["value"] and "\nD. " in text["value"]

    predictions = dataset.data.drop(columns=["image"]).assign(prediction=dataset.data["answer"])
    predictions.to_excel(tmp_path / "pred.xlsx", index=False)
    scores = dataset.evaluate(str(tmp_path / "pred.xlsx"), model="exact_matching", nproc=1)
    assert float(scores["Overall"].iloc[0]) == 1.0
