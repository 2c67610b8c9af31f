"""`forgetkit build-data bsccm-vqa` on a tiny BSCCM written in the real on-disk layout the `bsccm` package reads."""

import io
import json
import re
import shutil
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.bsccm_vqa import CHANNELS, CLASS_NAMES, FIXED_OPTIONS, QUESTIONS, channel_type, to_uint8
from datasets_builders.rare_domains import INSTRUCTIONS
from forgetkit.errors import ForgetkitError

GATES = (  # BSCCM's ten cell-type gates, in the column order of BSCCM_surface_markers.csv
    "selection_gated_CD3_hi_CD_16_lo",
    "selection_gated_CD16_hi_CD45_mid",
    "selection_gated_CD16_hi_CD45_lomid",
    "selection_gated_CD16_hi_CD45_lo",
    "selection_gated_CD16_lo_CD45_lo",
    "selection_gated_CD16_none_CD45_mid_and_hi",
    "selection_gated_CD45_mid_CD_16_mid",
    "selection_gated_CD45_hi_CD_16_lo",
    "selection_gated_CD45_hi_CD_16_mid",
    "selection_gated_CD45_hi_CD_16_hi",
)
FLUOR = ("Fluor_690-", "Fluor_627-673", "Fluor_585-625", "Fluor_550-570", "Fluor_500-550", "Fluor_426-446")
CELL_CLASS = {100 + i: i % 10 for i in range(24)}  # 24 gated cells: classes 0-3 three times, 4-9 twice
UNGATED = [7, 8, 9, 10, 11]  # batch 1 cells: no gate, no label
AMBIGUOUS = 200  # in two gates at once
BRIGHT_CELL = 100  # its Brightfield plane spans the whole 12-bit range
SIZE = 12
ASKED = ("Brightfield", "DF_50", "DF_70_Bottom", "DPC_Left", "LED119")  # one channel of each kind keeps the tests fast
RELEASED_PROMPT = (
    "<image>\nWhat type of white blood cell is shown in this dark field (50\u00b0 illumination) microscopy image?\n"
    "A. {}\nB. {}\nC. {}\nD. {}\nE. {}\nF. {}\n\nPlease answer with a single letter (A, B, C, D, E or F)."
)
"""bsccm_to_vqa.py@16d5831: its first question template with _get_channel_description('DF_50'), then
"\\n".join() of the option lines and "\\nPlease answer with a single letter (A, B, C, D, E or F).", the LF
prompt column as is."""
PAPER_PROMPT = (
    "<image>\nWhat type of white blood cell is shown in this dark field (50 illumination) microscopy image?\n"
    "A. {}\nB. {}\nC. {}\nD. {}\nE. {}\nF. {}\nPlease answer with a single letter (A, B, C, D, E or F)"
)


