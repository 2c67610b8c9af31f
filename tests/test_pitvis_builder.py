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
from datasets_builders.rare_domains import INSTRUCTIONS, sample_options
from forgetkit.errors import ForgetkitError

FPS = {1: 24, 2: 24, 3: 25, 19: 24}  # video_03 runs at 25 fps, as video_24 of the release does
N_FRAMES = 300  # 12.5 s at 24 fps: the annotations' last seconds fall past the end
STRIPE, BITS = 7, 9  # each frame shows its own number in binary, one 7-pixel stripe per bit
FIXED = {INSTRUMENTS[-2], INSTRUMENTS[-1], INSTRUMENTS[0]}
INSTRUMENT1 = {  # per video, per second 0..18
    1: [-1, 16, 0, -1, 16, 16, 13, 13, 13, 0, 0, -2, 17, 17, 5, 5, -1, -1, 8],
    2: [8, 13, 13, -1, 2, 2, 0, 0, 4, 4, 4, 9, 9, -1, 11, 11, 12, 12, 16],
    3: [-1, 17, 17, -1, 1, 1, 14, 14, 3, 3, 18, 18, 0, 0, 7, 7, 10, 10, 15],
}
MAP_INSTRUMENTS = "int_instrument,str_instrument\n-1,out_of_patient\n-2,no_secondary_instrument\n" + "".join(
    f"{i},{name}\n"
    for i, name in [(0, "no_visible_instrument"), (0, "occluded_image_inside_patient")]
    + [(i, INSTRUMENTS[i]) for i in range(1, 19)]
)
RELEASED_PROMPT = (
    "<image>\nWhat is the major surgical instrument being used in this frame?\n"
    "A. {}\nB. {}\nC. {}\nD. {}\nE. {}\nF. {}\n\nPlease answer with a single letter (A, B, C, D, E or F)."
)
"""surgical_to_vqa.py@16d5831: its question_template, then "\\n".join() of the option lines and
"\\nPlease answer with a single letter (A, B, C, D, E or F).", the LF prompt column as is."""
PAPER_PROMPT = (
    "<image>\nWhat is the major surgical instrument being used in this frame?\n"
    "A. {}\nB. {}\nC. {}\nD. {}\nE. {}\nF. {}\nPlease answer with a single letter (A, B, C, D, E or F)"
)


def write_video(path: Path, fps: int) -> None:
    """A 64x64 H.264 MP4 whose frame i shows i in binary, so a test can tell which frame an image is."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(N_FRAMES):
            pixels = np.zeros((64, 64, 3), dtype=np.uint8)
            for bit in range(BITS):
                if i >> bit & 1:
                    pixels[:, bit * STRIPE : (bit + 1) * STRIPE] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def frame_number(path: Path) -> int:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    return sum(1 << bit for bit in range(BITS) if pixels[:, bit * STRIPE + 2 : (bit + 1) * STRIPE - 2].mean() > 128)


def annotation_csv(video: int) -> str:
    rows = [f"{video},{t},{-1 if i == -1 else 5},{i},-2" for t, i in enumerate(INSTRUMENT1[video])]
    return "\n".join(["int_video,int_time,int_step,int_instrument1,int_instrument2", *rows]) + "\n"


@pytest.fixture(scope="module")
def pitvis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Figshare release's flat layout; video_19 has no annotations, as in the real release."""
    root = tmp_path_factory.mktemp("pitvis") / "26531686"
    root.mkdir()
    for video, fps in FPS.items():
        write_video(root / f"video_{video:02d}.mp4", fps)
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


def manifest(out: Path, split: str = "test") -> dict:
    return json.loads((out / f"pitvis_vqa_{split}.manifest.json").read_text())


def item_of(row: dict) -> tuple[int, str, int]:
    """Record ids are pitvis_vqa_<split>/video_XX/second_<int_time> (rows) or .../frame_<index> (frames)."""
    _, video, item = row["id"].split("/")
    kind, number = item.split("_")
    return int(video.removeprefix("video_")), kind, int(number)


def image_frame(row: dict) -> int:
    """Decoded frames are written as images/pitvis/mjpeg-q2/video_XX/frame_<index>.jpg."""
    return int(row["image"].rsplit("_", 1)[1].removesuffix(".jpg"))


def test_released_sampling_asks_about_every_sixth_row_shown_by_the_frame_at_its_second_over_24(built: Path) -> None:
    test, train = records(built), records(built, "train")
    assert [item_of(row) for row in test] == [(1, "second", s) for s in (0, 6, 12, 18)]
    assert [item_of(row) for row in train] == [(v, "second", s) for v in (2, 3) for s in (0, 6, 12, 18)]
    # ffmpeg -ss int_time/24: frame int_time at 24 fps; the first frame at or after it at 25 fps (6.25 -> 7)
    assert [image_frame(row) for row in test + train] == [0, 6, 12, 18] * 2 + [0, 7, 13, 19]
    for row in test + train:
        video, _, second = item_of(row)
        assert row["class_label"] == row["answer_text"] == INSTRUMENTS[INSTRUMENT1[video][second]]
        assert frame_number(built / row["image"]) == image_frame(row)
    assert manifest(built)["sample"] == "released" and manifest(built)["rows_without_frame"] == 0


