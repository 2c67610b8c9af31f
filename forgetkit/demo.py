"""`forgetkit demo`: every stage of the pipeline, for real, offline, on a CPU in a few minutes."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.resources import bundled
from forgetkit.study import launch, load_study
from forgetkit.testing.synthetic import make_image_folder
from forgetkit.testing.vlmeval_data import TINY_MMMU, write_mmmu_tsv

SPLITS = {"train": 16, "val": 4}


def run_demo(workdir: Path) -> dict[str, dict[str, dict]]:
    """Drawn images → CLIP-hard MCQs (random-weight CLIP) → `runs/demo.yaml` study → score table.

    Each step skips work whose output is already in `workdir`, so an interrupted demo continues.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    images = workdir / "images"
    if not (images / "class_names.txt").is_file():
        partial = images.with_name("images.partial")
        for stale in (images, partial):
            shutil.rmtree(stale, ignore_errors=True)
        make_image_folder(partial, splits=SPLITS).rename(images)
    data = workdir / "data"
    for split in SPLITS:
        if not (data / f"imagenet_vqa_{split}.manifest.json").is_file():
            build(
                "imagenet-vqa",
                BuildOptions(
                    source=images,
                    out=data,
                    split=split,
                    class_names=images / "class_names.txt",
                    clip=ClipSpec(pretrained="none", batch_size=32, num_workers=0),
                ),
            )
    if not (data / "lmudata" / f"{TINY_MMMU}.tsv").is_file():
        write_mmmu_tsv(data / "lmudata")
    spec = workdir / "demo.yaml"
    shutil.copyfile(bundled("runs/demo.yaml"), spec)
    return launch(load_study(spec), workdir / "run")