def write_bsccm(root: Path) -> Path:
    """BSCCM-tiny's layout: global metadata JSON, index CSV, surface-marker CSV, zarr v2 image store."""
    root.mkdir(parents=True)
    metadata = {
        "name": "BSCCM-tiny",
        "led_array": {
            "image_shape": [SIZE, SIZE],
            "channel_indices": {name: i for i, name in enumerate(CHANNELS)},
            "channel_names": list(CHANNELS),
            "wavelength_nm": 515,
            "pixel_size_um": 0.3733,
        },
        "fluorescence": {"channel_names": list(FLUOR)},
    }
    (root / "BSCCM_global_metadata.json").write_text(json.dumps(metadata))
    cells = sorted([*CELL_CLASS, *UNGATED, AMBIGUOUS])
    all_path = "antibodies_all/batch_0/slide_replicate_0"
    paths = ["antibodies_CD45/batch_1/slide_replicate_0" if c in UNGATED else all_path for c in cells]
    pd.DataFrame(
        {
            "global_index": cells,
            "position_in_fov_y_pix": 600,
            "position_in_fov_x_pix": 700,
            "detection_radius": 20.48,
            "has_matched_histology_cell": False,
            "fov_center_x": -45523.16,
            "fov_center_y": 35464.52,
            "fov_center_z": 40782.16,
            "batch": [1 if c in UNGATED else 0 for c in cells],
            "antibodies": ["CD45" if c in UNGATED else "all" for c in cells],
            "imaging_date": "9/12/18",
            "data_path": paths,
            "slide_replicate": 0,
        }
    ).to_csv(root / "BSCCM_index.csv", index=False)
    markers = pd.DataFrame({"global_index": cells, "CD45_full_model_unmixed": 1.0})
    for gate_index, gate in enumerate(GATES):
        markers[gate] = [CELL_CLASS.get(c) == gate_index or (c == AMBIGUOUS and gate_index in (1, 2)) for c in cells]
    markers.to_csv(root / "BSCCM_surface_markers.csv", index=False)

    store = zarr.open_group(root / "BSCCM_images.zarr", mode="w", zarr_format=2)
    blosc = numcodecs.Blosc(cname="zstd", clevel=9, shuffle=numcodecs.Blosc.SHUFFLE)
    rng = np.random.default_rng(0)
    for cell, path in zip(cells, paths):
        led = rng.integers(0, 4096, (len(CHANNELS), SIZE, SIZE), dtype=np.uint16)
        if cell == BRIGHT_CELL:
            led[0] = np.linspace(0, 4095, SIZE * SIZE).astype(np.uint16).reshape(SIZE, SIZE)
        fluor = rng.integers(0, 4096, (len(FLUOR), SIZE, SIZE), dtype=np.uint16)
        for contrast, data in (("led_array", led), ("fluor", fluor)):
            store.create_array(f"{path}/{contrast}/cell_{cell}", data=data, chunks=(1, SIZE, SIZE), compressors=blosc)
        store.create_array(f"{path}/dpc/cell_{cell}", data=rng.random((SIZE, SIZE), dtype=np.float32))
    return root


@pytest.fixture(scope="module")
def bsccm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bsccm(tmp_path_factory.mktemp("bsccm") / "BSCCM-tiny")


def build(source: Path, out: Path, split: str = "test", **overrides) -> list[dict]:
    params = {"train_fraction": "0.5", "channels": ",".join(ASKED), **overrides.pop("params", {})}
    run_builder("bsccm-vqa", BuildOptions(source=source, out=out, split=split, params=params, **overrides))
    return records(out, split)


