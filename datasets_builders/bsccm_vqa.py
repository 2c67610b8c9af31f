"""BSCCM-VQA (paper App. B.2): white blood cells under 23 LED-array illuminations, as 6-option MCQs.

Source: a BSCCM download (Pinkard et al. 2024; `bsccm.download_dataset`: BSCCM, BSCCM-tiny or
BSCCMNIST), read with the `bsccm` package as the official Getting_started guide does:
`BSCCM_global_metadata.json` (channel names), `BSCCM_index.csv` (one row per cell: `global_index`,
`data_path`, `batch`, `antibodies`, ...), `BSCCM_images.zarr` (`<data_path>/led_array/cell_<i>`, one
H x W uint16 plane per LED-array channel, 12-bit camera) and `BSCCM_surface_markers.csv`, whose ten
`selection_gated_*` columns are BSCCM's ten-class cell-type labels
(`BSCCM.get_cell_type_classification_data(ten_class_version=True)`). Only gated cells (batch 0 stained
with all antibodies) have a label; every other cell is counted (manifest `unlabelled_cells`) and
skipped, and so is a cell that falls in two gates (`ambiguous_cells`).

Questions: one per labelled cell and channel, as in the paper ("we collect images from all 23
channels"). The wording is one of the paper's seven, drawn per question, with `{channel_type}` spelled
as the authors' released builder (MLLM-Forgetting@16d5831, `data/processors/microscopy/bsccm_to_vqa.py`)
spells it: "brightfield", "dark field (50° illumination)", "dark field (70° bottom illumination)",
"differential phase contrast (left illumination)", "LED119 illumination". The prompt is theirs byte for
byte: the question, the six `X. option` lines, a blank line, then the answer suffix with a final period.
`--param prompt=paper` gives the paper's text instead: Table 4 prints "dark field (50 illumination)"
(no degree sign) and App. B.2 quotes the suffix without a period or blank line.

Options: the paper's ten class names, given to BSCCM's ten gates in the gates' column order (the
names the paper's authors gave them; they are not the gates' biology, which BSCCM describes as
lymphocytes, three granulocyte gates, red cells, two unknown gates and three monocyte gates).
`unclassified_cell` and `debris_or_artifact` are never a cell's class but appear in every example
the paper shows (Table 4), so they are fixed options, not distractor candidates: each question offers
the truth, those two, and 3 of the other 9 classes drawn at random, in random order.

Split: the paper's train/test sets, drawn per class (a seeded `train_fraction` of each class's cells
goes to train); every channel of a cell lands in the same split.

Images: each cell/channel plane is written once, as the released builder writes it: scaled to 8 bits
(`to_uint8`) and saved as JPEG at PIL's default quality (75), to
`<out>/images/bsccm/<normalize>/<channel>/<global_index // 1000>/cell_<global_index>.jpg`; a rerun
reuses what is there.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from datasets_builders.output import export
from datasets_builders.rare_domains import check_split, mcq_records, prompt_layout, sample_options
from datasets_builders.registry import BuildOptions, BuildResult, Skips, register, seeded_subset
from forgetkit import atomic
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

CHANNELS = (
    "Brightfield",
    "DF_50",
    "DF_50_Bottom",
    "DF_50_Right",
    "DF_55",
    "DF_60",
    "DF_60_Bottom",
    "DF_60_Right",
    "DF_65",
    "DF_70",
    "DF_70_Bottom",
    "DF_70_Right",
    "DF_75",
    "DF_80",
    "DF_80_Bottom",
    "DF_80_Right",
    "DF_85",
    "DF_90",
    "DPC_Bottom",
    "DPC_Left",
    "DPC_Right",
    "DPC_Top",
    "LED119",
)
"""BSCCM's 23 LED-array channels, all of which the paper uses (App. B.2)."""

CLASS_NAMES = (
    "lymphocyte",
    "neutrophil",
    "monocyte",
    "eosinophil",
    "basophil",
    "t_lymphocyte",
    "b_lymphocyte",
    "nk_lymphocyte",
    "plasma_cell",
    "blast_cell",
)
"""The name of BSCCM ten-class label 0..9 (the `selection_gated_*` columns in order) in the paper's data."""

FIXED_OPTIONS = ("unclassified_cell", "debris_or_artifact")

QUESTIONS = (
    "What type of white blood cell is shown in this {channel_type} microscopy image?",
    "Based on the morphological features visible in this {channel_type} image, what is the cell type?",
    "What is the most likely classification of this blood cell captured with {channel_type} illumination?",
    "Which white blood cell type does this {channel_type} image represent?",
    "What type of immune cell is depicted in this {channel_type} microscopy image?",
    "Looking at the cell morphology in this {channel_type} image, which cell type is this?",
    "What is the identity of this cell captured using {channel_type} in LED array microscopy?",
)
"""The paper's seven wordings (App. B.2), verbatim."""

CAMERA_MAX = 4095
"""LED-array images are uint16 from a 12-bit camera (BSCCM Getting_started, section 3)."""

NORMALIZE = ("camera", "minmax")
SOURCE_FILES = ("BSCCM_global_metadata.json", "BSCCM_index.csv", "BSCCM_images.zarr")


