"""Builder overhead: `build-data` wall time over bare open_clip `encode_image` on the same images, in one run.

The builder adds file scanning, the embedding cache, the distractor step and every export to the
CLIP forward passes; the target is a ratio of at most 1.15 (the CLIP work dominates). Both sides
decode with the same DataLoader settings and use the same model; the class-text embeddings are
cached before timing (a real build caches them once per model and class list). Also prints the
distractor step for 50k images x 1k classes (target ~1 s on a 2-core CPU).

Run: python benchmarks/builder.py [--images 512] [--model ViT-B-32] [--device cpu|cuda] [--workers N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import Clip, ClipSpec, default_num_workers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distractors import time_distractor_step  # noqa: E402

CLASSES = 100


def make_photos(root: Path, n_images: int, seed: int = 0) -> Path:
    """ImageNet-sized JPEGs (500x375) in `CLASSES` class folders, with a class-names file."""
    rng = np.random.default_rng(seed)
    for index in range(n_images):
        folder = root / f"c{index % CLASSES:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=(375 // 25, 500 // 25, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((500, 375), Image.BILINEAR)
        draw = ImageDraw.Draw(image)
        x, y = rng.integers(0, 400), rng.integers(0, 275)
        draw.ellipse([x, y, x + 100, y + 100], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / f"{index:06d}.jpg", quality=90)
    names = "".join(f"c{c:03d} object number {c}\n" for c in range(CLASSES))
    (root / "class_names.txt").write_text(names)
    return root


class Files(Dataset):
    def __init__(self, paths: list[Path], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(image.convert("RGB"))


@torch.no_grad()
def bare_encode(paths: list[Path], spec: ClipSpec) -> float:
    """What a user would write by hand: load open_clip, DataLoader, encode_image, normalise."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model, _, preprocess = open_clip.create_model_and_transforms(spec.model, pretrained=None, device=spec.device)
    model.eval()
    loader = DataLoader(Files(paths, preprocess), batch_size=spec.batch_size, num_workers=spec.num_workers)
    for pixels in loader:
        features = model.encode_image(pixels.to(spec.device))
        (features / features.norm(dim=-1, keepdim=True)).cpu()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=default_num_workers())
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = make_photos(Path(tmp) / "photos", args.images)
        spec = ClipSpec(
            model=args.model,
            pretrained="none",
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.workers,
            cache_dir=Path(tmp) / "cache",
        )
        paths = sorted(root.rglob("*.jpg"))
        names = [line.split(" ", 1)[1] for line in (root / "class_names.txt").read_text().splitlines()]
        Clip(spec).encode_texts(names)
        bare_encode(paths[: args.batch_size], spec)  # warm-up: thread pools, allocator

        bare = bare_encode(paths, spec)
        start = time.perf_counter()
        options = BuildOptions(
            source=root, out=Path(tmp) / "out", split="val", class_names=root / "class_names.txt", clip=spec
        )
        result = build("imagenet-vqa", options)
        builder = time.perf_counter() - start

    print(f"images: {len(paths)} ({args.model}, {args.device}, batch {args.batch_size}, workers {args.workers})")
    print(f"bare open_clip encode_image: {bare:.2f} s ({len(paths) / bare:.1f} img/s)")
    print(f"build-data imagenet-vqa:     {builder:.2f} s ({result.records} questions, JSON + TSV + manifest)")
    print(f"ratio builder / bare: {builder / bare:.3f} (target <= 1.15)")
    print(f"distractor step, 50k images x 1k classes: {time_distractor_step():.2f} s (target ~1 s)")


if __name__ == "__main__":
    main()
