"""`forgetkit build-data`: run one dataset builder of `datasets_builders` with CLIP-ranked distractors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forgetkit.errors import ForgetkitError


def build_data(
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="Which builder to run, e.g. imagenet-vqa; `--list` shows them all with their --param keys."
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(help="Where the source lives (folder, file or saved HF dataset; each builder says which)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder; becomes LLaMA-Factory's dataset_dir.")] = Path("data"),
    split: Annotated[str, typer.Option(help="Split to build; it names the output, e.g. imagenet_vqa_<split>.")] = "val",
    class_names: Annotated[
        Path | None,
        typer.Option(
            help="A builder's named list (default: the authors'; e.g. openclip for imagenet-vqa, clip-benchmark for "
            "caltech101-vqa, devkit for stanford-cars-vqa) or a file of '<folder> <class name>' lines."
        ),
    ] = None,
    clip_model: Annotated[
        str, typer.Option(help="open_clip model that ranks the distractors (ViT-L-14 + openai: the authors' CLIP).")
    ] = "ViT-L-14",
    clip_pretrained: Annotated[
        str, typer.Option(help="open_clip weights tag or checkpoint file; 'none' = random weights (offline tests).")
    ] = "openai",
    clip_templates: Annotated[
        str,
        typer.Option(
            help="Class-name prompts: photo ('a photo of {name}', the authors'), simple or openai (open_clip's 7 or "
            "80 ImageNet templates, averaged)."
        ),
    ] = "photo",
    seed: Annotated[int, typer.Option(help="Seed for distractors, answer positions, --limit and sampling.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Build from a seeded random subset of this many items.")] = None,
    batch_size: Annotated[int, typer.Option(help="CLIP batch size.")] = 64,
    num_workers: Annotated[int | None, typer.Option(help="Image-decoding workers (default: cores - 1).")] = None,
    device: Annotated[str, typer.Option(help="Torch device for CLIP, e.g. cpu or cuda (fp16/bf16 autocast).")] = "cpu",
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first corrupt image or bad row instead of skipping it.")
    ] = False,
    tsv: Annotated[
        bool | None,
        typer.Option("--tsv/--no-tsv", help="Also write the VLMEvalKit TSV (default: for every split but train)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="CLIP embedding cache; a killed build resumes from it (default: ~/.cache/forgetkit/clip)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the embedding cache.")] = False,
    base: Annotated[str | None, typer.Option(help="mix only: the LF dataset the mix is built around.")] = None,
    mix_with: Annotated[
        list[str] | None,
        typer.Option("--with", help="mix only: NAME:RATIO of another LF dataset, e.g. llava_665k:0.5 (repeatable)."),
    ] = None,
    materialize: Annotated[
        bool, typer.Option("--materialize", help="mix only: write the mixed rows as one JSON instead of LF mixing.")
    ] = False,
    param: Annotated[
        list[str] | None, typer.Option(help="Builder-specific KEY=VALUE, e.g. --param domain=RS (repeatable).")
    ] = None,
    list_builders: Annotated[
        bool, typer.Option("--list", help="List the builders, what they read and their --param keys.")
    ] = False,
) -> None:
    """Build a dataset for LLaMA-Factory (JSON + dataset_info.json entry) and VLMEvalKit (TSV), with a manifest.

    Classification sets become the paper's 4-option questions (App. B.1): the class plus 3
    distractors sampled from the 5 wrong classes CLIP finds most similar to the image.

    Example: forgetkit build-data imagenet-vqa --source /data/imagenet --split val --out data
    """
    from datasets_builders import BUILDERS, BuildOptions, build
    from datasets_builders.registry import parse_params
    from forgetkit.clip_encoder import ClipSpec, default_cache_dir, default_num_workers

    if list_builders:
        for info in sorted(BUILDERS.values(), key=lambda info: info.name):
            typer.echo(f"{info.name:28} {info.summary}")
            for key, text in info.params.items():
                typer.echo(f"{'':30}--param {key}=...  {text}")
        return
    if dataset is None:
        raise ForgetkitError("name a dataset to build, e.g. forgetkit build-data imagenet-vqa; --list shows them all")
    clip = ClipSpec(
        model=clip_model,
        pretrained=clip_pretrained,
        templates=clip_templates,
        device=device,
        batch_size=batch_size,
        num_workers=default_num_workers() if num_workers is None else num_workers,
        seed=seed,
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
    )
    options = BuildOptions(
        source=source,
        out=out,
        split=split,
        class_names=class_names,
        seed=seed,
        limit=limit,
        strict=strict,
        tsv=tsv,
        base=base,
        mix=tuple(mix_with or ()),
        materialize=materialize,
        params=parse_params(param or []),
        clip=clip,
    )
    result = build(dataset, options)
    skipped = f", {result.skipped} skipped (see the manifest)" if result.skipped else ""
    typer.echo(f"{result.dataset}: {result.records} rows{skipped}")
    for path in result.files:
        typer.echo(f"  wrote {path}")