DEGREE_SIGN = {"released": "°", "paper": ""}
"""What follows a dark-field angle in `{channel_type}`, per `--param prompt` (the paper's Table 4 has none)."""


def channel_type(channel: str, layout: str = "released") -> str:
    """How a question names a channel, as the released builder does: 'DF_50_Bottom' -> 'dark field (50°
    bottom illumination)'; layout 'paper' drops the degree sign."""
    kind, _, rest = channel.partition("_")
    if channel == "Brightfield":
        return "brightfield"
    if kind == "DF":
        angle, _, side = rest.partition("_")
        where = f"{angle}{DEGREE_SIGN[layout]} {side.lower()}" if side else f"{angle}{DEGREE_SIGN[layout]}"
        return f"dark field ({where} illumination)"
    if kind == "DPC":
        return f"differential phase contrast ({rest.lower()} illumination)"
    return f"{channel} illumination"


def to_uint8(image: np.ndarray, normalize: str) -> np.ndarray:
    """8 bits, truncated as the released builder's `astype(np.uint8)` truncates. 'camera' maps the 12-bit
    range 0..4095 linearly onto 0..255 (`image / 4095.0 * 255`), the same scale for every cell and channel
    (so dark-field images stay dark, as the paper's were); values above 4095, which a 12-bit camera does
    not give, are clipped. 'minmax' stretches each image to its own range; float planes (no fixed range)
    are always stretched, as the released builder does."""
    if normalize == "camera" and np.issubdtype(image.dtype, np.integer):
        return (np.clip(image, 0, CAMERA_MAX) / float(CAMERA_MAX) * 255).astype(np.uint8)
    low, high = image.min(), image.max()
    if high == low:
        return np.zeros(image.shape, dtype=np.uint8)
    return ((image - low) / (high - low) * 255).astype(np.uint8)


