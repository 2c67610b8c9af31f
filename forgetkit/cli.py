"""The `forgetkit` command: each verb parses its options and calls one library function."""

from __future__ import annotations

import inspect
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
import yaml
from typer._click.exceptions import ClickException

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import help_of
from forgetkit.recipes import Recipe
from forgetkit.render import DataSpec
from forgetkit.stage_names import KINDS, stage_kind, stage_name

if TYPE_CHECKING:
    from forgetkit.spec import Study

app = typer.Typer(
    help=(
        "Measure what fine-tuning a multimodal LLM makes it forget.\n\n"
        "Typical flow: build-data (CLIP-hard multiple-choice VQA from an image folder) -> "
        "render-config (a LLaMA-Factory recipe) -> launch (train, predict every checkpoint, score) -> "
        "score (accuracy tables). `forgetkit demo` runs all of it offline on a tiny model."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("build-data")
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


def _with_recipe_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per `Recipe` field after `--template`, named, typed and helped by the field
    itself; the command receives the ones given as `recipe` (the preset or the defaults fill the rest)."""
    hints = get_type_hints(Recipe)
    options = [
        inspect.Parameter(
            knob.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[hints[knob.name] | None, typer.Option(help=help_of(knob))],
        )
        for knob in fields(Recipe)
    ]
    own = [param for name, param in inspect.signature(command, eval_str=True).parameters.items() if name != "recipe"]
    at = next(i for i, param in enumerate(own) if param.name == "template") + 1

    def with_options(**given: Any) -> None:
        recipe = {knob.name: given.pop(knob.name) for knob in fields(Recipe)}
        command(**given, recipe={name: value for name, value in recipe.items() if value is not None})

    with_options.__name__, with_options.__doc__ = command.__name__, command.__doc__
    with_options.__signature__ = inspect.Signature([*own[:at], *options, *own[at:]])  # type: ignore[attr-defined]
    return with_options


@app.command("render-config")
@_with_recipe_options
def render_config(
    preset: Annotated[
        str | None, typer.Option(help="A recipe of the papers by name (--list-presets); other options override it.")
    ] = None,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="Print every preset with its numbers and source, then exit.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="qwen2.5-vl-3b (default), qwen2.5-vl-7b, llava-1.5-7b, or a local path / hub id + --template."
        ),
    ] = None,
    template: Annotated[str | None, typer.Option(help="LF chat template; required for unregistered models.")] = None,
    gpus: Annotated[
        int, typer.Option(help="World size (GPUs over all nodes); per-device batch x accumulation x gpus = batch.")
    ] = 1,
    dataset: Annotated[
        str, typer.Option(help="LF dataset name(s), comma-separated; the first is the base of a mix.")
    ] = "imagenet_vqa_train",
    mix_ratio: Annotated[
        str | None,
        typer.Option(help="Share of rows from each dataset after the first, e.g. 0.5 (LF interleave_over)."),
    ] = None,
    dataset_dir: Annotated[str, typer.Option(help="Folder holding dataset_info.json.")] = "data",
    deepspeed: Annotated[
        str | None, typer.Option(help="z2 or z3 (shipped ZeRO configs) or a DeepSpeed JSON path.")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Where LF writes checkpoints (default: saves/<model>/<preset or recipe>).")
    ] = None,
    cpu: Annotated[
        bool, typer.Option("--cpu", help="fp32 and no dataloader workers, for machines without a GPU.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the YAML here instead of printing.")
    ] = None,
    validate: Annotated[bool, typer.Option(help="Check the YAML with LLaMA-Factory's own parser first.")] = True,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Let LF run the Python files the model names in its config.json (auto_map); off by default, "
            "Qwen2.5-VL and LLaVA need none.",
        ),
    ] = False,
    check_trainable: Annotated[
        bool,
        typer.Option(
            "--check-trainable",
            help="Apply LF's own freezing/LoRA code to a tiny offline stand-in model and print what trains.",
        ),
    ] = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Render a LLaMA-Factory training YAML for one recipe (default: the paper's LLM full 1e-6).

    Examples: forgetkit render-config --part llm --lr 1e-6 -o train.yaml;
    forgetkit render-config --preset fig2-a --gpus 8 --deepspeed z2
    """
    from forgetkit import atomic
    from forgetkit.presets import preset_table
    from forgetkit.train_config import TrainRequest, render_request

    if list_presets:
        typer.echo(preset_table())
        return
    if output is not None and output.is_dir():
        raise ForgetkitError(f"-o {output} is a folder; name the YAML file to write, e.g. -o {output / 'train.yaml'}")
    request = TrainRequest(
        preset=preset,
        recipe=recipe or {},
        model=model,
        template=template,
        datasets=tuple(d.strip() for d in dataset.split(",") if d.strip()),
        mix_ratios=tuple(r.strip() for r in mix_ratio.split(",")) if mix_ratio else (),
        dataset_dir=dataset_dir,
        gpus=gpus,
        cpu=cpu,
        deepspeed=deepspeed,
        output_dir=output_dir,
        trust_remote_code=trust_remote_code,
    )
    rendered = render_request(request, check=validate)
    text = rendered.text
    if check_trainable:
        from forgetkit.trainable import trainable_parameters

        trained = trainable_parameters(yaml.safe_load(text), num_layers=rendered.model.num_layers())
        typer.echo(trained.describe(), err=True)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(output, text)
        typer.echo(f"wrote {output}", err=True)


class Backend(str, Enum):
    local = "local"
    slurm = "slurm"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


@app.command()
def launch(
    spec: Annotated[Path, typer.Argument(help="Study spec YAML, e.g. runs/demo.yaml.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory (default: runs/out/<name>).")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print every stage, its command and whether it is done (with --backend slurm: also the job "
            "script and sbatch commands); run and write nothing.",
        ),
    ] = False,
    backend: Annotated[
        Backend,
        typer.Option(help="local: run the stages here, one after another; slurm: submit one sbatch job per stage."),
    ] = Backend.local,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(
            metavar="[KIND:]KEY=VALUE",
            help="With --backend slurm, an #SBATCH option for every job as KEY=VALUE (e.g. partition=gpu, "
            f"time=24:00:00, mem=64G), or for one stage kind as KIND:KEY=VALUE (kinds: {', '.join(KINDS)}; "
            "e.g. train:gres=gpu:8). Repeatable.",
        ),
    ] = None,
    stage: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Run only this stage, as --dry-run names it, e.g. 'train llm-full'; the stages it reads must be "
            "done. Each Slurm job runs this.",
        ),
    ] = None,
) -> None:
    """Run a study: zero-shot eval, real LLaMA-Factory training, eval of every checkpoint, scores.

    A spec names the model, data.dataset_dir (a folder made by build-data), eval.datasets and the
    recipes to train ({name: {preset, or render-config's recipe options: part, method, lr, steps, ...}});
    eval.quadrants groups the eval datasets into the paper's 2x2 matrix (ID^T-ID^I, ID^T-OOD^I,
    OOD^T-ID^I, OOD^T-OOD^I) to report each quadrant's mean; a continual section learns
    tasks in order with strategy inclora or seqfull and optional replay (runs/table3.yaml); see
    runs/demo.yaml. Rerunning the same command skips finished stages and resumes an interrupted
    training from its last checkpoint, even after kill -9; --dry-run shows what would run.

    On a Slurm cluster, run it on a login node with --backend slurm: each stage not yet done becomes
    one job (scripts in RUN_DIR/slurm/, logs in RUN_DIR/logs/) that Slurm starts once the jobs whose
    outputs it reads have succeeded. Example: forgetkit launch runs/fig2.yaml --backend slurm
    --sbatch partition=gpu --sbatch gres=gpu:1 --sbatch train:gres=gpu:8 --sbatch time=48:00:00
    --dry-run; drop --dry-run to submit. When the jobs have finished, forgetkit score RUN_DIR prints
    the tables; submitting again resubmits failed stages and evaluates the checkpoints of
    epoch-based recipes, which cannot be known before training.
    """
    from forgetkit.rundir import RunDir
    from forgetkit.scoring import format_run
    from forgetkit.spec import load_study
    from forgetkit.stages.step import format_plan
    from forgetkit.study import default_run_dir
    from forgetkit.study import launch as run_study

    if sbatch and backend is not Backend.slurm:
        raise ForgetkitError("--sbatch sets options of Slurm jobs; add --backend slurm")
    if stage is not None and (dry_run or backend is Backend.slurm):
        raise ForgetkitError("--stage runs one stage here and now; leave out --dry-run and --backend slurm")
    study = load_study(spec)
    target = run_dir or default_run_dir(study)
    if backend is Backend.slurm:
        _submit_to_slurm(study, spec, target, sbatch or [], dry_run)
        return
    if dry_run:
        typer.echo(format_plan(run_study(study, target, dry_run=True)))
        return
    if stage is not None:
        steps = run_study(study, target, only=stage)
        already = next(step.done for step in steps if step.name == stage)
        typer.echo(f"stage {stage!r} {'was already done' if already else 'done'} in {target}")
        return
    table = run_study(study, target)
    typer.echo(f"\nrun directory: {target}\n")
    typer.echo(format_run(RunDir(target), table))


