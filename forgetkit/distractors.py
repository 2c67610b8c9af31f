"""CLIP-hard distractors (paper App. B.1): embed images and class names with open_clip, then for
every image take the 5 most similar wrong classes and sample 3 of them.

Class names are grouped by their case-folded text before ranking, so two classes that share a
name (ImageNet has "missile" and "sunglasses" twice) are one candidate, and a class named like
the truth is never a distractor: no question can show two options with the same text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

POOL = 5
PICK = 3
CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
"""Extra open_clip architectures; `tiny-random-clip` runs the real code path fast, for tests."""


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model embeds images and class names, and how the work is batched."""

    model: str = "ViT-B-32"
    pretrained: str = "openai"
    device: str = "cpu"
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0

    @property
    def random_weights(self) -> bool:
        return self.pretrained.lower() == "none"


class Clip:
    """An open_clip model with its image transform and tokenizer, loaded once per build."""

    def __init__(self, spec: ClipSpec) -> None:
        import open_clip

        self.spec = spec
        open_clip.add_model_config(CONFIG_DIR)
        if spec.model not in open_clip.list_models():
            raise ForgetkitError(
                f"unknown CLIP model {spec.model!r}; pick one of open_clip.list_models(), e.g. ViT-B-32"
            )
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.model, pretrained=None if spec.random_weights else spec.pretrained, device=spec.device
                )
        except RuntimeError as err:
            raise ForgetkitError(
                f"could not load CLIP weights {spec.pretrained!r} for {spec.model} ({str(err).splitlines()[0]}); "
                "download them once with network access, pass a local checkpoint file to --clip-pretrained, "
                "or use --clip-pretrained none for random weights"
            ) from None
        self.model = model.eval()
        self.preprocess: Callable[[Image.Image], torch.Tensor] = preprocess
        self.tokenizer = open_clip.get_tokenizer(spec.model)

    @torch.no_grad()
    def encode_texts(self, class_names: Sequence[str], templates: Sequence[Callable[[str], str]]) -> torch.Tensor:
        """One unit vector per class: the normalised mean of its prompt-template embeddings."""
        prompts = [template(name) for name in class_names for template in templates]
        chunks = []
        for start in tqdm(range(0, len(prompts), self.spec.batch_size), desc="CLIP text", unit="batch", leave=False):
            tokens = self.tokenizer(prompts[start : start + self.spec.batch_size]).to(self.spec.device)
            chunks.append(_unit(self.model.encode_text(tokens).float()).cpu())
        per_prompt = torch.cat(chunks).view(len(class_names), len(templates), -1)
        return _unit(per_prompt.mean(dim=1))

    @torch.no_grad()
    def encode_images(self, paths: Sequence[Path]) -> torch.Tensor:
        """Unit image embeddings in the order of `paths`; an unreadable image stops the build by name."""
        loader = DataLoader(
            _ImageFiles(paths, self.preprocess),
            batch_size=self.spec.batch_size,
            num_workers=self.spec.num_workers,
            pin_memory=self.spec.device.startswith("cuda"),
            collate_fn=_collate,
        )
        out = torch.empty(len(paths), self.model.visual.output_dim)
        done = 0
        with tqdm(total=len(paths), desc="CLIP images", unit="img") as bar:
            for pixels, errors in loader:
                if errors:
                    index, message = errors[0]
                    raise ForgetkitError(
                        f"cannot read image {paths[index]} ({message}); replace or remove the file and rerun"
                    )
                pixels = pixels.to(self.spec.device, non_blocking=True)
                embeddings = _unit(self.model.encode_image(pixels).float()).cpu()
                out[done : done + len(embeddings)] = embeddings
                done += len(embeddings)
                bar.update(len(embeddings))
        return out


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            with Image.open(self.paths[index]) as image:
                return index, self.preprocess(image.convert("RGB")), ""
        except (OSError, ValueError, SyntaxError) as err:
            return index, None, f"{type(err).__name__}: {err}"


def _collate(items: list[tuple[int, torch.Tensor | None, str]]) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    errors = [(index, message) for index, _, message in items if message]
    if errors:
        return torch.empty(0), errors
    return torch.stack([pixels for _, pixels, _ in items]), []


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def group_names(class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Merge classes whose names differ only in case or spacing: (group names, group id per class)."""
    groups: dict[str, int] = {}
    names: list[str] = []
    group_of_class = np.empty(len(class_names), dtype=np.int64)
    for index, name in enumerate(class_names):
        key = " ".join(name.split()).casefold()
        if key not in groups:
            groups[key] = len(names)
            names.append(" ".join(name.split()))
        group_of_class[index] = groups[key]
    return names, group_of_class


def pick_distractors(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    labels: np.ndarray,
    group_of_class: np.ndarray,
    rng: np.random.Generator,
    pool: int = POOL,
    pick: int = PICK,
    chunk: int = 8192,
) -> np.ndarray:
    """For each image, `pick` name groups sampled from the `pool` most CLIP-similar wrong groups.

    One chunked tensor op per `chunk` images: similarity, max over classes sharing a name, mask the
    truth's group, top-`pool`, then a seeded random choice of `pick` among them.
    """
    n_groups = int(group_of_class.max()) + 1
    if n_groups - 1 < pick:
        raise ForgetkitError(
            f"only {n_groups} distinct class names: need at least {pick + 1} to make {pick} distractors"
        )
    if n_groups - 1 < pool:
        log.warning("only %d wrong class names per image: sampling distractors from all of them", n_groups - 1)
        pool = n_groups - 1
    groups = torch.from_numpy(group_of_class)
    truth_groups = torch.from_numpy(group_of_class[labels])
    sample_keys = torch.from_numpy(rng.random((len(labels), pool)))
    out = np.empty((len(labels), pick), dtype=np.int64)
    for start in range(0, len(labels), chunk):
        stop = min(start + chunk, len(labels))
        sims = image_emb[start:stop] @ text_emb.T
        by_group = torch.full((stop - start, n_groups), -torch.inf).scatter_reduce(
            1, groups.expand(stop - start, -1), sims, reduce="amax"
        )
        by_group.scatter_(1, truth_groups[start:stop, None], -torch.inf)
        top = by_group.topk(pool, dim=1).indices
        chosen = sample_keys[start:stop].argsort(dim=1)[:, :pick]
        out[start:stop] = top.gather(1, chosen).numpy()
    return out


def place_answers(
    truth: np.ndarray, distractors: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Insert each truth at a uniformly random position among its distractors: (options, answer index)."""
    n, n_distractors = distractors.shape
    positions = rng.integers(0, n_distractors + 1, size=n)
    options = np.empty((n, n_distractors + 1), dtype=np.int64)
    slot = np.arange(n_distractors + 1)[None, :]
    before = slot < positions[:, None]
    after = slot > positions[:, None]
    options[before] = distractors[:, :n_distractors][before[:, :n_distractors]]
    options[after] = distractors[after[:, 1:]]
    options[np.arange(n), positions] = truth
    return options, positions


def default_num_workers() -> int:
    return min(8, max(0, (os.cpu_count() or 1) - 1))