@pytest.fixture(scope="module")
def built(bsccm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build(bsccm, out)
    build(bsccm, out, split="train")
    return out


def records(out: Path, split: str = "test") -> list[dict]:
    return [json.loads(line) for line in (out / f"bsccm_vqa_{split}.records.jsonl").read_text().splitlines()]


def cell_of(row: dict) -> int:
    """Record ids are bsccm_vqa_<split>/cell_<global index>/<channel>."""
    return int(row["id"].split("/")[1].removeprefix("cell_"))


def test_every_cell_and_channel_is_a_six_option_question_with_the_truth_once(built: Path) -> None:
    rows = records(built)
    assert len(rows) == 14 * len(ASKED)
    for row in rows:
        options = row["options"]
        assert len(options) == 6 and len(set(options)) == 6
        assert options.count(row["class_label"]) == 1
        assert row["answer_text"] == row["class_label"] == CLASS_NAMES[CELL_CLASS[cell_of(row)]]
        assert set(FIXED_OPTIONS) <= set(options)
        assert set(options) - set(FIXED_OPTIONS) <= set(CLASS_NAMES)
    assert {row["answer"] for row in rows} == set("ABCDEF")


def test_questions_use_the_papers_wordings_for_the_images_channel_and_end_with_the_suffix(built: Path) -> None:
    rows = records(built)
    wordings = set()
    for row in rows:
        channel = row["id"].rsplit("/", 1)[1]
        assert row["image"].startswith(f"images/bsccm/camera/{channel}/")
        assert row["instruction"] == INSTRUCTIONS["released"]
        matches = [q for q in QUESTIONS if q.format(channel_type=channel_type(channel)) == row["question"]]
        assert len(matches) == 1, row["question"]
        wordings.add(matches[0])
    assert wordings == set(QUESTIONS)


def test_channel_types_are_spelled_as_the_released_builder_spells_them_or_as_the_paper() -> None:
    assert channel_type("Brightfield") == "brightfield"
    assert channel_type("DF_50") == "dark field (50\u00b0 illumination)"
    assert channel_type("DF_70_Bottom") == "dark field (70\u00b0 bottom illumination)"
    assert channel_type("DF_80_Right") == "dark field (80\u00b0 right illumination)"
    assert channel_type("DPC_Left") == "differential phase contrast (left illumination)"
    assert channel_type("LED119") == "LED119 illumination"
    assert channel_type("DF_50", "paper") == "dark field (50 illumination)"
    assert channel_type("DF_70_Bottom", "paper") == "dark field (70 bottom illumination)"
    assert len({channel_type(c) for c in CHANNELS}) == len({channel_type(c, "paper") for c in CHANNELS}) == 23


def prompts(out: Path) -> list[str]:
    """The LF prompts of the test split whose wording is the first template."""
    contents = [row["messages"][0]["content"] for row in json.loads((out / "bsccm_vqa_test.json").read_text())]
    return [content for content in contents if content.startswith("<image>\nWhat type of white blood cell")]


def test_prompt_is_the_released_builders_byte_for_byte_or_the_papers(bsccm: Path, tmp_path: Path) -> None:
    build(bsccm, tmp_path / "released", params={"channels": "DF_50"})
    build(bsccm, tmp_path / "paper", params={"channels": "DF_50", "prompt": "paper"})
    for layout, expected in (("released", RELEASED_PROMPT), ("paper", PAPER_PROMPT)):
        found = prompts(tmp_path / layout)
        assert found
        for content in found:
            assert content == expected.format(*(line[3:] for line in content.splitlines()[2:8]))


def test_train_and_test_split_the_labelled_cells_per_class(built: Path) -> None:
    cells = {split: {cell_of(row) for row in records(built, split)} for split in ("train", "test")}
    assert not cells["train"] & cells["test"]
    assert cells["train"] | cells["test"] == set(CELL_CLASS)
    test_classes = [CELL_CLASS[c] for c in cells["test"]]
    assert sorted(test_classes) == sorted([0, 1, 2, 3] * 2 + list(range(4, 10)))  # floor(n/2) of each class in train


def test_unlabelled_and_two_gate_cells_are_skipped_and_counted(built: Path) -> None:
    manifest = json.loads((built / "bsccm_vqa_test.manifest.json").read_text())
    assert manifest["unlabelled_cells"] == len(UNGATED)
    assert manifest["ambiguous_cells"] == 1
    assert manifest["cells"] == 14
    assert manifest["counts"]["skipped"] == 0


def test_images_are_jpegs_at_pils_default_quality_of_the_released_8_bit_scale(built: Path) -> None:
    rows = [r for r in records(built, "train") + records(built) if r["id"].endswith(f"cell_{BRIGHT_CELL}/Brightfield")]
    assert rows[0]["image"].endswith(f"/cell_{BRIGHT_CELL}.jpg")
    plane = np.linspace(0, 4095, SIZE * SIZE).astype(np.uint16).reshape(SIZE, SIZE)
    released = io.BytesIO()  # bsccm_to_vqa.py@16d5831: (image / 4095.0 * 255).astype(np.uint8), Image.save("....jpg")
    Image.fromarray((plane / 4095.0 * 255).astype(np.uint8)).save(released, format="JPEG")
    assert (built / rows[0]["image"]).read_bytes() == released.getvalue()
    with Image.open(built / rows[0]["image"]) as image:
        assert image.format == "JPEG" and image.mode == "L" and image.size == (SIZE, SIZE)


def test_normalisation_keeps_the_camera_scale_or_stretches_each_image_and_truncates() -> None:
    plane = np.array([[0, 100], [2000, 5000]], dtype=np.uint16)
    assert to_uint8(plane, "camera").tolist() == [[0, 6], [124, 255]]  # 2000 / 4095 * 255 = 124.5
    assert to_uint8(plane, "minmax").tolist() == [[0, 5], [102, 255]]
    assert to_uint8(np.array([[-1.0, 1.0]], dtype=np.float32), "camera").tolist() == [[0, 255]]
    assert to_uint8(np.full((2, 2), 7, dtype=np.uint16), "minmax").tolist() == [[0, 0], [0, 0]]


def test_lf_rows_and_tsv_carry_six_lettered_options(built: Path) -> None:
    for row in json.loads((built / "bsccm_vqa_test.json").read_text()):
        lines = row["messages"][0]["content"].removeprefix("<image>\n").splitlines()
        assert lines[-2:] == ["", "Please answer with a single letter (A, B, C, D, E or F)."]
        assert [line[:3] for line in lines[1:-2]] == ["A. ", "B. ", "C. ", "D. ", "E. ", "F. "]
        assert row["messages"][1]["content"] in "ABCDEF"
    header = (built / "bsccm_vqa_test.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["index", "image", "question", "A", "B", "C", "D", "E", "F", "answer", "category"]


def test_same_seed_gives_identical_bytes_and_reuses_images(built: Path, bsccm: Path, tmp_path: Path) -> None:
    again = built.with_name(built.name + "-again")
    build(bsccm, again)
    for name in ("bsccm_vqa_test.json", "bsccm_vqa_test.tsv", "bsccm_vqa_test.records.jsonl"):
        assert (again / name).read_bytes() == (built / name).read_bytes()
    image = again / records(again)[0]["image"]
    image.write_bytes(b"kept")
    build(bsccm, again)
    assert image.read_bytes() == b"kept"
    other_seed = build(bsccm, tmp_path / "seed1", seed=1)
    assert [r["options"] for r in other_seed] != [r["options"] for r in records(built)]


def test_all_23_channels_by_default_and_limit_takes_a_seeded_subset(bsccm: Path, tmp_path: Path) -> None:
    options = BuildOptions(source=bsccm, out=tmp_path / "all", split="test", limit=40)
    run_builder("bsccm-vqa", options)
    manifest = json.loads((tmp_path / "all" / "bsccm_vqa_test.manifest.json").read_text())
    assert manifest["channels"] == list(CHANNELS) and manifest["counts"]["records"] == 40
    rows = build(bsccm, tmp_path / "a", params={"channels": "DPC_Left,DF_50"})
    assert len(rows) == 14 * 2
    assert all(
        re.search(r"(differential phase contrast \(left|dark field \(50\u00b0) illumination\)", r["question"])
        for r in rows
    )
    limited = build(bsccm, tmp_path / "b", limit=7, seed=3)
    assert len(limited) == 7
    assert limited == build(bsccm, tmp_path / "c", limit=7, seed=3)


def test_unreadable_plane_is_skipped_and_listed_or_fatal_with_strict(bsccm: Path, tmp_path: Path) -> None:
    source = tmp_path / "BSCCM-tiny"
    shutil.copytree(bsccm, source)
    broken = cell_of(build(bsccm, tmp_path / "probe", params={"channels": "DF_55"})[0])
    led_array = source / "BSCCM_images.zarr/antibodies_all/batch_0/slide_replicate_0/led_array"
    (led_array / f"cell_{broken}" / f"{CHANNELS.index('DF_55')}.0.0").write_bytes(b"not a blosc chunk")
    rows = build(source, tmp_path / "out", params={"channels": "DF_55"})
    assert len(rows) == 13 and broken not in {cell_of(r) for r in rows}
    manifest = json.loads((tmp_path / "out" / "bsccm_vqa_test.manifest.json").read_text())
    assert [s["item"] for s in manifest["skipped"]] == [f"cell_{broken}/DF_55"]
    with pytest.raises(ForgetkitError, match=f"cell_{broken}/DF_55: cannot read image"):
        build(source, tmp_path / "strict", params={"channels": "DF_55"}, strict=True)
    assert not (tmp_path / "strict" / "bsccm_vqa_test.json").exists()


def test_bad_input_gets_a_clear_error(bsccm: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match="--split train or --split test"):
        build(bsccm, tmp_path, split="val")
    with pytest.raises(ForgetkitError, match="'DF_51' is not one of the paper's 23 channels"):
        build(bsccm, tmp_path, params={"channels": "DF_50,DF_51"})
    with pytest.raises(ForgetkitError, match="--limit must be at least 1"):
        build(bsccm, tmp_path, limit=0)
    with pytest.raises(ForgetkitError, match="train_fraction=1.5 must be a number between 0 and 1"):
        build(bsccm, tmp_path, params={"train_fraction": "1.5"})
    source = tmp_path / "no-markers"
    shutil.copytree(bsccm, source)
    (source / "BSCCM_surface_markers.csv").unlink()
    with pytest.raises(ForgetkitError, match="no BSCCM_surface_markers.csv"):
        build(source, tmp_path)
    with pytest.raises(ForgetkitError, match="is not a BSCCM folder: BSCCM_global_metadata.json is missing"):
        build(tmp_path / "no-markers" / "BSCCM_images.zarr", tmp_path)