def test_prompt_is_the_released_builders_byte_for_byte_or_the_papers(built: Path, pitvis: Path, tmp_path: Path) -> None:
    for row in json.loads((built / "pitvis_vqa_test.json").read_text()):
        options = [line[3:] for line in row["messages"][0]["content"].splitlines()[2:8]]
        assert row["messages"][0]["content"] == RELEASED_PROMPT.format(*options)
    for row in records(built):
        assert row["question"] == QUESTION and row["instruction"] == INSTRUCTIONS["released"]
    build(pitvis, tmp_path, params={"prompt": "paper"})
    for row in json.loads((tmp_path / "pitvis_vqa_test.json").read_text()):
        options = [line[3:] for line in row["messages"][0]["content"].splitlines()[2:8]]
        assert row["messages"][0]["content"] == PAPER_PROMPT.format(*options)


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


def test_seconds_sampling_shows_each_rows_own_second(pitvis: Path, tmp_path: Path) -> None:
    rows = build(pitvis, tmp_path, params={"sample": "seconds"})
    assert [item_of(row)[2] for row in rows] == [0, 6, 12]  # second 18 is past the 12.5 s video
    assert [frame_number(tmp_path / row["image"]) for row in rows] == [0, 144, 288]
    assert manifest(tmp_path)["rows_without_frame"] == 1


