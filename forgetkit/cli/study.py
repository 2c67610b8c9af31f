"""The verbs of a study's run directory: `launch` runs it (here or as Slurm jobs), `score` scores it or one
predictions file, `report` writes its tables and figures."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forgetkit.errors import ForgetkitError
from forgetkit.stage_names import KINDS, stage_kind, stage_name

if TYPE_CHECKING:
    from forgetkit.spec import Study


class Backend(str, Enum):
    local = "local"
    slurm = "slurm"


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
    eval_arrays: Annotated[
        bool,
        typer.Option(
            "--eval-arrays",
            help="With --backend slurm, submit the evaluations of one training's checkpoints (per kind) as one job "
            "array, a task per checkpoint: tens of queue entries for a Fig. 2 study instead of hundreds.",
        ),
    ] = False,
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
    from forgetkit.report.terminal import format_run
    from forgetkit.rundir import RunDir
    from forgetkit.spec import load_study
    from forgetkit.stages.stage import format_plan
    from forgetkit.study import default_run_dir
    from forgetkit.study import launch as run_study

    if (sbatch or eval_arrays) and backend is not Backend.slurm:
        raise ForgetkitError("--sbatch and --eval-arrays shape Slurm jobs; add --backend slurm")
    if stage is not None and (dry_run or backend is Backend.slurm):
        raise ForgetkitError("--stage runs one stage here and now; leave out --dry-run and --backend slurm")
    study = load_study(spec)
    target = run_dir or default_run_dir(study)
    if backend is Backend.slurm:
        _submit_to_slurm(study, spec, target, sbatch or [], dry_run, eval_arrays)
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


def _submit_to_slurm(
    study: Study, spec: Path, target: Path, sbatch: list[str], dry_run: bool, eval_arrays: bool
) -> None:
    from forgetkit import slurm
    from forgetkit.stages.stage import format_plan
    from forgetkit.study import check_data
    from forgetkit.study import launch as run_study

    options = slurm.parse_options(sbatch)
    steps = run_study(study, target, dry_run=True)
    jobs = slurm.plan_jobs(steps, spec, target, options, study.hardware, eval_arrays)
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
        tasks = f" (array: {', '.join(job.members)})" if job.members else ""
        typer.echo(f"  {ids[job.stage]:>10}  {job.stage}{tasks}{waits}")
    unplanned = [
        name for name, recipe in study.recipes.items() if recipe.steps is None and stage_name("train", name) in ids
    ]
    later = f", and evaluates the checkpoints of {', '.join(unplanned)}, unknown before training" if unplanned else ""
    typer.echo(
        f"logs: {target / 'logs'}/slurm-*.out. When the jobs have finished: forgetkit score {target}. "
        f"Running this command again submits what is still not done (a failed job's stage and those after it){later}."
    )


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
    from forgetkit.report.inputs import launched_study
    from forgetkit.report.terminal import format_run
    from forgetkit.rundir import RunDir
    from forgetkit.scoring import score_file, score_run
    from forgetkit.tracking import log_scores, tracking_dir

    if path.is_dir():
        if sidecar is not None:
            raise ForgetkitError("--sidecar pairs with one predictions file, not a run directory")
        run = RunDir(path)
        table = score_run(run, matcher, skip_bad=skip_bad)
        typer.echo(json.dumps(table, indent=2) if as_json else format_run(run, table))
        study = launched_study(run) if matcher == AUTO and not skip_bad else None
        if study is not None and log_scores(run, study.report_to, study.name, table):
            names = " and ".join(tracker.value for tracker in study.report_to)
            typer.echo(f"logged the new scores to {names} in {tracking_dir(run)}", err=True)
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
