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
Instead of decoding the videos, `--param frames=DIR` reads already extracted frames in the layout of
the organisers' helper_scripts/video_to_images.py (github.com/dreets/pitvis): `DIR/video_XX/<second>.png`,
one frame per second, all of which are used.

Frames: 1 of every 6 decoded frames (`every`), as the paper says, labelled with the
`int_instrument1` (the main instrument) of the second it falls in (its timestamp, floored). Frame
positions come from demuxing alone, so `--limit` and reruns decode only what they still need; each
frame is written once as `<out>/images/pitvis/video_XX/frame_<index>.jpg`.

Options: no_secondary_instrument, out_of_patient and no_visible_instrument/occluded_image_inside_patient
are in every question; the truth and 2 random other instruments join them, or 3 random instruments
when the truth is one of the three; all six in random order.

Split: `test` is the five videos the challenge suggested for validation (01, 12, 21, 24, 25), which
the paper's authors used as their test set; `train` is every other annotated video.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd
from PIL import Image

from datasets_builders.classification import IMAGE_SUFFIXES, image_ref
from datasets_builders.output import export
from datasets_builders.rare_domains import (
    check_split,
    mcq_records,
    sample_options,
    write_image,
)
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

QUESTION = "What is the major surgical instrument being used in this frame?"
"""Verbatim from the paper (App. B.2); the answer suffix follows the options."""

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


@dataclass(frozen=True)
class Frame:
    """One sampled frame: where it comes from and the second of the operation it shows."""

    video: int
    second: int
    index: int | None
    """Position among the video's frames; None for a frame read from a folder of extracted frames."""
    pts: int | None
    source: Path
    """The video it is decoded from, or the extracted frame file."""

    @property
    def id(self) -> str:
        if self.index is None:
            return f"video_{self.video:02d}/second_{self.second:05d}"
        return f"video_{self.video:02d}/frame_{self.index:06d}"


