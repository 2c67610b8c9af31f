"""`forgetkit build-data`: run one dataset builder of `datasets_builders` with CLIP-ranked distractors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from forgetkit.cli.study import Backend
from forgetkit.errors import ForgetkitError

SLURM_ONLY = ("--backend", "--shards", "--sbatch", "--shard")
"""build-data's options a Slurm job's own command line leaves out (`_submit_build` sets `--shard` per task)."""


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
    shard: Annotated[
        str | None,
        typer.Option(
            help="I/N: encode only share I (0..N-1) of the CLIP embedding cache and stop, for N parallel jobs; a "
            "build without --shard then writes the dataset from the cache (same bytes as one process)."
        ),
    ] = None,
    clip_shard_size: Annotated[
        int | None,
        typer.Option(
            help="Images per embedding-cache shard (default 8192): the unit --shard splits and a resumed build skips."
        ),
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(help="local: build here; slurm: submit --shards array tasks and a final job that writes it."),
    ] = Backend.local,
    shards: Annotated[
        int, typer.Option(help="With --backend slurm: how many array tasks share the CLIP encoding.")
    ] = 1,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(help="With --backend slurm, an #SBATCH option for both jobs as KEY=VALUE (e.g. gres=gpu:1)."),
    ] = None,
) -> None:
    """Build a dataset for LLaMA-Factory (JSON + dataset_info.json entry) and VLMEvalKit (TSV), with a manifest.

    Classification sets become the paper's 4-option questions (App. B.1): the class plus 3
    distractors sampled from the 5 wrong classes CLIP finds most similar to the image.

    Example: forgetkit build-data imagenet-vqa --source /data/imagenet --split val --out data

    ImageNet train on a cluster: add --backend slurm --shards 16 --sbatch gres=gpu:1 --device cuda.
    """
    from datasets_builders import BUILDERS, BuildOptions, build
    from datasets_builders.registry import parse_params
    from forgetkit.clip_encoder import ClipSpec, ShareEncoded, default_cache_dir, default_num_workers

    if list_builders:
        for info in sorted(BUILDERS.values(), key=lambda info: info.name):
            typer.echo(f"{info.name:28} {info.summary}")
            for key, text in info.params.items():
                typer.echo(f"{'':30}--param {key}=...  {text}")
        return
    if dataset is None:
        raise ForgetkitError("name a dataset to build, e.g. forgetkit build-data imagenet-vqa; --list shows them all")
    if backend is Backend.slurm:
        _submit_build(dataset, split, out, shards, shard, sbatch or [])
        return
    if shards != 1 or sbatch:
        raise ForgetkitError("--shards and --sbatch split a build into Slurm jobs; add --backend slurm")
    clip = ClipSpec(
        model=clip_model,
        pretrained=clip_pretrained,
        templates=clip_templates,
        device=device,
        batch_size=batch_size,
        num_workers=default_num_workers() if num_workers is None else num_workers,
        seed=seed,
        cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
        share=None if shard is None else _share(shard),
        **({} if clip_shard_size is None else {"shard_size": clip_shard_size}),
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
    try:
        result = build(dataset, options)
    except ShareEncoded as done:
        typer.echo(str(done), err=True)
        return
    skipped = f", {result.skipped} skipped (see the manifest)" if result.skipped else ""
    typer.echo(f"{result.dataset}: {result.records} rows{skipped}")
    for path in result.files:
        typer.echo(f"  wrote {path}")


def _share(text: str) -> tuple[int, int]:
    index, slash, count = text.partition("/")
    if not (slash and index.isdigit() and count.isdigit() and int(count) >= 1):
        raise ForgetkitError(f"--shard {text!r} is not I/N, e.g. --shard 0/8 for the first of 8 shares")
    return int(index), int(count)


def _submit_build(dataset: str, split: str, out: Path, shards: int, shard: str | None, sbatch: list[str]) -> None:
    """`shards` array tasks encoding the CLIP cache in shares, then one job writing the dataset (`slurm.build_jobs`),
    each running this same command line without the Slurm options."""
    from forgetkit import slurm

    if shard is not None:
        raise ForgetkitError("--shard picks one share for a job to run here; with --backend slurm use --shards N")
    if shards < 2:
        raise ForgetkitError(f"--backend slurm splits the CLIP encoding: --shards must be at least 2, got {shards}")
    options = slurm.parse_options(sbatch)
    if any(":" in key for key in options):
        raise ForgetkitError("--sbatch KIND:KEY=VALUE names a stage kind of a study; build-data takes KEY=VALUE")
    name = f"build-{dataset}-{split}"
    jobs = slurm.build_jobs(_without_slurm_options(sys.argv[1:]), shards, out, name, options)
    folder = out.absolute() / "slurm"
    ids = slurm.submit(jobs, folder, folder / f"{name}.jobs.json")
    typer.echo(
        f"submitted {ids[jobs[0].stage]} ({shards} array tasks encoding CLIP shares) and {ids[jobs[1].stage]} "
        f"(writes {out} after them); scripts and logs in {folder}"
    )


def _without_slurm_options(argv: list[str]) -> list[str]:
    """`argv` less SLURM_ONLY options and their values, in both `--opt value` and `--opt=value` spellings."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SLURM_ONLY:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in SLURM_ONLY)):
            kept.append(arg)
    return kept
