"""Time the distractor step (similarity, name-group max, top-5, sample 3, place truth) for 50k images x 1k classes.

Target on a 2-core CPU: about 1 s (a per-image Python loop is ~15x slower). Run: python benchmarks/distractors.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from forgetkit.distractors import pick_distractors, place_answers


def time_distractor_step(n_images: int = 50_000, n_classes: int = 1_000, dim: int = 512) -> float:
    """Seconds for one pass of the chunked distractor step over random unit embeddings."""
    generator = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(n_classes, dim, generator=generator), dim=1)
    images = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=generator), dim=1)
    labels = np.random.default_rng(0).integers(0, n_classes, n_images)
    groups = np.arange(n_classes)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    distractors = pick_distractors(images, text, labels, groups, rng)
    place_answers(groups[labels], distractors, rng)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    elapsed = time_distractor_step(args.images, args.classes, args.dim)
    print(f"distractors for {args.images} images x {args.classes} classes: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
