"""`forgetkit build-data pitvis-vqa` on tiny videos and annotation CSVs in the PitVis-2023 release format."""

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from datasets_builders import BuildOptions
from datasets_builders import build as run_builder
from datasets_builders.pitvis_vqa import INSTRUMENTS, QUESTION
from datasets_builders.rare_domains import ANSWER_SUFFIX, sample_options
from forgetkit.errors import ForgetkitError

FPS = 24
N_FRAMES = 50  # 2.08 s: annotated seconds 0..3, as the release has one row more than whole seconds
FIXED = {INSTRUMENTS[-2], INSTRUMENTS[-1], INSTRUMENTS[0]}
INSTRUMENT1 = {1: [-1, 16, 0, -1], 2: [8, 13, 13, -1], 3: [-1, 17, 17, -1]}  # per video, per second
MAP_INSTRUMENTS = "int_instrument,str_instrument\n-1,out_of_patient\n-2,no_secondary_instrument\n" + "".join(
    f"{i},{name}\n"
    for i, name in [(0, "no_visible_instrument"), (0, "occluded_image_inside_patient")]
    + [(i, INSTRUMENTS[i]) for i in range(1, 19)]
)


def write_video(path: Path, shade: int) -> None:
    """A 64x64 H.264 MP4 at 24 fps whose frames differ, like a real (if very short) PitVis video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(N_FRAMES):
            pixels = np.full((64, 64, 3), shade, dtype=np.uint8)
            pixels[:, : i + 1] = 255 - shade
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def annotation_csv(video: int) -> str:
    rows = [f"{video},{t},{-1 if i == -1 else 5},{i},-2" for t, i in enumerate(INSTRUMENT1[video])]
    return "\n".join(["int_video,int_time,int_step,int_instrument1,int_instrument2", *rows]) + "\n"


@pytest.fixture(scope="module")
def pitvis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Figshare release's flat layout; video_19 has no annotations, as in the real release."""
    root = tmp_path_factory.mktemp("pitvis") / "26531686"
    root.mkdir()
    for video in (1, 2, 3, 19):
        write_video(root / f"video_{video:02d}.mp4", shade=10 * video)
        if video in INSTRUMENT1:
            (root / f"annotations_{video:02d}.csv").write_text(annotation_csv(video))
    (root / "map_instruments.csv").write_text(MAP_INSTRUMENTS)
    return root


def build(source: Path, out: Path, split: str = "test", **overrides) -> list[dict]:
    params = {"test_videos": "1", **overrides.pop("params", {})}
    run_builder("pitvis-vqa", BuildOptions(source=source, out=out, split=split, params=params, **overrides))
    return records(out, split)