def _submit_to_slurm(study: Study, spec: Path, target: Path, sbatch: list[str], dry_run: bool) -> None:
    from forgetkit import slurm
    from forgetkit.stages.step import format_plan
    from forgetkit.study import check_data
    from forgetkit.study import launch as run_study

    options = slurm.parse_options(sbatch)
    steps = run_study(study, target, dry_run=True)
    jobs = slurm.plan_jobs(steps, spec, target, options)
    if dry_run:
        typer.echo(format_plan(steps))
        if jobs:
            first_of_kind: dict[str, slurm.Job] = {}
            for job in jobs:
                first_of_kind.setdefault(stage_kind(job.stage), job)
            typer.echo("\nJob scripts, the first of each kind of stage (the others differ only in their stage):")
            for job in first_of_kind.values():
                typer.echo(f"\n# {job.script}\n{job.text}", nl=False)
            typer.echo(f"\n{len(jobs)} sbatch commands, in order:\n" + "\n".join(slurm.dry_run_lines(jobs)))
        return
    if not jobs:
        typer.echo(f"nothing to submit: all {len(steps)} stages are done; forgetkit score {target} reports them")
        return
    check_data(study)
    ids = slurm.submit(jobs, target)
    typer.echo(f"submitted {len(jobs)} Slurm jobs (recorded in {slurm.jobs_path(target)}):")
    for job in jobs:
        waits = f"  after {', '.join(ids[name] for name in job.after)}" if job.after else ""
        typer.echo(f"  {ids[job.stage]:>10}  {job.stage}{waits}")
    unplanned = [
        name for name, recipe in study.recipes.items() if recipe.steps is None and stage_name("train", name) in ids
    ]
    later = f", and evaluates the checkpoints of {', '.join(unplanned)}, unknown before training" if unplanned else ""
    typer.echo(
        f"logs: {target / 'logs'}/slurm-*.out. When the jobs have finished: forgetkit score {target}. "
        f"Running this command again submits what is still not done (a failed job's stage and those after it){later}."
    )