@register(
    "bsccm-vqa",
    params={
        "channels": "comma-separated LED-array channels to ask about (default: all 23 the paper used)",
        "train_fraction": "share of each class's cells in the train split (default 0.9)",
        "normalize": "camera (12-bit range -> 0..255, default) or minmax (per-image stretch)",
        "prompt": "released (the authors' builder's prompt, byte for byte; default) or paper (App. B.2's text: "
        "'dark field (50 illumination)', suffix without blank line or period)",
    },
)
def build(options: BuildOptions) -> BuildResult:
    """BSCCM (bsccm package layout) -> 6-option cell-type MCQs per cell and channel (bsccm_vqa_<split>)."""
    source = options.require_source("the BSCCM folder (BSCCM_index.csv, BSCCM_images.zarr, ...)")
    check_split(options.split, "bsccm-vqa")
    channels = _channels(options.param("channels"))
    train_fraction = _fraction(options.param("train_fraction", "0.9"))
    normalize = options.param("normalize", "camera")
    if normalize not in NORMALIZE:
        raise ForgetkitError(f"--param normalize={normalize} is not one of: {', '.join(NORMALIZE)}")
    layout = prompt_layout(options)
    dataset = _open(source, channels)
    cells, labels, counts = labelled_cells(dataset)
    split_rng, question_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(options.seed).spawn(2))
    in_train = stratified_train_mask(labels, train_fraction, split_rng)
    keep = in_train if options.split == "train" else ~in_train
    cells, labels = cells[keep], labels[keep]
    if not len(cells):
        raise ForgetkitError(f"no labelled cells fall in the {options.split} split; change --param train_fraction")

    chosen = seeded_subset(len(cells) * len(channels), options.limit, question_rng)
    cell, label = cells[chosen // len(channels)], labels[chosen // len(channels)]
    channel = chosen % len(channels)
    wording = question_rng.integers(len(QUESTIONS), size=len(cell))
    names = [*CLASS_NAMES, *FIXED_OPTIONS]
    option_ids, answers = sample_options(
        label, range(len(CLASS_NAMES)), range(len(CLASS_NAMES), len(names)), question_rng
    )

    skips = Skips(options.strict, "bsccm")
    images, ok = write_images(dataset, cell, [channels[c] for c in channel], normalize, options.out, skips)
    skips.report()
    name = f"bsccm_vqa_{options.split}"
    keep = np.flatnonzero(ok)
    records = mcq_records(
        name,
        [f"cell_{cell[i]}/{channels[channel[i]]}" for i in keep],
        [images[i] for i in keep],
        [QUESTIONS[wording[i]].format(channel_type=channel_type(channels[channel[i]], layout)) for i in keep],
        names,
        label[keep],
        option_ids[keep],
        answers[keep],
        layout,
    )
    details = {
        "channels": list(channels),
        "normalize": normalize,
        "prompt": layout,
        "train_fraction": train_fraction,
        "cells": len(cells),
        **counts,
    }
    return export(records, name, options, skipped=skips.items, details=details)


def write_images(
    dataset, cells: np.ndarray, channels: list[str], normalize: str, out: Path, skips: Skips
) -> tuple[list[str], np.ndarray]:
    """Each (cell, channel) plane as an 8-bit JPEG under `out`, unless a previous run wrote it: the
    image paths relative to `out` (what LF resolves) and which planes could be read."""
    paths = []
    ok = np.ones(len(cells), dtype=bool)
    for i, (index, channel) in enumerate(zip(cells.tolist(), channels)):
        relative = f"images/bsccm/{normalize}/{channel}/{index // 1000:03d}/cell_{index}.jpg"
        paths.append(relative)
        if (out / relative).exists():
            continue
        try:
            plane = np.asarray(dataset.read_image(index, channel=channel))
        except Exception as err:  # a missing cell, chunk or codec error: whatever zarr raises, the plane is unreadable
            skips.add(f"cell_{index}/{channel}", f"cannot read image: {err}")
            ok[i] = False
            continue
        write_jpeg(Image.fromarray(to_uint8(plane, normalize)), out / relative)
    return paths, ok


def write_jpeg(image: Image.Image, path: Path) -> None:
    """JPEG at PIL's default quality (75), as the released builder's `Image.save("....jpg")`, written
    atomically: a killed build leaves no truncated file that a rerun would take as done."""
    with atomic.atomic_open(path, "wb") as handle:
        image.save(handle, format="JPEG")


def labelled_cells(dataset) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Global indices and ten-class labels of the cells with exactly one gate, sorted by index, and
    how many cells were left out (no gate, two gates, or gated but absent from the index)."""
    gates = [name for name in dataset.surface_marker_dataframe.columns if "selection_gated" in name]
    if len(gates) != len(CLASS_NAMES):
        raise ForgetkitError(
            f"BSCCM_surface_markers.csv has {len(gates)} selection_gated_* columns, expected BSCCM's "
            f"{len(CLASS_NAMES)} cell-type gates; is this a complete BSCCM download?"
        )
    indices, labels = dataset.get_cell_type_classification_data(ten_class_version=True)
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    unique, first, seen = np.unique(indices, return_index=True, return_counts=True)
    single = seen == 1
    cells, cell_labels = unique[single], labels[first[single]]
    in_index = dataset.index_dataframe.index.to_numpy()
    listed = np.isin(cells, in_index)
    counts = {
        "unlabelled_cells": int(len(in_index) - np.isin(in_index, unique).sum()),
        "ambiguous_cells": int((~single).sum()),
        "gated_cells_missing_from_index": int((~listed).sum()),
    }
    if not listed.any():
        raise ForgetkitError(
            "no cell of BSCCM_index.csv has a cell-type gate in BSCCM_surface_markers.csv "
            "(labels exist for batch 0, antibodies 'all'); is this a complete BSCCM download?"
        )
    log.info(
        "%d of %d cells have a cell-type label; skipped %d unlabelled and %d in two gates",
        listed.sum(),
        len(in_index),
        counts["unlabelled_cells"],
        counts["ambiguous_cells"],
    )
    return cells[listed], cell_labels[listed], counts


def stratified_train_mask(labels: np.ndarray, train_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """True for the cells in train: floor(fraction x class size) of each class, picked at random.

    Depends only on the labels and the seed, so the train and test builds partition the same cells.
    """
    order = np.lexsort((rng.random(len(labels)), labels))
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - starts
    class_sizes = np.bincount(labels, minlength=len(CLASS_NAMES))
    return rank < np.floor(class_sizes * train_fraction).astype(np.int64)[labels]


def _open(source: Path, channels: tuple[str, ...]):
    """The `bsccm` package's reader, after checking the files it needs so a wrong folder gets a clear error."""
    from bsccm import BSCCM

    missing = [name for name in SOURCE_FILES if not (source / name).exists()]
    if missing:
        raise ForgetkitError(
            f"{source} is not a BSCCM folder: {missing[0]} is missing; point --source at the folder "
            "bsccm.download_dataset() made (e.g. BSCCM-tiny/)"
        )
    if not (source / "BSCCM_surface_markers.csv").is_file():
        raise ForgetkitError(
            f"{source} has no BSCCM_surface_markers.csv, which holds the cell-type labels; download a BSCCM variant "
            "that includes it (BSCCM, BSCCM-tiny or BSCCMNIST)"
        )
    with contextlib.redirect_stdout(sys.stderr):  # the package prints "Opening ..." where our results go
        dataset = BSCCM(str(source))
    available = set(dataset.led_array_channel_names)
    absent = [name for name in channels if name not in available]
    if absent:
        raise ForgetkitError(
            f"channel {absent[0]!r} is not an LED-array channel of {source} "
            f"(it has: {', '.join(dataset.led_array_channel_names)})"
        )
    return dataset


def _channels(value: str | None) -> tuple[str, ...]:
    if value is None:
        return CHANNELS
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    bad = next((repr(name) for name in names if name not in CHANNELS), None if names else "an empty list")
    if bad is not None:
        raise ForgetkitError(f"--param channels: {bad} is not one of the paper's 23 channels: {', '.join(CHANNELS)}")
    return names


def _fraction(value: str) -> float:
    try:
        fraction = float(value)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction < 1:
        raise ForgetkitError(f"--param train_fraction={value} must be a number between 0 and 1, e.g. 0.9")
    return fraction
