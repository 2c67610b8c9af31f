"""PitVis-VQA (paper App. B.2): the main instrument in frames of endoscopic pituitary surgery, as 6-option MCQs.

Source: the PitVis-2023 release (MICCAI EndoVis sub-challenge, Das et al. 2025; Figshare deposit
26531686 / Synapse syn51232283), either flat or in `videos/`, `annotations/`, `misc/` sub-folders:
- `video_XX.mp4`: the operations (1280x720 H.264, 24 fps; video_24 is 25 fps);
- `annotations_XX.csv`: one row per elapsed second, columns `int_video,int_time,int_step,
  int_instrument1,int_instrument2` (`int_time` = second; the release has no annotations_19.csv, so
  that video is left out and listed in the manifest);
- `map_instruments.csv` (`int_instrument,str_instrument`): -2 no_secondary_instrument,
  -1 out_of_patient, 0 listed twice (no_visible_instrument, occluded_image_inside_patient; joined
  with "/" as the paper's option text does), 1..18 the instruments. Without the file, the paper's
  table of the same 21 classes is used.

Sampling (`--param sample`, `--param every=N`, N = 6 by default) follows the authors' released builder
(MLLM-Forgetting@16d5831, `data/processors/surgical/surgical_to_vqa.py`), which made the data the paper's
numbers were measured on:
- `released` (default): every 6th row of each annotations_XX.csv in file order (its `annotations[::6]`:
  rows 0, 6, 12, ..., i.e. seconds 0, 6, 12, ... of the 1-fps annotations), one question per row,
  labelled with the row's `int_instrument1`. The image is the frame that builder's `ffmpeg -ss
  <int_time / 24>` lands on, the first frame at or after int_time / 24 s: it reads the second as a frame
  number at 24 fps, so the question about second 6 shows frame 6 (0.25 s; in the 25-fps video_24,
  frame 7), and every image comes from the first 1/24 of its video.
- `seconds`: the same rows, each shown by the first frame at or after its own second.
- `frames`: the paper's text ("1 out of every 6 frames"): every 6th decoded frame, labelled with the
  row of the second it falls in (its timestamp, floored).
Frame positions come from demuxing alone, so `--limit` and reruns decode only what they still need; a
sampled row past the video's end, or a sampled frame in no annotated second, is counted in the manifest.

Images: each frame is written once, as `<out>/images/pitvis/mjpeg-q2/video_XX/frame_<index>.jpg`, encoded as the
released builder's `ffmpeg ... -vframes 1 -q:v 2 frame.jpg` encodes it: FFmpeg's MJPEG encoder, full-range
YUV 4:2:0, fixed quantiser 2 (bytes can still differ with the FFmpeg version); the folder names the
encoding, so frames an older build encoded otherwise are never reused. Instead of decoding the
videos, `--param frames=DIR` with `sample=seconds` reads already extracted frames in the layout of the
organisers' helper_scripts/video_to_images.py (github.com/dreets/pitvis): `DIR/video_XX/<second>.png`,
one frame per second, of which the sampled rows' seconds are used.

Options: no_secondary_instrument, out_of_patient and no_visible_instrument/occluded_image_inside_patient
are in every question; the truth and 2 random other instruments join them, or 3 random instruments
when the truth is one of the three; all six in random order. The prompt is the released builder's byte
for byte: the question, the six `X. option` lines, a blank line and the answer suffix with a final
period (`--param prompt=paper`: App. B.2's suffix, no blank line or period).

Split: `test` is the five videos the challenge suggested for validation (01, 12, 21, 24, 25), which
the paper's authors used as their test set; `train` is every other annotated video.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from datasets_builders.output import export
from datasets_builders.rare_domains import check_split, mcq_records, prompt_layout, sample_options
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from datasets_builders.sources import IMAGE_SUFFIXES
from datasets_builders.video_frames import Frame, Timeline, frame_images, read_timeline
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

QUESTION = "What is the major surgical instrument being used in this frame?"
"""Verbatim from the paper (App. B.2) and the released builder; the answer suffix follows the options."""

INSTRUMENTS = {
    -2: "no_secondary_instrument",
    -1: "out_of_patient",
    0: "no_visible_instrument/occluded_image_inside_patient",
    1: "bipolar_forceps",
    2: "cottle",
    3: "cup_forceps",
    4: "dural_scissors",
    5: "freer_elevator",
    6: "haemostatic_foam",
    7: "irrigation_syringe",
    8: "kerrisons",
    9: "micro_doppler",
    10: "nasal_cutting_forceps",
    11: "pituitary_rongeurs",
    12: "retractable_knife",
    13: "ring_curette",
    14: "spatula_dissector",
    15: "stealth_pointer",
    16: "suction",
    17: "surgical_drill",
    18: "tissue_glue",
}
"""PitVis instrument id -> the paper's class name (its 21 classes, App. B.2)."""