@app.command()
def score(
    path: Annotated[
        Path,
        typer.Argument(
            help="A predictions file (LF generated_predictions.jsonl, a VLMEvalKit result .xlsx/.csv/.tsv, or any "
            "JSON/JSONL with predict and label) or a run directory."
        ),
    ],
    matcher: Annotated[
        str,
        typer.Option(
            help="auto: each dataset's own (MLLM-CL sets their domain's, the rest letter); letter (Listing 1); "
            "mllmcl-rs, mllmcl-ad, mllmcl-med, mllmcl-sci, mllmcl-fin (the authors' scorers, Listings 2-5); "
            "mllmcl-sci-listing4 (Listing 4 as printed, looser than their eval_sci.py); classlabel-mischoice "
            "(rate of picking the class-name option; needs --sidecar)."
        ),
    ] = "auto",
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Leave malformed lines out and report how many, instead of stopping.")
    ] = False,
    sidecar: Annotated[
        Path | None,
        typer.Option(
            help="Row-aligned JSONL with fields the matcher needs, e.g. DATA/imagewikiqa_classlabel.records.jsonl "
            "for classlabel-mischoice or DATA/mllmcl_sci_test.meta.jsonl (files only)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (accuracy, correct, total, matcher) instead of a table.")
    ] = False,
) -> None:
    """Score predictions: accuracy of one file, or the checkpoint x dataset table of a run (saved as scores.json).

    Example: forgetkit score runs/out/demo/predictions/zero-shot/imagenet_vqa_val.jsonl --json
    """
    from forgetkit.matchers import AUTO, resolve
    from forgetkit.rundir import RunDir
    from forgetkit.scoring import format_run, score_file, score_run

    if path.is_dir():
        if sidecar is not None:
            raise ForgetkitError("--sidecar pairs with one predictions file, not a run directory")
        run = RunDir(path)
        table = score_run(run, matcher, skip_bad=skip_bad)
        typer.echo(json.dumps(table, indent=2) if as_json else format_run(run, table))
        return
    chosen = resolve(matcher, path.stem) if matcher == AUTO else matcher
    result = score_file(path, chosen, skip_bad=skip_bad, sidecar=sidecar)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    skipped = f", {result.skipped} malformed lines skipped" if result.skipped else ""
    typer.echo(
        f"{path}: {result.accuracy * 100:.2f}% ({result.correct:g}/{result.total}, matcher {result.matcher}{skipped})"
    )


