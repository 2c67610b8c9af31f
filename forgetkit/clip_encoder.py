"""open_clip image and class-name embeddings, batched and cached.

Image embeddings are the slow part of a build (ImageNet train is 1.28 M images), so they are
written in fixed-size shards, each atomically, keyed by the model and the exact image files it
covers: a killed build resumes at the first missing shard. Class-name embeddings are cached
keyed by model, weights, prompt templates and class list.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.cache import cache_root
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
"""Extra open_clip architectures; `tiny-random-clip` runs the real code path fast, for tests and the demo."""
SHARD_SIZE = 8192
TEMPLATE_SETS = ("photo", "simple", "openai")
"""Prompt sets for the class-name embeddings: `photo` is the authors' one prompt, `simple` and `openai` are
open_clip's 7 and 80 ImageNet templates (their embeddings are averaged)."""
AUTHORS_PROMPT = "a photo of {}"
"""The prompt of the authors' builders (`f"a photo of {name}"`, no article), `{}` standing for the class name."""


def default_cache_dir() -> Path:
    return cache_root() / "clip"


def default_num_workers() -> int:
    return min(8, max(0, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model embeds images and class names, and how the work is batched and cached.

    The defaults are the authors' CLIP: open_clip's ViT-L-14 with `openai` weights is the network of
    `openai/clip-vit-large-patch14`, prompted with `a photo of {name}`.
    """

    model: str = "ViT-L-14"
    pretrained: str = "openai"
    templates: str = "photo"
    device: str = "cpu"
    batch_size: int = 64
    num_workers: int = 0
    seed: int = 0
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    """None turns caching off."""
    shard_size: int = SHARD_SIZE
    """Images per embedding-cache shard: what a resumed build skips and `share` splits."""
    share: tuple[int, int] | None = None
    """(I, N): encode only cache shards I, I+N, I+2N, ... and stop (`ShareEncoded`), for one of N parallel jobs;
    a build without it then finds every shard cached and writes the dataset."""

    def __post_init__(self) -> None:
        if self.templates not in TEMPLATE_SETS:
            raise ForgetkitError(
                f"unknown CLIP prompt templates {self.templates!r}; pass --clip-templates with one of: "
                f"{', '.join(TEMPLATE_SETS)}"
            )
        if self.shard_size < 1:
            raise ForgetkitError(f"--clip-shard-size must be at least 1, got {self.shard_size}")
        if self.share is not None:
            index, count = self.share
            if not 0 <= index < count:
                raise ForgetkitError(f"--shard {index}/{count}: I must be 0..N-1, e.g. --shard 0/{max(count, 2)}")
            if self.cache_dir is None:
                raise ForgetkitError("--shard needs the embedding cache, where the shares meet; drop --no-cache")

    @property
    def random_weights(self) -> bool:
        return self.pretrained.lower() == "none"

    def weights_id(self) -> str:
        """What identifies the weights: the tag, a local file's size and mtime, or the seed of random ones."""
        if self.random_weights:
            return f"random-seed{self.seed}"
        path = Path(self.pretrained)
        if path.is_file():
            stat = path.stat()
            return f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return self.pretrained

    def quick_gelu(self) -> bool:
        """Whether the weights were trained with QuickGELU, as open_clip's tag says: open_clip 3.3 builds ViT-L-14
        with GELU even for `openai` weights (it only warns), which is not the network the weights belong to."""
        if self.random_weights or Path(self.pretrained).is_file():
            return False
        import open_clip

        return bool(open_clip.get_pretrained_cfg(self.model, self.pretrained).get("quick_gelu", False))

    def prompts(self) -> tuple[str, ...]:
        """The prompt patterns of `templates`, `{}` standing for the class name."""
        if self.templates == "photo":
            return (AUTHORS_PROMPT,)
        import open_clip

        sets = {"simple": open_clip.SIMPLE_IMAGENET_TEMPLATES, "openai": open_clip.OPENAI_IMAGENET_TEMPLATES}
        return tuple(template("{}") for template in sets[self.templates])

    def describe(self) -> dict:
        return {
            "model": self.model,
            "pretrained": self.pretrained,
            "weights_id": self.weights_id(),
            "quick_gelu": self.quick_gelu(),
            "templates": self.templates,
            "prompts": list(self.prompts()),
        }


class ShareEncoded(Exception):
    """A `share` build's images are encoded and cached; it writes no dataset. The message says how far all
    shares are."""


@dataclass(frozen=True)
class ImageEmbeddings:
    """Unit embeddings rounded to fp16 (as cached, so a resumed build equals a fresh one), one row per
    image; rows of unreadable images are zero and `ok` is False there."""

    vectors: torch.Tensor
    ok: np.ndarray
    errors: dict[int, str]


class Clip:
    """An open_clip model with its image transform and tokenizer, loaded once per build."""

    def __init__(self, spec: ClipSpec) -> None:
        import open_clip

        self.spec = spec
        open_clip.add_model_config(CONFIG_DIR)
        if spec.model not in open_clip.list_models():
            raise ForgetkitError(
                f"unknown CLIP model {spec.model!r}; pick one of open_clip.list_models(), e.g. ViT-L-14 or ViT-B-32"
            )
        quick_gelu = spec.quick_gelu()
        self.cache_key = [spec.model, spec.weights_id(), f"quick_gelu={quick_gelu}"]
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(spec.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.model,
                    pretrained=None if spec.random_weights else spec.pretrained,
                    device=spec.device,
                    force_quick_gelu=quick_gelu,
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
        self.dim: int = self.model.visual.output_dim

    def _autocast(self) -> contextlib.AbstractContextManager:
        """Half precision on GPU, where it is ~2x faster; fp32 on CPU, where half is slower."""
        if self.spec.device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_texts(self, class_names: Sequence[str]) -> torch.Tensor:
        """One unit vector per class: the normalised mean of the unit embeddings of its prompts (cached); with one
        prompt, the authors' normalised `a photo of {name}` embedding."""
        templates = self.spec.prompts()
        prompts = [template.replace("{}", name) for name in class_names for template in templates]
        cache = self._cache_file("text", [*self.cache_key, *prompts])
        if cache is not None and cache.is_file():
            return torch.from_numpy(np.load(cache))
        chunks = []
        for start in tqdm(range(0, len(prompts), self.spec.batch_size), desc="CLIP text", unit="batch", leave=False):
            tokens = self.tokenizer(prompts[start : start + self.spec.batch_size]).to(self.spec.device)
            with self._autocast():
                chunks.append(_unit(self.model.encode_text(tokens).float()).cpu())
        per_prompt = torch.cat(chunks).view(len(class_names), len(templates), -1)
        vectors = _unit(per_prompt.mean(dim=1))
        if cache is not None:
            _save_npy(cache, vectors.numpy())
        return vectors

    @torch.no_grad()
    def encode_images(self, paths: Sequence[Path], strict: bool = False) -> ImageEmbeddings:
        """Unit image embeddings in the order of `paths`, computed shard by shard and cached.

        With `strict`, an unreadable image stops the build by name; otherwise its row is marked
        not ok, its error kept, and the build goes on. With the spec's `share`, only that share's shards are
        encoded and `ShareEncoded` is raised instead of returning.
        """
        size = self.spec.shard_size
        shards = [_Shard(start, paths[start : start + size], self) for start in range(0, len(paths), size)]
        if self.spec.share is not None:
            index, count = self.spec.share
            shards = shards[index::count]
        vectors = torch.zeros(len(paths), self.dim)
        ok = np.zeros(len(paths), dtype=bool)
        errors: dict[int, str] = {}
        todo = []
        for shard in shards:
            if shard.load(vectors, ok, errors):
                continue
            todo.append(shard)
        if strict and errors:
            first = min(errors)
            raise _unreadable(paths[first], errors[first])
        total = sum(len(shard.paths) for shard in shards)
        cached = total - sum(len(shard.paths) for shard in todo)
        with tqdm(total=total, initial=cached, desc="CLIP images", unit="img", smoothing=0.1) as bar:
            for shard, batch_vectors, batch_ok, batch_errors in self._run(todo):
                stop = shard.start + len(shard.paths)
                vectors[shard.start : stop] = batch_vectors
                ok[shard.start : stop] = batch_ok
                for offset, message in batch_errors.items():
                    if strict:
                        raise _unreadable(shard.paths[offset], message)
                    errors[shard.start + offset] = message
                shard.save(batch_vectors, batch_ok, batch_errors)
                bar.update(len(shard.paths))
        if self.spec.share is not None:
            raise ShareEncoded(self._share_report(paths, len(shards), len(todo)))
        return ImageEmbeddings(vectors, ok, errors)

    def _share_report(self, paths: Sequence[Path], mine: int, encoded: int) -> str:
        index, count = self.spec.share or (0, 1)
        every = -(-len(paths) // self.spec.shard_size)
        return (
            f"shard {index}/{count}: this share's {mine} of {every} embedding-cache shards are cached ({encoded} "
            "encoded now); once every share is done, build again without --shard to write the dataset"
        )

    def _run(self, shards: list[_Shard]) -> Iterator[tuple[_Shard, torch.Tensor, np.ndarray, dict[int, str]]]:
        """One DataLoader over every missing shard; batches never straddle two shards."""
        if not shards:
            return
        flat: list[Path] = [path for shard in shards for path in shard.paths]
        batches: list[list[int]] = []
        owner: list[int] = []
        offset = 0
        for number, shard in enumerate(shards):
            for start in range(0, len(shard.paths), self.spec.batch_size):
                batches.append(
                    list(range(offset + start, offset + min(start + self.spec.batch_size, len(shard.paths))))
                )
                owner.append(number)
            offset += len(shard.paths)
        loader = DataLoader(
            _ImageFiles(flat, self.preprocess),
            batch_sampler=batches,
            num_workers=self.spec.num_workers,
            pin_memory=self.spec.device.startswith("cuda"),
            collate_fn=_collate,
        )
        current = -1
        vectors = torch.empty(0)
        ok = np.empty(0, dtype=bool)
        errors: dict[int, str] = {}
        filled = 0
        for number, (pixels, good, batch_errors) in zip(owner, loader):
            if number != current:
                current = number
                vectors = torch.zeros(len(shards[number].paths), self.dim)
                ok = np.zeros(len(shards[number].paths), dtype=bool)
                errors = {}
                filled = 0
            rows = filled + np.asarray(good, dtype=np.int64)
            if len(good):
                with self._autocast():
                    encoded = self.model.encode_image(pixels.to(self.spec.device, non_blocking=True))
                vectors[torch.from_numpy(rows)] = _unit(encoded.float()).cpu().half().float()
                ok[rows] = True
            errors.update({filled + position: message for position, message in batch_errors.items()})
            filled += len(good) + len(batch_errors)
            if filled == len(shards[number].paths):
                yield shards[number], vectors, ok, errors

    def _cache_file(self, kind: str, key_parts: Sequence[str], suffix: str = ".npy") -> Path | None:
        if self.spec.cache_dir is None:
            return None
        digest = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:32]
        return self.spec.cache_dir / _safe(self.spec.model) / f"{kind}-{digest}{suffix}"


def _unreadable(path: Path, message: str) -> ForgetkitError:
    """`--strict`'s stop at an unreadable image, whether it was just read or its failure is cached."""
    return ForgetkitError(
        f"cannot read image {path} ({message}); replace or remove the file, or drop --strict to skip unreadable images"
    )


class _Shard:
    """SHARD_SIZE consecutive images; its cache key covers the model and each file's path, size and mtime."""

    def __init__(self, start: int, paths: Sequence[Path], clip: Clip) -> None:
        self.start = start
        self.paths = paths
        stamps = []
        for path in paths:
            try:
                stat = os.stat(path)
                stamps.append(f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
            except OSError:
                stamps.append(f"{path}:missing")
        preprocess = repr(clip.preprocess)
        self.file = clip._cache_file("images", [*clip.cache_key, preprocess, *stamps], suffix=".shard")

    def load(self, vectors: torch.Tensor, ok: np.ndarray, errors: dict[int, str]) -> bool:
        if self.file is None or not self.file.is_file():
            return False
        with open(self.file, "rb") as handle:
            stored = np.load(handle, allow_pickle=False)
            meta = json.loads(np.load(handle, allow_pickle=False).tobytes().decode())
        stop = self.start + len(self.paths)
        vectors[self.start : stop] = torch.from_numpy(stored).float()
        ok[self.start : stop] = np.asarray(meta["ok"], dtype=bool)
        errors.update({self.start + int(offset): message for offset, message in meta["errors"].items()})
        return True

    def save(self, vectors: torch.Tensor, ok: np.ndarray, errors: dict[int, str]) -> None:
        if self.file is None:
            return
        meta = json.dumps({"ok": ok.tolist(), "errors": {str(k): v for k, v in errors.items()}}).encode()
        buffer = io.BytesIO()
        np.save(buffer, vectors.half().numpy(), allow_pickle=False)
        np.save(buffer, np.frombuffer(meta, dtype=np.uint8), allow_pickle=False)
        with atomic.atomic_open(self.file, "wb") as handle:
            handle.write(buffer.getvalue())


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], preprocess: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            with Image.open(self.paths[index]) as image:
                return self.preprocess(image.convert("RGB")), ""
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return None, f"{type(err).__name__}: {err}"


def _collate(items: list[tuple[torch.Tensor | None, str]]) -> tuple[torch.Tensor, list[int], dict[int, str]]:
    """Stack the readable images; report the others by their position in the batch."""
    good = [position for position, (pixels, _) in enumerate(items) if pixels is not None]
    errors = {position: message for position, (pixels, message) in enumerate(items) if pixels is None}
    pixels = torch.stack([items[position][0] for position in good]) if good else torch.empty(0)
    return pixels, good, errors


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic.atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
