"""CLIP embeddings: batched, cached in atomic shards, resumable after a crash, equal with or without the cache;
by default the authors' CLIP (ViT-L-14 with OpenAI's weights and their QuickGELU) and prompt."""

import dataclasses
import shutil
import sys
from pathlib import Path

import open_clip
import pytest
import torch

from forgetkit.clip_encoder import Clip, ClipSpec
from forgetkit.errors import ForgetkitError


def images_of(shapes: Path) -> list[Path]:
    return sorted((shapes / "val").rglob("*.png"))


def counting_encoder(clip: Clip) -> list[int]:
    """Record how many images reach the model, to see what the cache saved."""
    seen: list[int] = []
    encode = clip.model.encode_image

    def wrapped(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(len(pixels))
        return encode(pixels)

    clip.model.encode_image = wrapped
    return seen


def test_second_pass_reads_every_shard_from_the_cache(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=5, cache_dir=tmp_path, shard_size=8)
    paths = images_of(shapes)
    first = Clip(spec).encode_images(paths)
    assert len(list(tmp_path.rglob("images-*.shard"))) == 3

    clip = Clip(spec)
    seen = counting_encoder(clip)
    second = clip.encode_images(paths)
    assert seen == []
    assert torch.equal(first.vectors, second.vectors)
    uncached = Clip(dataclasses.replace(spec, cache_dir=None)).encode_images(paths)
    assert torch.equal(first.vectors, uncached.vectors)
    assert torch.allclose(first.vectors.norm(dim=1), torch.ones(len(paths)), atol=1e-2)


def test_a_build_killed_midway_resumes_at_the_first_missing_shard(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "images"
    shutil.copytree(shapes / "val", source)
    paths = sorted(source.rglob("*.png"))
    good_bytes = paths[12].read_bytes()
    paths[12].write_bytes(b"truncated")
    spec = ClipSpec(
        model="tiny-random-clip", pretrained="none", batch_size=4, cache_dir=tmp_path / "cache", shard_size=8
    )

    with pytest.raises(ForgetkitError, match="cannot read image"):
        Clip(spec).encode_images(paths, strict=True)
    assert len(list((tmp_path / "cache").rglob("images-*.shard"))) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    paths[12].write_bytes(good_bytes)
    clip = Clip(spec)
    seen = counting_encoder(clip)
    resumed = clip.encode_images(paths, strict=True)
    assert sum(seen) == len(paths) - 8
    fresh = Clip(dataclasses.replace(spec, cache_dir=None)).encode_images(paths)
    assert torch.equal(resumed.vectors, fresh.vectors)


def test_unreadable_images_are_reported_not_embedded(shapes: Path, tmp_path: Path) -> None:
    paths = images_of(shapes)[:6]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    spec = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=4, cache_dir=tmp_path / "cache")
    result = Clip(spec).encode_images([*paths[:3], broken, tmp_path / "missing.png", *paths[3:]])
    assert result.ok.tolist() == [True, True, True, False, False, True, True, True]
    assert set(result.errors) == {3, 4}
    assert "UnidentifiedImageError" in result.errors[3]
    assert "FileNotFoundError" in result.errors[4]
    assert not result.vectors[3:5].any()
    again = Clip(spec).encode_images([*paths[:3], broken, tmp_path / "missing.png", *paths[3:]])
    assert again.errors == result.errors
    with pytest.raises(ForgetkitError, match=f"cannot read image {broken} .*drop --strict"):
        Clip(spec).encode_images([*paths[:3], broken, tmp_path / "missing.png", *paths[3:]], strict=True)  # cached


def test_a_decompression_bomb_is_skipped_like_any_unreadable_image(shapes: Path, tmp_path: Path) -> None:
    """A PNG whose header claims 196 M pixels: PIL refuses it, and the build goes on without it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 14000, 14000, 8, 2, 0, 0, 0))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    spec = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=4, cache_dir=tmp_path / "cache")
    result = Clip(spec).encode_images([images_of(shapes)[0], bomb])
    assert result.ok.tolist() == [True, False] and "DecompressionBombError" in result.errors[1]


def test_class_text_embeddings_are_cached_by_model_templates_and_class_list(tmp_path: Path) -> None:
    spec = ClipSpec(model="tiny-random-clip", pretrained="none", templates="simple", cache_dir=tmp_path)
    first = Clip(spec).encode_texts(["circle", "square", "star"])
    clip = Clip(spec)
    clip.model.encode_text = None  # any call would fail: the cache must answer
    assert torch.equal(clip.encode_texts(["circle", "square", "star"]), first)
    assert len(list(tmp_path.rglob("text-*.npy"))) == 1
    Clip(spec).encode_texts(["circle", "square"])
    Clip(dataclasses.replace(spec, templates="photo")).encode_texts(["circle", "square", "star"])
    assert len(list(tmp_path.rglob("text-*.npy"))) == 3


def test_the_default_prompt_is_the_authors_one_normalised_embedding_of_a_photo_of_name() -> None:
    clip = Clip(ClipSpec(model="tiny-random-clip", pretrained="none", cache_dir=None))
    with torch.no_grad():
        direct = clip.model.encode_text(clip.tokenizer(["a photo of red circle", "a photo of blue star"]))
    expected = direct / direct.norm(dim=-1, keepdim=True)
    assert torch.allclose(clip.encode_texts(["red circle", "blue star"]), expected, atol=1e-6)


def test_the_defaults_are_the_authors_clip_and_open_clips_template_sets_are_options() -> None:
    spec = ClipSpec()
    assert (spec.model, spec.pretrained, spec.templates, spec.prompts()) == (
        "ViT-L-14",
        "openai",
        "photo",
        ("a photo of {}",),
    )
    assert spec.quick_gelu() and ClipSpec(model="ViT-B-32").quick_gelu()
    assert not ClipSpec(pretrained="none").quick_gelu()
    simple = ClipSpec(templates="simple").prompts()
    assert simple == tuple(template("{}") for template in open_clip.SIMPLE_IMAGENET_TEMPLATES) and len(simple) == 7
    assert simple[0] == "itap of a {}."
    assert len(ClipSpec(templates="openai").prompts()) == 80
    with pytest.raises(
        ForgetkitError,
        match="unknown CLIP prompt templates 'fancy'; pass --clip-templates with one of: photo, simple, openai",
    ):
        ClipSpec(templates="fancy")


def test_openai_weights_are_built_with_their_quick_gelu(monkeypatch: pytest.MonkeyPatch) -> None:
    """open_clip 3.3 builds ViT-L-14 with GELU, even for `openai` weights, unless told otherwise."""
    seen: dict = {}

    def offline(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    with pytest.raises(ForgetkitError, match="could not load CLIP weights 'openai' for ViT-L-14"):
        Clip(ClipSpec(cache_dir=None))
    assert seen["force_quick_gelu"] is True and seen["pretrained"] == "openai"


def test_unknown_model_and_missing_weights_get_one_line_errors() -> None:
    with pytest.raises(ForgetkitError, match="unknown CLIP model 'ViT-Nope'"):
        Clip(ClipSpec(model="ViT-Nope", cache_dir=None))


CLI_CLIP = ["--clip-model", "tiny-random-clip", "--clip-pretrained", "none", "--num-workers", "0"]


def cli_build(shapes: Path, out: Path, cache: Path, *extra: str) -> str:
    from typer.testing import CliRunner

    from forgetkit.cli import app

    args = ["build-data", "imagenet-vqa", "--source", str(shapes), "--split", "train", "--out", str(out)]
    args += ["--class-names", str(shapes / "class_names.txt"), "--cache-dir", str(cache), *CLI_CLIP, *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def dataset_files(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.iterdir()) if path.is_file()}


def test_shards_built_apart_write_the_same_bytes_as_one_build(shapes: Path, tmp_path: Path) -> None:
    """36 images in 8 cache shards of 5, encoded as 3 shares by 3 processes; the build after them encodes nothing."""
    cli_build(shapes, tmp_path / "one", tmp_path / "cache-one")  # one shard of 8192, one process
    cache = tmp_path / "cache"
    for index in range(3):
        said = cli_build(shapes, tmp_path / "shared", cache, "--clip-shard-size", "5", "--shard", f"{index}/3")
        assert f"shard {index}/3: this share's {len(range(index, 8, 3))} of 8 embedding-cache shards are cached" in said
        assert not (tmp_path / "shared" / "imagenet_vqa_train.json").exists(), "a share writes no dataset"
    shards = {path: path.stat().st_mtime_ns for path in cache.rglob("images-*.shard")}
    assert len(shards) == 8

    cli_build(shapes, tmp_path / "shared", cache, "--clip-shard-size", "5")

    assert {path: path.stat().st_mtime_ns for path in cache.rglob("images-*.shard")} == shards, "none re-encoded"
    one, shared = dataset_files(tmp_path / "one"), dataset_files(tmp_path / "shared")
    assert "imagenet_vqa_train.json" in one and one == shared


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--shard", "3/3"], "--shard 3/3: I must be 0..N-1"),
        (["--shard", "two"], "--shard 'two' is not I/N"),
        (["--shard", "0/2", "--no-cache"], "--shard needs the embedding cache"),
        (["--shards", "4"], "add --backend slurm"),
        (["--backend", "slurm", "--shards", "1"], "--shards must be at least 2"),
        (["--clip-shard-size", "0"], "--clip-shard-size must be at least 1"),
    ],
)
def test_bad_shard_options_are_one_line_naming_the_fix(
    shapes: Path, tmp_path: Path, extra: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from forgetkit.cli import main

    args = ["build-data", "imagenet-vqa", "--source", str(shapes), "--out", str(tmp_path / "out"), *CLI_CLIP, *extra]
    monkeypatch.setattr(sys, "argv", ["forgetkit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()