@app.command()
def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN_DIR...",
            help="Run directories made by `forgetkit launch`; several (one per model) also get one merged Table 2.",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the report (default RUN_DIR/report); with several runs, the merged Table 2's folder "
            "(each run's own report goes to RUN_DIR/report)."
        ),
    ] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for every 95 % interval.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    id_dataset: Annotated[
        str | None, typer.Option(help="The in-distribution set of Table 1 (default: the first ID^T-ID^I set).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="The data folder, where imagewikiqa_classlabel.records.jsonl is (for the mischoice rate)."),
    ] = None,
) -> None:
    """Write the run's report: report.md (Tables 1-3 in the paper's shapes, quadrant means, every accuracy and
    change vs zero-shot with a 95 % bootstrap interval, forgetting only when the interval lies below zero, the
    continual Last / Average / backward transfer), numbers.json, CSVs, and Fig. 2, Fig. 3 and CL heatmaps as PNG.

    Run `forgetkit score RUN_DIR` first if the run was not scored (launch scores it). Table 2 (a) compares
    models, one run each: forgetkit report RUN_3B RUN_7B RUN_LLAVA --out table2 writes every run's report
    and the three models' rows in table2/table2.md.
    """
    from forgetkit.report import summary, write_merged_table2, write_report

    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise ForgetkitError(f"run directory {run_dir} does not exist; pass the --run-dir given to launch")
    if len(run_dirs) > 1 and out is None:
        raise ForgetkitError(
            "several runs: give --out DIR for their merged Table 2 (each run's report goes to RUN/report)"
        )
    options = {"resamples": resamples, "seed": seed, "id_dataset": id_dataset, "data_dir": data}
    if len(run_dirs) == 1:
        typer.echo(summary(write_report(run_dirs[0], out, **options)))
        return
    written = [write_report(run_dir, **options) for run_dir in run_dirs]
    for folder in written:
        typer.echo(summary(folder) + "\n")
    typer.echo(f"Table 2 of {len(written)} runs: {write_merged_table2(written, out) / 'table2.md'}")