def test_frames_sampling_takes_one_in_six_decoded_frames_as_the_paper_says(pitvis: Path, tmp_path: Path) -> None:
    rows = build(pitvis, tmp_path, params={"sample": "frames"})
    assert [item_of(row) for row in rows] == [(1, "frame", i) for i in range(0, N_FRAMES, 6)]
    for row in rows:
        assert row["class_label"] == INSTRUMENTS[INSTRUMENT1[1][item_of(row)[2] // FPS[1]]]
    assert frame_number(tmp_path / rows[1]["image"]) == 6
    assert manifest(tmp_path)["frames_without_label"] == 0


def test_synapse_sub_folders_without_a_map_file_give_the_same_questions(
    built: Path, pitvis: Path, tmp_path: Path
) -> None:
    source = tmp_path / "pitvis"
    for folder, pattern in (("videos", "video_*.mp4"), ("annotations", "annotations_*.csv")):
        (source / folder).mkdir(parents=True)
        for path in pitvis.glob(pattern):
            shutil.copy(path, source / folder / path.name)
    assert build(source, tmp_path / "out") == records(built)  # the paper's table = the map file, 0's names joined


def test_frames_are_jpegs_encoded_as_ffmpeg_q2_encodes_them(built: Path) -> None:
    row = records(built)[1]
    assert row["image"] == "images/pitvis/mjpeg-q2/video_01/frame_000006.jpg"
    with Image.open(built / row["image"]) as image:
        assert image.format == "JPEG" and image.size == (64, 64)
        # FFmpeg's MJPEG puts the quantiser into the table: MPEG-1's intra matrix (8 16 19 22 26 27 29 34
        # on its first row) x 2 / 8, DC 8
        assert list(image.quantization[0])[:8] == [8, 4, 4, 5, 6, 6, 7, 8]


def test_lf_json_has_six_lettered_options_and_tsv_six_columns(built: Path) -> None:
    for row in json.loads((built / "pitvis_vqa_test.json").read_text()):
        lines = row["messages"][0]["content"].removeprefix("<image>\n").splitlines()
        assert [line[:3] for line in lines[1:7]] == ["A. ", "B. ", "C. ", "D. ", "E. ", "F. "]
    header = (built / "pitvis_vqa_test.tsv").read_text().splitlines()[0].split("\t")
    assert header[3:9] == list("ABCDEF")


def test_the_manifest_lists_the_video_without_annotations(built: Path) -> None:
    train = manifest(built, "train")
    assert train["videos"] == [2, 3] and train["videos_without_annotations"] == ["video_19"]
    assert train["every"] == 6 and train["prompt"] == "released"


def test_same_seed_gives_identical_bytes_and_reuses_written_frames(built: Path, pitvis: Path) -> None:
    again = built.with_name(built.name + "-again")
    build(pitvis, again)
    for name in ("pitvis_vqa_test.json", "pitvis_vqa_test.tsv", "pitvis_vqa_test.records.jsonl"):
        assert (again / name).read_bytes() == (built / name).read_bytes()
    assert (again / records(again)[2]["image"]).read_bytes() == (built / records(built)[2]["image"]).read_bytes()
    frame = again / "images/pitvis/mjpeg-q2/video_01/frame_000012.jpg"
    frame.write_bytes(b"kept")
    build(pitvis, again, tsv=False)
    assert frame.read_bytes() == b"kept"


def test_every_and_limit(pitvis: Path, tmp_path: Path) -> None:
    rows = build(pitvis, tmp_path / "a", params={"every": "3"})
    assert [item_of(r)[2] for r in rows] == [image_frame(r) for r in rows] == list(range(0, 19, 3))
    rows = build(pitvis, tmp_path / "b", params={"sample": "frames", "every": "48"})
    assert [item_of(r)[2] for r in rows] == list(range(0, N_FRAMES, 48))
    limited = build(pitvis, tmp_path / "c", split="train", limit=5, seed=2)
    assert len(limited) == 5
    assert limited == build(pitvis, tmp_path / "d", split="train", limit=5, seed=2)


def test_extracted_frame_folders_in_the_organisers_layout(pitvis: Path, tmp_path: Path) -> None:
    frames = tmp_path / "images"
    (frames / "video_01").mkdir(parents=True)
    for second in range(4):
        Image.new("RGB", (64, 64), (second * 60, 0, 0)).save(frames / "video_01" / f"{second:05d}.png")
    (frames / "video_01" / "00002.png").write_bytes(b"truncated")
    rows = build(pitvis, tmp_path / "out", params={"frames": str(frames), "sample": "seconds", "every": "1"})
    assert [r["id"].split("/", 1)[1] for r in rows] == [
        "video_01/second_00000",
        "video_01/second_00001",
        "video_01/second_00003",
    ]
    assert [r["class_label"] for r in rows] == [INSTRUMENTS[i] for i in (-1, 16, -1)]
    assert (tmp_path / "out" / rows[1]["image"]).resolve() == (frames / "video_01" / "00001.png").resolve()
    written = manifest(tmp_path / "out")
    assert written["skipped"][0]["item"] == str(frames / "video_01" / "00002.png")
    assert written["rows_without_frame"] == 15  # seconds 4..18 have no extracted frame


def test_malformed_rows_are_skipped_and_counted_or_fatal_with_strict(pitvis: Path, tmp_path: Path) -> None:
    source = tmp_path / "pitvis"
    shutil.copytree(pitvis, source)
    lines = annotation_csv(1).splitlines()
    lines[2] = "1,1,5,sixteen,-2"  # second 1: instrument is not a number
    lines[3] = "1,2,5,0"  # second 2: a field short
    lines[7] = "1,6,5,99,-2"  # second 6, a sampled row: unknown instrument
    lines.insert(4, "")  # a blank line is no row: the stride still lands on seconds 0, 6, 12, 18
    lines += ["1,3,-1,-1,-2", "2,4,-1,-1,-2"]  # second 3 twice, another video
    (source / "annotations_01.csv").write_text("\n".join(lines) + "\n")
    rows = build(source, tmp_path / "out")
    assert [item_of(r)[2] for r in rows] == [0, 12, 18]  # the bad sampled row is dropped, not replaced
    assert {s["item"]: s["reason"] for s in manifest(tmp_path / "out")["skipped"]} == {
        "annotations_01.csv:3": "a field is not an integer",
        "annotations_01.csv:4": "4 fields, the header has 5",
        "annotations_01.csv:6": "second 3 is annotated more than once",
        "annotations_01.csv:9": "int_instrument1 is not a known instrument id",
        "annotations_01.csv:22": "second 3 is annotated more than once",
        "annotations_01.csv:23": "int_video is not 1",
    }
    build(source, tmp_path / "frames", params={"sample": "frames"})
    assert manifest(tmp_path / "frames")["frames_without_label"] == 4 * 4  # seconds 1, 2, 3, 6: 4 frames each
    with pytest.raises(ForgetkitError, match="annotations_01.csv:3: a field is not an integer"):
        build(source, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict" / "pitvis_vqa_test.json").exists()


def test_unreadable_or_missing_video_is_skipped_and_counted_or_fatal_with_strict(pitvis: Path, tmp_path: Path) -> None:
    source = tmp_path / "pitvis"
    shutil.copytree(pitvis, source)
    (source / "video_02.mp4").write_bytes(b"not an mp4")
    (source / "video_03.mp4").unlink()
    rows = build(source, tmp_path / "out", params={"test_videos": "1,2,3"})
    assert {item_of(r)[0] for r in rows} == {1}
    assert {s["item"]: s["reason"][:20] for s in manifest(tmp_path / "out")["skipped"]} == {
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
    with pytest.raises(ForgetkitError, match="sample=rows is not one of: released, seconds, frames"):
        build(pitvis, tmp_path, params={"sample": "rows"})
    with pytest.raises(ForgetkitError, match="prompt=llava is not one of: released, paper"):
        build(pitvis, tmp_path, params={"prompt": "llava"})
    with pytest.raises(ForgetkitError, match="frames=.*missing is not a folder"):
        build(pitvis, tmp_path, params={"frames": str(tmp_path / "missing"), "sample": "seconds"})
    with pytest.raises(ForgetkitError, match="one frame per second.*add --param sample=seconds"):
        build(pitvis, tmp_path, params={"frames": str(tmp_path)})
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