FIXED_IDS = (-2, -1, 0)
"""The three options every question offers (paper App. B.2)."""

TEST_VIDEOS = "1,12,21,24,25"
ANNOTATION_COLUMNS = ("int_video", "int_time", "int_step", "int_instrument1", "int_instrument2")
NO_LABEL = -1
SAMPLES = ("released", "seconds", "frames")
RELEASED_FPS = 24
"""The released builder seeks to `int_time / 24.0` s, taking the annotations' second for a frame number at 24 fps."""


@dataclass(frozen=True)
class Annotations:
    """The usable rows of one annotations_XX.csv, in file order."""

    row: np.ndarray
    """Each row's place among the file's data rows (0 = the first after the header; blank lines do not count)."""
    second: np.ndarray
    label: np.ndarray
    """The class position of the row's `int_instrument1`."""

    def every(self, n: int) -> Annotations:
        """Rows 0, n, 2n, ... of the file, as the released builder's `annotations[::n]`; a sampled row that
        cannot be used is dropped, not replaced by its neighbour."""
        keep = self.row % n == 0
        return Annotations(self.row[keep], self.second[keep], self.label[keep])

    def at(self, seconds: np.ndarray) -> np.ndarray:
        """The label of each of `seconds`, NO_LABEL where no row annotates it."""
        by_second = np.full(max(self.second.max(initial=-1), seconds.max(initial=-1)) + 1, NO_LABEL, dtype=np.int64)
        by_second[self.second] = self.label
        return by_second[seconds]