@app.command()
def probe(
    base: Annotated[str, typer.Argument(help="The base model: a registry name (see render-config) or a folder.")],
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned checkpoint folder: a full model or a LoRA adapter.")],
    data: Annotated[Path, typer.Option(help="Data folder with dataset_info.json (made by build-data).")],
    dataset: Annotated[str, typer.Option(help="Held-out prompts that are not multiple choice, e.g. captions.")],
    template: Annotated[
        str | None, typer.Option(help="LF chat template; needed when BASE is a folder or hub id, not a registry name.")
    ] = None,
    checkpoint_base: Annotated[
        Path | None, typer.Option(help="The model a LoRA checkpoint was trained on, if not BASE (IncLoRA).")
    ] = None,
    answer_tokens: Annotated[
        str, typer.Option(help="The fine-tuning task's answers, comma-separated (their first tokens count).")
    ] = "A,B,C,D",
    positions: Annotated[
        int, typer.Option(min=1, help="Also average the KL over the first K reference-answer tokens fed in.")
    ] = 1,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    bf16: Annotated[bool, typer.Option("--bf16", help="Run both models in bfloat16.")] = False,
    image_max_pixels: Annotated[
        int, typer.Option(help="LF's image pixel limit, as in training.")
    ] = DataSpec.image_max_pixels,
    cutoff_len: Annotated[int, typer.Option(help="LF's cutoff length, as in training.")] = DataSpec.cutoff_len,
    output: Annotated[Path | None, typer.Option(help="Write every number (and per prompt) as JSON here.")] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Let the models run the Python files their config names.")
    ] = False,
) -> None:
    """Drift of a checkpoint from its base on held-out non-MCQ prompts, from one forward pass per prompt:
    KL(base || checkpoint) of the next-token distribution, and the probability mass moved onto the task's answer
    tokens (a model tuned on letter answers starting captions with a letter).

    Example: forgetkit probe tiny-qwen2.5-vl run/checkpoints/llm-full/checkpoint-30 --data data --dataset
    shape_captions
    """
    from forgetkit.models import resolve_model
    from forgetkit.stages.probe import probe as run_probe

    model = resolve_model(base, template)
    result = run_probe(
        model.path,
        checkpoint,
        data,
        dataset,
        model.template,
        image_max_pixels=image_max_pixels,
        cutoff_len=cutoff_len,
        bf16=bf16,
        device=device,
        batch_size=batch_size,
        answer_tokens=tuple(token.strip() for token in answer_tokens.split(",") if token.strip()),
        positions=positions,
        checkpoint_base=checkpoint_base,
        output=output,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(
        f"{checkpoint} on {dataset} ({result['rows']} prompts): KL {result['kl']:.4f} nats, answer-token mass "
        f"{result['answer_mass_base']:.4f} -> {result['answer_mass_checkpoint']:.4f}, "
        f"top-token agreement {result['top_token_agreement'] * 100:.1f}%"
    )


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo's images, data and run go.")] = Path("forgetkit-demo"),
) -> None:
    """Run the whole pipeline offline on CPU in about ten minutes; print its score table and write its report.

    A tiny random-weight Qwen2.5-VL, drawn images for every quadrant, CLIP distractors from random weights,
    real LLaMA-Factory training (two recipes and a 2-task continual run), prediction, LoRA merges and
    VLMEvalKit, then `forgetkit report`. Rerun with the same --workdir to continue an interrupted demo.
    """
    from forgetkit.demo import run_demo
    from forgetkit.doctor import require
    from forgetkit.report import summary, write_report
    from forgetkit.rundir import RunDir
    from forgetkit.scoring import format_run

    require("cpu")
    table = run_demo(workdir)
    run = workdir / "run"
    typer.echo(f"\nrun directory: {run}\n")
    typer.echo(format_run(RunDir(run), table))
    typer.echo("\n" + summary(write_report(run, data_dir=workdir / "data")))


@app.command()
def doctor(
    device: Annotated[
        Device, typer.Option(help="Where studies will run: cuda makes the CUDA check required, cpu leaves it optional.")
    ] = Device.cpu,
) -> None:
    """Check this environment, one line per check: the torch/torchvision/torchaudio trio, LLaMA-Factory,
    VLMEvalKit and open_clip at forgetkit's pins (required), CUDA, bf16, flash-attn, vLLM, the lock,
    $LMUData and the HF cache (reported). Exit status 1 when a required check fails; `launch` and
    `demo` run the required checks before their first stage (once per environment).
    """
    from forgetkit.doctor import run_checks

    checks = run_checks(device.value)
    for check in checks:
        typer.echo(check.line())
    if any(check.required and not check.ok for check in checks):
        raise typer.Exit(1)


def main() -> None:
    """The `forgetkit` command: a bad input, ours or an option Typer could not parse, is one `error:` line."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except ForgetkitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except ClickException as err:
        context = getattr(err, "ctx", None)
        hint = f"; see {context.command_path} --help" if context is not None else ""
        typer.echo(f"error: {' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted; rerun the same command to continue where it stopped", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