@register(
    "pitvis-vqa",
    params={
        "every": "keep 1 of every N decoded video frames (default 6, the paper's rate)",
        "test_videos": f"comma-separated video numbers of the test split (default {TEST_VIDEOS})",
        "frames": "folder of extracted frames, DIR/video_XX/<second>.png (organisers' layout): no video decoding",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """PitVis-2023 videos or extracted frames + annotation CSVs -> 6-option instrument MCQs (pitvis_vqa_<split>)."""
    source = options.require_source("the PitVis folder (video_XX.mp4, annotations_XX.csv, map_instruments.csv)")
    check_split(options.split, "pitvis-vqa")
    every = _positive_int(options.param("every", "6"), "every")
    test_videos = {_positive_int(v, "test_videos") for v in options.param("test_videos", TEST_VIDEOS).split(",")}
    frames_dir = options.param("frames")
    if frames_dir is not None:
        if "every" in options.params:
            raise ForgetkitError("--param every applies to decoded videos; extracted frames are one per second")
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
    frames, truth, unlabelled = labelled_frames(videos, annotations, video_files, position, frames_dir, every, skips)

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
    )
    details = {
        "videos": videos,
        "videos_without_annotations": unannotated,
        "every": every if frames_dir is None else None,
        "frames": frames_dir,
        "frames_without_label": unlabelled,
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


def labelled_frames(
    videos: list[int],
    annotations: dict[int, Path],
    video_files: dict[int, Path],
    position: dict[int, int],
    frames_dir: str | None,
    every: int,
    skips: Skips,
) -> tuple[list[Frame], np.ndarray, int]:
    """The sampled frames of `videos` that fall in an annotated second, their class positions, and how
    many sampled frames had no annotation."""
    frames: list[Frame] = []
    truth: list[np.ndarray] = []
    unlabelled = 0
    for video in videos:
        labels = read_annotations(annotations[video], video, position, skips)
        if frames_dir is not None:
            found = folder_frames(Path(frames_dir), video, skips)
        elif video in video_files:
            found = video_frames(video_files[video], video, every, skips)
        else:
            skips.add(f"video_{video:02d}.mp4", f"{annotations[video].name} has no video beside it")
            found = []
        seconds = np.array([frame.second for frame in found], dtype=np.int64)
        label = np.full(len(found), NO_LABEL, dtype=np.int64)
        in_range = seconds < len(labels)
        label[in_range] = labels[seconds[in_range]]
        has_label = label != NO_LABEL
        unlabelled += int((~has_label).sum())
        frames.extend(frame for frame, keep in zip(found, has_label) if keep)
        truth.append(label[has_label])
    return frames, np.concatenate(truth), unlabelled


def read_annotations(path: Path, video: int, position: dict[int, int], skips: Skips) -> np.ndarray:
    """The class position of each second's `int_instrument1` (NO_LABEL where no usable row says).

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
    seconds = time[good].to_numpy(dtype=np.int64)
    labels = np.full(int(seconds.max()) + 1 if len(seconds) else 0, NO_LABEL, dtype=np.int64)
    labels[seconds] = instrument[good].map(position).to_numpy(dtype=np.int64)
    return labels


def video_frames(path: Path, video: int, every: int, skips: Skips) -> list[Frame]:
    """Every `every`-th frame of a video in presentation order, timed from its packets (no decoding)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            time_base = stream.time_base
            packets = [packet.pts for packet in container.demux(stream) if packet.size]
    except (av.FFmpegError, IndexError) as err:
        skips.add(path.name, f"cannot read video: {err}")
        return []
    if not packets or None in packets:
        skips.add(path.name, "no frames" if not packets else "frames without timestamps")
        return []
    pts = np.sort(np.asarray(packets, dtype=np.int64))
    index = np.arange(0, len(pts), every)
    seconds = (pts[index] - pts[0]) * time_base.numerator // time_base.denominator
    return [Frame(video, int(s), int(i), int(p), path) for i, p, s in zip(index, pts[index], seconds)]


def folder_frames(root: Path, video: int, skips: Skips) -> list[Frame]:
    """The organisers' extracted frames of one video, `root/video_XX/<second>.png`, in second order."""
    folder = root / f"video_{video:02d}"
    if not folder.is_dir():
        skips.add(folder.name, f"no frame folder {folder} for annotations_{video:02d}.csv")
        return []
    files = sorted(
        (int(p.stem), p) for p in folder.iterdir() if p.stem.isdigit() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return [Frame(video, second, None, None, path) for second, path in files]


def frame_images(frames: list[Frame], out: Path, skips: Skips) -> list[str | None]:
    """The image path (relative to `out`) of each frame, None for one that cannot be read.

    Video frames missing from `out` are decoded and written, one pass per video, stopping after the
    last missing one; extracted frames are checked and referenced where they are.
    """
    images: list[str | None] = [None] * len(frames)
    missing: dict[Path, dict[int, int]] = {}
    for i, frame in enumerate(frames):
        if frame.index is None:
            images[i] = _checked(frame, out, skips)
            continue
        relative = f"images/pitvis/{frame.id}.jpg"
        if (out / relative).exists():
            images[i] = relative
        else:
            missing.setdefault(frame.source, {})[frame.pts] = i
    for video, todo in missing.items():
        try:
            with av.open(str(video)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for decoded in container.decode(stream):
                    i = todo.pop(decoded.pts, None)
                    if i is not None:
                        images[i] = f"images/pitvis/{frames[i].id}.jpg"
                        write_image(decoded.to_image(), out / images[i])
                    if not todo:
                        break
            reason = f"not found when decoding {video.name}"
        except av.FFmpegError as err:
            reason = f"decoding {video.name} failed: {err}"
        for i in todo.values():
            skips.add(frames[i].id, reason)
    return images


def _checked(frame: Frame, out: Path, skips: Skips) -> str | None:
    try:
        with Image.open(frame.source) as image:
            image.verify()
    except (OSError, SyntaxError) as err:
        skips.add(str(frame.source), f"cannot read image: {err}")
        return None
    return image_ref(frame.source, out)


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
