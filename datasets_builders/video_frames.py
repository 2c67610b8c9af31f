"""Frames of a video as image files: timestamps by demuxing alone, one decoding pass per video for the frames
still missing, each written once as FFmpeg's `-vframes 1 -q:v 2` JPEG would be (PitVis-VQA's released builder)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from datasets_builders.output import image_ref
from datasets_builders.registry import Skips
from forgetkit import atomic

FFMPEG_QSCALE = 2
"""The released builder's `ffmpeg -q:v 2`: MJPEG at a fixed quantiser of 2."""


@dataclass(frozen=True)
class Timeline:
    """A video's frame timestamps in presentation order, from demuxing alone (no decoding)."""

    path: Path
    pts: np.ndarray
    time_base: Fraction

    def first_at(self, seconds: np.ndarray, per: int) -> np.ndarray:
        """The index of the first frame at or after `seconds / per` s from the video's first frame, the one
        an input seek (`ffmpeg -ss`) decodes first; len(pts) where that is past the last frame."""
        ticks = (self.pts - self.pts[0]) * self.time_base.numerator * per
        return np.searchsorted(ticks, seconds * self.time_base.denominator, side="left")

    def second(self, index: np.ndarray) -> np.ndarray:
        """The second of the operation each frame falls in (its timestamp, floored)."""
        return (self.pts[index] - self.pts[0]) * self.time_base.numerator // self.time_base.denominator


@dataclass(frozen=True)
class Frame:
    """One question's image: its record id and where the picture comes from."""

    id: str
    source: Path
    """The video it is decoded from, or the extracted frame file."""
    pts: int | None = None
    """The frame's timestamp in `source`; None for an extracted frame file."""
    image: str | None = None
    """Where a decoded frame is written, relative to `--out`; None for an extracted frame, used where it is."""


def read_timeline(path: Path, skips: Skips) -> Timeline | None:
    """The frame timestamps of a video's first video stream, or None (skipped and counted) if it has none."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            time_base = Fraction(stream.time_base)
            packets = [packet.pts for packet in container.demux(stream) if packet.size]
    except (av.FFmpegError, IndexError) as err:
        skips.add(path.name, f"cannot read video: {err}")
        return None
    if not packets or None in packets:
        skips.add(path.name, "no frames" if not packets else "frames without timestamps")
        return None
    return Timeline(path, np.sort(np.asarray(packets, dtype=np.int64)), time_base)


def frame_images(frames: list[Frame], out: Path, skips: Skips) -> list[str | None]:
    """The image path (relative to `out`) of each frame, None for one that cannot be read.

    Video frames missing from `out` are decoded and written, one pass per video, stopping after the
    last missing one; extracted frames are checked and referenced where they are.
    """
    images: list[str | None] = [None] * len(frames)
    missing: dict[Path, dict[int, list[int]]] = {}
    for i, frame in enumerate(frames):
        if frame.image is None:
            images[i] = _checked(frame, out, skips)
        elif (out / frame.image).exists():
            images[i] = frame.image
        else:
            missing.setdefault(frame.source, {}).setdefault(frame.pts, []).append(i)
    for video, todo in missing.items():
        try:
            with av.open(str(video)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for decoded in container.decode(stream):
                    waiting = todo.pop(decoded.pts, [])
                    if waiting:
                        write_frame(decoded, out / frames[waiting[0]].image)
                    for i in waiting:
                        images[i] = frames[i].image
                    if not todo:
                        break
            reason = f"not found when decoding {video.name}"
        except av.FFmpegError as err:
            reason = f"decoding {video.name} failed: {err}"
        for i in (i for waiting in todo.values() for i in waiting):
            skips.add(frames[i].id, reason)
    return images


def write_frame(frame: av.VideoFrame, path: Path) -> None:
    """The frame as the released builder's `ffmpeg -i video -vframes 1 -q:v 2 frame.jpg` writes it: FFmpeg's
    MJPEG encoder on full-range YUV 4:2:0 at a fixed quantiser of 2; written atomically, so a killed build
    leaves no truncated file that a rerun would take as done."""
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.qscale = True
    encoder.qmin = encoder.qmax = FFMPEG_QSCALE
    packets = encoder.encode(frame.reformat(format="yuvj420p")) + encoder.encode(None)
    with atomic.atomic_open(path, "wb") as handle:
        handle.writelines(bytes(packet) for packet in packets)


def _checked(frame: Frame, out: Path, skips: Skips) -> str | None:
    try:
        with Image.open(frame.source) as image:
            image.verify()
    except (OSError, SyntaxError) as err:
        skips.add(str(frame.source), f"cannot read image: {err}")
        return None
    return image_ref(frame.source, out)
