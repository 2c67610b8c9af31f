"""Every export loads in the tool that consumes it: LLaMA-Factory's dataset loader and VLMEvalKit's MCQ loader."""

import io
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.exporters import write_vlmeval_tsv
from forgetkit.fixtures.lf_loader import load_with_llamafactory
from forgetkit.records import MCQRecord
from forgetkit.stages.vlmeval.runner import EMPTY_IS_MISSING, texts_kept


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


NA_LOOKING_TEXTS = (("NA", "None", "null", "nan"), ("N/A", "<NA>", "#N/A", "NULL"))
"""Option and class texts pandas reads as missing by default (VLMEvalKit reads every table that way)."""


def test_option_and_class_texts_pandas_calls_missing_reach_vlmevalkits_prompt_and_scoring_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside forgetkit's VLMEvalKit runner (`texts_kept`) the TSV round-trips every text, through VLMEvalKit's own
    loader, prompt, prediction sheet and matcher."""
    lmu = tmp_path / "LMUData"
    lmu.mkdir()
    picture = tmp_path / "red.png"
    PILImage.new("RGB", (28, 28), (200, 20, 20)).save(picture)
    rows = [
        MCQRecord(f"odd/{n}", "red.png", "Which text?", texts, "BC"[n], texts[n + 1], "odd")
        for n, texts in enumerate(NA_LOOKING_TEXTS)
    ]
    write_vlmeval_tsv(rows, lmu / "odd_texts.tsv", lambda _: picture)
    monkeypatch.setenv("LMUData", str(lmu))
    from vlmeval.dataset import build_dataset
    from vlmeval.smp import dump

    assert build_dataset("odd_texts").data[list("ABCD")].isna().all(axis=None), "VLMEvalKit alone loses them"
    with texts_kept():
        dataset = build_dataset("odd_texts")
        for n, row in enumerate(rows):
            _, text = dataset.build_prompt(n)
            lines = "".join(f"{letter}. {option}\n" for letter, option in zip("ABCD", row.options))
            assert f"Options:\n{lines}Please select" in text["value"]
        assert dataset.data["category"].tolist() == [row.class_label for row in rows]
        dump(dataset.data.drop(columns=["image"]).assign(prediction=dataset.data["answer"]), str(tmp_path / "p.xlsx"))
        scores = dataset.evaluate(str(tmp_path / "p.xlsx"), model="exact_matching", nproc=1)
    assert float(scores["Overall"].iloc[0]) == 1.0
    result = pd.read_excel(tmp_path / "p_exact_matching_result.xlsx", **EMPTY_IS_MISSING)
    assert result[list("ABCD")].values.tolist() == [list(row.options) for row in rows]
    assert pd.read_csv(io.StringIO("A\nNA\n"))["A"].isna().all(), "pandas is itself again outside"