@pytest.fixture(scope="module")
def built(pitvis: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built")
    build(pitvis, out)
    build(pitvis, out, split="train")
    return out


def records(out: Path, split: str = "test") -> list[dict]:
    return [json.loads(line) for line in (out / f"pitvis_vqa_{split}.records.jsonl").read_text().splitlines()]


def frame_of(row: dict) -> tuple[int, int]:
    """Record ids are pitvis_vqa_<split>/video_XX/frame_<index>."""
    _, video, frame = row["id"].split("/")
    return int(video.removeprefix("video_")), int(frame.removeprefix("frame_"))


def test_one_of_every_six_frames_becomes_a_question(built: Path) -> None:
    assert [frame_of(row) for row in records(built)] == [(1, i) for i in range(0, N_FRAMES, 6)]
    assert sorted({frame_of(row)[0] for row in records(built, "train")}) == [2, 3]
    assert len(records(built, "train")) == 2 * len(range(0, N_FRAMES, 6))


def test_each_frame_is_labelled_with_the_main_instrument_of_its_second(built: Path) -> None:
    for row in records(built) + records(built, "train"):
        video, index = frame_of(row)
        assert row["class_label"] == row["answer_text"] == INSTRUMENTS[INSTRUMENT1[video][index // FPS]]
        assert row["question"] == QUESTION and row["instruction"] == ANSWER_SUFFIX


def test_options_are_the_fixed_three_the_truth_and_random_instruments(built: Path) -> None:
    rows = records(built) + records(built, "train")
    for row in rows:
        options = row["options"]
        assert len(options) == 6 and len(set(options)) == 6
        assert FIXED <= set(options)
        assert options.count(row["class_label"]) == 1
        assert set(options) <= set(INSTRUMENTS.values())
        sampled = set(options) - FIXED - {row["class_label"]}
        assert len(sampled) == (3 if row["class_label"] in FIXED else 2)
    assert {r["class_label"] in FIXED for r in rows} == {True, False}


def test_synapse_sub_folders_without_a_map_file_give_the_same_questions(
    built: Path, pitvis: Path, tmp_path: Path
) -> None:
    source = tmp_path / "pitvis"
    for folder, pattern in (("videos", "video_*.mp4"), ("annotations", "annotations_*.csv")):
        (source / folder).mkdir(parents=True)
        for path in pitvis.glob(pattern):
            shutil.copy(path, source / folder / path.name)
    assert build(source, tmp_path / "out") == records(built)  # the paper's table = the map file, 0's names joined


def test_frames_are_written_as_jpegs_under_images_pitvis(built: Path) -> None:
    row = records(built)[1]
    assert row["image"] == "images/pitvis/video_01/frame_000006.jpg"
    with Image.open(built / row["image"]) as image:
        assert image.format == "JPEG" and image.size == (64, 64)
        assert np.asarray(image)[:, :7].mean() > 200 > np.asarray(image)[:, 8:].mean()  # frame 6 is white up to x=6


def test_lf_json_has_six_lettered_options_and_tsv_six_columns(built: Path) -> None:
    for row in json.loads((built / "pitvis_vqa_test.json").read_text()):
        lines = row["messages"][0]["content"].removeprefix("<image>\n").splitlines()
        assert [line[:3] for line in lines[1:-1]] == ["A. ", "B. ", "C. ", "D. ", "E. ", "F. "]
        assert lines[-1] == ANSWER_SUFFIX
    header = (built / "pitvis_vqa_test.tsv").read_text().splitlines()[0].split("\t")
    assert header[3:9] == list("ABCDEF")


def test_the_manifest_lists_the_video_without_annotations(built: Path) -> None:
    manifest = json.loads((built / "pitvis_vqa_train.manifest.json").read_text())
    assert manifest["videos"] == [2, 3] and manifest["videos_without_annotations"] == ["video_19"]
    assert manifest["every"] == 6 and manifest["frames_without_label"] == 0


def test_same_seed_gives_identical_bytes_and_reuses_written_frames(built: Path, pitvis: Path) -> None:
    again = built.with_name(built.name + "-again")
    build(pitvis, again)
    for name in ("pitvis_vqa_test.json", "pitvis_vqa_test.tsv", "pitvis_vqa_test.records.jsonl"):
        assert (again / name).read_bytes() == (built / name).read_bytes()
    frame = again / "images/pitvis/video_01/frame_000012.jpg"
    frame.write_bytes(b"kept")
    build(pitvis, again, tsv=False)
    assert frame.read_bytes() == b"kept"


def test_every_and_limit(pitvis: Path, tmp_path: Path) -> None:
    rows = build(pitvis, tmp_path / "a", params={"every": "24"})
    assert [frame_of(r)[1] for r in rows] == [0, 24, 48]
    limited = build(pitvis, tmp_path / "b", split="train", limit=5, seed=2)
    assert len(limited) == 5
    assert limited == build(pitvis, tmp_path / "c", split="train", limit=5, seed=2)


def test_extracted_frame_folders_in_the_organisers_layout(pitvis: Path, tmp_path: Path) -> None:
    frames = tmp_path / "images"
    (frames / "video_01").mkdir(parents=True)
    for second in range(4):
        Image.new("RGB", (64, 64), (second * 60, 0, 0)).save(frames / "video_01" / f"{second:05d}.png")
    (frames / "video_01" / "00002.png").write_bytes(b"truncated")
    rows = build(pitvis, tmp_path / "out", params={"frames": str(frames)})
    assert [r["id"].split("/", 1)[1] for r in rows] == [
        "video_01/second_00000",
        "video_01/second_00001",
        "video_01/second_00003",
    ]
    assert [r["class_label"] for r in rows] == [INSTRUMENTS[i] for i in (-1, 16, -1)]
    assert (tmp_path / "out" / rows[1]["image"]).resolve() == (frames / "video_01" / "00001.png").resolve()
    manifest = json.loads((tmp_path / "out" / "pitvis_vqa_test.manifest.json").read_text())
    assert manifest["skipped"][0]["item"] == str(frames / "video_01" / "00002.png")


def test_malformed_rows_are_skipped_and_counted_or_fatal_with_strict(pitvis: Path, tmp_path: Path) -> None:
    source = tmp_path / "pitvis"
    shutil.copytree(pitvis, source)
    lines = annotation_csv(1).splitlines()
    lines[2] = "1,1,5,sixteen,-2"  # second 1: instrument is not a number
    lines[3] = "1,2,5,0"  # second 2: a field short
    lines += ["1,3,-1,-1,-2", "2,4,-1,-1,-2", "1,5,5,99,-2"]  # second 3 twice, another video, unknown instrument
    (source / "annotations_01.csv").write_text("\n".join(lines) + "\n")
    rows = build(source, tmp_path / "out")
    assert [frame_of(r)[1] // FPS for r in rows] == [0, 0, 0, 0]
    manifest = json.loads((tmp_path / "out" / "pitvis_vqa_test.manifest.json").read_text())
    assert {s["item"]: s["reason"] for s in manifest["skipped"]} == {
        "annotations_01.csv:3": "a field is not an integer",
        "annotations_01.csv:4": "4 fields, the header has 5",
        "annotations_01.csv:5": "second 3 is annotated more than once",
        "annotations_01.csv:6": "second 3 is annotated more than once",
        "annotations_01.csv:7": "int_video is not 1",
        "annotations_01.csv:8": "int_instrument1 is not a known instrument id",
    }
    assert manifest["frames_without_label"] == 5
    with pytest.raises(ForgetkitError, match="annotations_01.csv:3: a field is not an integer"):
        build(source, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "pitvis_vqa_test.json").exists()


def test_unreadable_or_missing_video_is_skipped_and_counted_or_fatal_with_strict(pitvis: Path, tmp_path: Path) -> None:
    source = tmp_path / "pitvis"
    shutil.copytree(pitvis, source)
    (source / "video_02.mp4").write_bytes(b"not an mp4")
    (source / "video_03.mp4").unlink()
    rows = build(source, tmp_path / "out", params={"test_videos": "1,2,3"})
    assert {frame_of(r)[0] for r in rows} == {1}
    manifest = json.loads((tmp_path / "out" / "pitvis_vqa_test.manifest.json").read_text())
    assert {s["item"]: s["reason"][:20] for s in manifest["skipped"]} == {
        "video_02.mp4": "cannot read video: [",
        "video_03.mp4": "annotations_03.csv h",
    }
    with pytest.raises(ForgetkitError, match="video_02.mp4: cannot read video"):
        build(source, tmp_path / "strict", params={"test_videos": "1,2"}, strict=True)


def test_bad_input_gets_a_clear_error(pitvis: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError, match="--split train or --split test"):
        build(pitvis, tmp_path, split="val")
    with pytest.raises(ForgetkitError, match="no annotated video is in the test split"):
        build(pitvis, tmp_path, params={"test_videos": "7"})
    with pytest.raises(ForgetkitError, match="every: '0' is not a positive whole number"):
        build(pitvis, tmp_path, params={"every": "0"})
    with pytest.raises(ForgetkitError, match="frames=.*missing is not a folder"):
        build(pitvis, tmp_path, params={"frames": str(tmp_path / "missing")})
    with pytest.raises(ForgetkitError, match="every applies to decoded videos"):
        build(pitvis, tmp_path, params={"frames": str(tmp_path), "every": "6"})
    source = tmp_path / "pitvis"
    shutil.copytree(pitvis, source)
    (source / "annotations_01.csv").write_text("video,time,instrument\n1,0,16\n")
    with pytest.raises(ForgetkitError, match="annotations_01.csv: no column int_video; PitVis annotations have"):
        build(source, tmp_path / "out")
    (source / "map_instruments.csv").write_text("id,name\n1,suction\n")
    with pytest.raises(ForgetkitError, match="map_instruments.csv: expected the header int_instrument,str_instrument"):
        build(source, tmp_path / "out")


def test_sampled_options_follow_the_papers_counts_and_place_the_answer_uniformly() -> None:
    truth = np.tile(np.arange(21), 600)
    fixed, pool = [0, 1, 2], list(range(3, 21))
    options, answers = sample_options(truth, pool, fixed, np.random.default_rng(0))
    assert (options[np.arange(len(truth)), answers] == truth).all()
    assert all(len(set(row)) == 6 and {0, 1, 2} <= set(row) for row in options.tolist())
    sampled = (options >= 3).sum(axis=1)
    assert (sampled[truth < 3] == 3).all() and (sampled[truth >= 3] == 3).all()  # truth + 2 random, or 3 random
    assert np.bincount(answers, minlength=6).min() > len(truth) / 6 * 0.9
    again = sample_options(truth, pool, fixed, np.random.default_rng(0))
    assert (again[0] == options).all() and (again[1] == answers).all()
