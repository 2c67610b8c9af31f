"""`forgetkit demo`: every stage of the pipeline, for real, offline, on a CPU in a few minutes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from datasets_builders import BuildOptions, build
from datasets_builders.registry import output_name
from forgetkit.clip_encoder import ClipSpec
from forgetkit.fixtures.captions import write_caption_set
from forgetkit.fixtures.demo_sources import DOMAINS, write_imagewikiqa, write_mllm_cl, write_ood_image_folder
from forgetkit.fixtures.synthetic import make_image_folder
from forgetkit.fixtures.vlmeval_data import TINY_MMMU, write_mmmu_tsv
from forgetkit.protocol import mllm_cl_set
from forgetkit.resources import bundled
from forgetkit.spec import load_study
from forgetkit.study import launch

SPLITS = {"train": 16, "val": 4}
REPLAY = 4
"""Rows of each earlier MLLM-CL domain replayed in a later one's training set (the paper: 20)."""
CAPTIONS = "shape_captions"
"""Held-out caption prompts the drift probe measures every checkpoint on."""


def run_demo(workdir: Path) -> dict[str, dict[str, dict]]:
    """Drawn images → CLIP-hard MCQs (random-weight CLIP) → `runs/demo.yaml` study → score table.

    Each step skips work whose output is already in `workdir`, so an interrupted demo continues.
    """
    build_demo_data(workdir)
    spec = workdir / "demo.yaml"
    shutil.copyfile(bundled("runs/demo.yaml"), spec)
    return launch(load_study(spec), workdir / "run")


def build_demo_data(workdir: Path, clip: ClipSpec | None = None) -> Path:
    """Draw every source into `workdir` and build the demo's datasets from them with the real builders.

    Returns `workdir/data`, which holds the LF files with their dataset_info.json and `lmudata/` for
    VLMEvalKit. A source folder or dataset that is already complete is kept. `clip` picks the distractors
    of the classification sets (default: open_clip's code on `tiny-random-clip`, random weights like any CLIP
    here without a download, so a full-size tower would only pick equally arbitrary distractors, 40 s slower).
    """
    clip = clip or ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=32, num_workers=0)
    workdir.mkdir(parents=True, exist_ok=True)
    images = _drawn(workdir / "images", lambda root: make_image_folder(root, splits=SPLITS))
    ood = _drawn(workdir / "ood_images", write_ood_image_folder)
    wiki = _drawn(workdir / "imagewikiqa", write_imagewikiqa)
    mllm_cl = _drawn(workdir / "MLLM-CL", write_mllm_cl)
    data = workdir / "data"
    builds = [
        *(
            (
                output_name("imagenet-vqa", split),
                "imagenet-vqa",
                BuildOptions(source=images, out=data, split=split, class_names=images / "class_names.txt", clip=clip),
            )
            for split in SPLITS
        ),
        (
            output_name("flowers102-vqa", "test"),
            "flowers102-vqa",
            BuildOptions(source=ood, out=data, split="test", class_names=ood / "class_names.txt", clip=clip),
        ),
        (output_name("imagewikiqa"), "imagewikiqa", BuildOptions(source=wiki, out=data)),
        *(
            (
                mllm_cl_set(domain, split),
                "mllm-cl",
                BuildOptions(source=mllm_cl, out=data, split=split, params={"domain": domain}),
            )
            for domain in DOMAINS
            for split in ("train", "test")
        ),
        *(
            (
                mllm_cl_set(domain, "train", REPLAY),
                "mllm-cl",
                BuildOptions(source=mllm_cl, out=data, split="train", params={"domain": domain, "replay": str(REPLAY)}),
            )
            for domain in list(DOMAINS)[1:]
        ),
    ]
    for dataset, builder, options in builds:
        if not (data / f"{dataset}.manifest.json").is_file():
            build(builder, options)
    if not (data / "lmudata" / f"{TINY_MMMU}.tsv").is_file():
        write_mmmu_tsv(data / "lmudata")
    if not (data / f"{CAPTIONS}.manifest.json").is_file():
        write_caption_set(data, CAPTIONS)
    return data


def _drawn(folder: Path, write: Callable[[Path], Path]) -> Path:
    """`write(folder)` unless it exists: drawn into a `.partial` folder renamed when done, so it is never half-made."""
    if not folder.is_dir():
        partial = folder.with_name(f"{folder.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        write(partial).rename(folder)
    return folder