@register(
    "pitvis-vqa",
    params={
        "sample": "released (every Nth annotation row, the frame at int_time/24 s, as the authors' builder; default), "
        "seconds (every Nth row, the frame at its second) or frames (every Nth decoded frame, the paper's text)",
        "every": "the N of --param sample (default 6)",
        "test_videos": f"comma-separated video numbers of the test split (default {TEST_VIDEOS})",
        "frames": "folder of extracted frames, DIR/video_XX/<second>.png (organisers' layout), with sample=seconds: "
        "no video decoding",
        "prompt": "released (the authors' builder's prompt, byte for byte; default) or paper (App. B.2's suffix, "
        "without blank line or period)",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """PitVis-2023 videos or extracted frames + annotation CSVs -> 6-option instrument MCQs (pitvis_vqa_<split>)."""
    source = options.require_source("the PitVis folder (video_XX.mp4, annotations_XX.csv, map_instruments.csv)")
    check_split(options.split, "pitvis-vqa")
    layout = prompt_layout(options)
    sample = options.param("sample", "released")
    if sample not in SAMPLES:
        raise ForgetkitError(f"--param sample={sample} is not one of: {', '.join(SAMPLES)}")
    every = _positive_int(options.param("every", "6"), "every")
    test_videos = {_positive_int(v, "test_videos") for v in options.param("test_videos", TEST_VIDEOS).split(",")}
    frames_dir = options.param("frames")
    if frames_dir is not None:
        if sample != "seconds":
            raise ForgetkitError(
                "--param frames=DIR holds one frame per second, so it can only show a row's own second: "
                "add --param sample=seconds"
            )
        if not Path(frames_dir).is_dir():
            raise ForgetkitError(f"--param frames={frames_dir} is not a folder; pass the one holding video_XX/ folders")
    ids, names = instrument_classes(source)
    annotations = _numbered(source, "annotations", r"annotations_(\d+)\.csv")
    if not annotations:
        raise ForgetkitError(f"no annotations_XX.csv under {source} or {source / 'annotations'}; is this PitVis?")
    video_files = _numbered(source, "videos", r"video_(\d+)\.mp4")
    unannotated = [f"video_{v:02d}" for v in sorted(set(video_files) - set(annotations))]
    if unannotated:
        log.warning("no annotations for %s: left out (the PitVis release has no annotations_19.csv)", unannotated)
    videos = [v for v in sorted(annotations) if (v in test_videos) == (options.split == "test")]
    if not videos:
        raise ForgetkitError(f"no annotated video is in the {options.split} split (test videos: {sorted(test_videos)})")

    skips = Skips(options.strict, "pitvis")
    position = {instrument: i for i, instrument in enumerate(ids)}
    frames, truth, unmatched = sampled_frames(
        videos, annotations, video_files, position, Sampling(sample, every, frames_dir), skips
    )

    rng = np.random.default_rng(options.seed)
    chosen = seeded_subset(len(frames), options.limit, rng)
    frames, truth = [frames[i] for i in chosen], truth[chosen]
    fixed = [position[i] for i in FIXED_IDS]
    pool = [p for i, p in position.items() if i not in FIXED_IDS]
    option_ids, answers = sample_options(truth, pool, fixed, rng)

    images = frame_images(frames, options.out, skips)
    skips.report()
    keep = [i for i, image in enumerate(images) if image is not None]
    name = f"pitvis_vqa_{options.split}"
    records = mcq_records(
        name,
        [frames[i].id for i in keep],
        [images[i] for i in keep],
        [QUESTION] * len(keep),
        names,
        truth[keep],
        option_ids[keep],
        answers[keep],
        layout,
    )
    details = {
        "videos": videos,
        "videos_without_annotations": unannotated,
        "sample": sample,
        "every": every,
        "frames": frames_dir,
        "frames_without_label" if sample == "frames" else "rows_without_frame": unmatched,
        "prompt": layout,
    }
    return export(records, name, options, skipped=skips.items, details=details)


def instrument_classes(source: Path) -> tuple[list[int], list[str]]:
    """Instrument ids and option texts from map_instruments.csv (or the paper's table), sorted by id;
    names sharing an id are joined with '/'."""
    path = next(
        (p for p in (source / "map_instruments.csv", source / "misc" / "map_instruments.csv") if p.is_file()), None
    )
    if path is None:
        return list(INSTRUMENTS), list(INSTRUMENTS.values())
    names: dict[int, list[str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if [h.strip() for h in header] != ["int_instrument", "str_instrument"]:
            raise ForgetkitError(f"{path}: expected the header int_instrument,str_instrument, got {','.join(header)}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2 or not re.fullmatch(r"-?\d+", row[0].strip()) or not row[1].strip():
                raise ForgetkitError(f"{path}:{line}: expected '<integer id>,<instrument name>', got {','.join(row)}")
            names.setdefault(int(row[0]), []).append(row[1].strip())
    missing = [i for i in FIXED_IDS if i not in names]
    if missing or len(names) - len(FIXED_IDS) < 3:
        raise ForgetkitError(f"{path} must list ids -2, -1, 0 and at least 3 instruments; missing: {missing}")
    ids = sorted(names)
    return ids, ["/".join(names[i]) for i in ids]


@dataclass(frozen=True)
class Sampling:
    """Which frames become questions: `--param sample`, `every` and `frames`."""

    sample: str
    every: int
    frames_dir: str | None


def sampled_frames(
    videos: list[int],
    annotations: dict[int, Path],
    video_files: dict[int, Path],
    position: dict[int, int],
    sampling: Sampling,
    skips: Skips,
) -> tuple[list[Frame], np.ndarray, int]:
    """The frames `sampling` takes from `videos`, their class positions, and how many sampled rows had no
    frame (or, sampling frames, how many sampled frames had no annotated second)."""
    frames: list[Frame] = []
    truth: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
    unmatched = 0
    for video in videos:
        rows = read_annotations(annotations[video], video, position, skips)
        if sampling.frames_dir is not None:
            found, label, missed = folder_frames(Path(sampling.frames_dir), video, rows.every(sampling.every), skips)
        elif video not in video_files:
            skips.add(f"video_{video:02d}.mp4", f"{annotations[video].name} has no video beside it")
            continue
        else:
            timeline = read_timeline(video_files[video], skips)
            if timeline is None:
                continue
            if sampling.sample == "frames":
                found, label, missed = stride_frames(video, timeline, rows, sampling.every)
            else:
                per = RELEASED_FPS if sampling.sample == "released" else 1
                found, label, missed = row_frames(video, timeline, rows.every(sampling.every), per)
        frames.extend(found)
        truth.append(label)
        unmatched += missed
    return frames, np.concatenate(truth), unmatched


def read_annotations(path: Path, video: int, position: dict[int, int], skips: Skips) -> Annotations:
    """The usable rows of `path`, each with its place among the file's data rows (what the released
    builder's row sampling counts).

    A row with the wrong field count, a non-integer or negative time, another video's number, an
    unknown instrument id or a second annotated twice is skipped and counted (or fatal with --strict).
    """
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    header = [name.strip() for name in rows[0]] if rows else []
    missing = [c for c in ("int_video", "int_time", "int_instrument1") if c not in header]
    if missing:
        raise ForgetkitError(
            f"{path}: no column {missing[0]}; PitVis annotations have the header {','.join(ANNOTATION_COLUMNS)}"
        )
    width_ok = [len(row) == len(header) for row in rows[1:]]
    bad_rows = {
        line: f"{len(row)} fields, the header has {len(header)}"
        for line, (row, ok) in enumerate(zip(rows[1:], width_ok), start=2)
        if row and not ok
    }
    table = pd.DataFrame([row for row, ok in zip(rows[1:], width_ok) if ok], columns=header)
    table.index = np.flatnonzero(width_ok) + 2
    number = {c: _integers(table[c]) for c in ("int_video", "int_time", "int_instrument1")}
    time, instrument = number["int_time"], number["int_instrument1"]
    problems = (
        (number["int_video"].isna() | time.isna() | instrument.isna(), "a field is not an integer"),
        (time < 0, "negative int_time"),
        (number["int_video"].notna() & (number["int_video"] != video), f"int_video is not {video}"),
        (instrument.notna() & ~instrument.isin(list(position)), "int_instrument1 is not a known instrument id"),
    )
    bad = pd.Series(False, index=table.index)
    for mask, reason in problems:
        bad_rows.update(dict.fromkeys(table.index[mask & ~bad], reason))
        bad |= mask
    twice = ~bad & time.where(~bad).duplicated(keep=False)
    bad_rows.update({line: f"second {int(time[line])} is annotated more than once" for line in table.index[twice]})
    for line in sorted(bad_rows):
        skips.add(f"{path.name}:{line}", bad_rows[line])
    good = ~bad & ~twice
    ordinal = np.cumsum([bool(row) for row in rows[1:]], dtype=np.int64) - 1
    return Annotations(
        ordinal[table.index[good] - 2],
        time[good].to_numpy(dtype=np.int64),
        instrument[good].map(position).to_numpy(dtype=np.int64),
    )


def row_frames(video: int, timeline: Timeline, rows: Annotations, per: int) -> tuple[list[Frame], np.ndarray, int]:
    """One frame per row, the first at or after `int_time / per` s, and how many rows fall past the video's end."""
    index = timeline.first_at(rows.second, per)
    inside = index < len(timeline.pts)
    frames = [
        _decoded(video, f"second_{second:05d}", timeline, i)
        for second, i in zip(rows.second[inside].tolist(), index[inside].tolist())
    ]
    return frames, rows.label[inside], int((~inside).sum())


def stride_frames(video: int, timeline: Timeline, rows: Annotations, every: int) -> tuple[list[Frame], np.ndarray, int]:
    """Every `every`-th frame, labelled with the row of the second it falls in, and how many fall in no
    annotated second."""
    index = np.arange(0, len(timeline.pts), every)
    label = rows.at(timeline.second(index))
    has = label != NO_LABEL
    frames = [_decoded(video, f"frame_{i:06d}", timeline, i) for i in index[has].tolist()]
    return frames, label[has], int((~has).sum())


def folder_frames(root: Path, video: int, rows: Annotations, skips: Skips) -> tuple[list[Frame], np.ndarray, int]:
    """The organisers' extracted frame of each row's second, `root/video_XX/<second>.png`, and how many rows
    have none."""
    folder = root / f"video_{video:02d}"
    if not folder.is_dir():
        skips.add(folder.name, f"no frame folder {folder} for annotations_{video:02d}.csv")
        return [], np.empty(0, dtype=np.int64), 0
    files = {int(p.stem): p for p in folder.iterdir() if p.stem.isdigit() and p.suffix.lower() in IMAGE_SUFFIXES}
    has = np.array([second in files for second in rows.second.tolist()], dtype=bool)
    frames = [Frame(f"video_{video:02d}/second_{s:05d}", files[s]) for s in rows.second[has].tolist()]
    return frames, rows.label[has], int((~has).sum())


def _decoded(video: int, item: str, timeline: Timeline, index: int) -> Frame:
    return Frame(
        f"video_{video:02d}/{item}",
        timeline.path,
        int(timeline.pts[index]),
        f"images/pitvis/mjpeg-q2/video_{video:02d}/frame_{index:06d}.jpg",
    )


def _integers(values: pd.Series) -> pd.Series:
    """Whole numbers as floats (exact far beyond any PitVis value); anything else, e.g. '1.5' or 'x', as NaN."""
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    return numbers.where(numbers % 1 == 0)


def _numbered(source: Path, folder: str, pattern: str) -> dict[int, Path]:
    """Files named like `pattern` directly in `source` or in `source/folder`, by their number."""
    found: dict[int, Path] = {}
    for directory in (source / folder, source):
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                match = re.fullmatch(pattern, path.name)
                if match:
                    found[int(match.group(1))] = path
    return found


def _positive_int(value: str, name: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise ForgetkitError(f"--param {name}: {value!r} is not a positive whole number")
    return int(value)
