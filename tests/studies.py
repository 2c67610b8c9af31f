"""Study specs the tests launch for real: a built set and the tiny offline model, small enough for CPU."""

from __future__ import annotations

from pathlib import Path

from forgetkit.clip_encoder import ClipSpec


def tiny_study(shapes: Path, clip: ClipSpec, tmp_path: Path, recipe: str, extra: str = "") -> Path:
    """A built set and a study on the tiny model that trains one recipe `r` on it, scored by logits, on CPU;
    `extra` adds top-level spec lines."""
    from datasets_builders import BuildOptions, build

    build("imagenet-vqa", BuildOptions(shapes, tmp_path / "data", "val", shapes / "class_names.txt", clip=clip))
    spec = tmp_path / "study.yaml"
    spec.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\n"
        "data: {dataset_dir: data, train: [imagenet_vqa_val], image_max_pixels: 4096, cutoff_len: 512}\n"
        f"eval: {{datasets: [imagenet_vqa_val], scoring: logits}}\nrecipes: {{r: {recipe}}}\n{extra}"
    )
    return spec
