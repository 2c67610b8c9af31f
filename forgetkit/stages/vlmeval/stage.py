"""VLMEvalKit stage: MMMU and VMCBench accuracies of one checkpoint, scored by VLMEvalKit's own code.

VLMEvalKit runs as a subprocess (`python -m forgetkit.stages.vlmeval.runner`, its runner with forgetkit's model
class registered) with `--judge exact_matching`, never its default GPT judge. Accuracies are read from
its `*_acc.csv` files; each dataset's per-item hits are kept as JSONL for bootstrap intervals.

Dataset names pick VLMEvalKit's classes as VLMEvalKit itself keys on them: a name containing `MMMU`
(which switches on VLMEvalKit's MMMU answer preprocessing) uses its `MMMUDataset`, one containing
`VMCBench` its `VMCBenchDataset` (seeded). Either reads `$LMUData/<name>.tsv`. VLMEvalKit pins the md5 of
`MMMU_DEV_VAL.tsv` and re-downloads a local file that differs, so a local or reduced copy must carry
another name, e.g. `MMMU_DEV_VAL_local`: MMMUDataset reads any other name as is, with the same prompts
and scoring.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from forgetkit import atomic
from forgetkit.errors import ForgetkitError
from forgetkit.models import check_checkpoint, local_model_dir
from forgetkit.render import MAX_NEW_TOKENS
from forgetkit.stage_names import stage_name
from forgetkit.stages.process import StageFailed, last_error, run_logged, subprocess_env
from forgetkit.stages.stage import Stage, identity
from forgetkit.stages.vlmeval.runner import EMPTY_IS_MISSING

if TYPE_CHECKING:
    from forgetkit.spec import Study
import contextlib

from forgetkit.built_data import VLMEVAL
from forgetkit.models import ModelSpec, family_of
from forgetkit.rundir import RunDir

# "auto" keeps the checkpoint's own dtype.
DTYPES = ("auto", "bfloat16", "float16", "float32")
# The source datasets VMCBench draws from: VLMEvalKit's VMCBench report indexes every one of them, so a
# TSV lacking any category fails there.
VMCBENCH_CATEGORIES = (
    "SEEDBench", "MMStar", "A-OKVQA", "VizWiz", "MMVet", "VQAv2", "OKVQA",
    "MMMU", "MathVista", "ScienceQA", "RealWorldQA", "GQA", "MathVision",
    "TextVQA", "OCRVQA",
    "AI2D", "ChartQA", "DocVQA", "InfoVQA", "TableVQABench",
)  # fmt: skip
# The paper reports MMMU's validation split; MMMU_DEV_VAL also holds the few-shot dev split.
MMMU_SPLIT = "validation"
# The model's key in VLMEvalKit's config; VLMEvalKit names its output folder and files after it.
MODEL_NAME = "forgetkit"
RUNNER = "forgetkit.stages.vlmeval.runner"
# VLMEvalKit's inference bar: "Infer forgetkit/<dataset>, Rank 0/1:  40%|████  | 4/10 [...]".
INFER_PROGRESS = re.compile(r"Infer [^/\r\n]*/([^,\r\n]+), Rank[^:\r\n]*:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")


@dataclass(frozen=True)
class Benchmark:
    """How VLMEvalKit evaluates and reports one kind of dataset."""

    dataset_class: str  # registered on vlmeval.dataset
    result_suffix: str  # per-item file: <model>_<dataset><suffix>.xlsx
    scale: float  # the `Overall` column of *_acc.csv is accuracy * scale


MMMU = Benchmark("MMMUDataset", "_exact_matching_result", 1.0)
VMCBENCH = Benchmark("SeededVMCBench", "_result", 100.0)


def benchmark_for(dataset: str) -> Benchmark:
    """Keyed on the name as VLMEvalKit keys its MMMU preprocessing, so class and scoring always agree."""
    if "MMMU" in dataset:
        return MMMU
    if "VMCBench" in dataset:
        return VMCBENCH
    raise ForgetkitError(
        f"dataset {dataset!r} is neither MMMU nor VMCBench; name it so it contains 'MMMU' or 'VMCBench'"
    )


def check_tsv(lmu_data: Path, dataset: str) -> None:
    """The TSV must be local (forgetkit never lets VLMEvalKit download), and a VMCBench TSV must cover
    every category VLMEvalKit's report indexes."""
    import pandas as pd

    benchmark = benchmark_for(dataset)
    tsv = lmu_data / f"{dataset}.tsv"
    if not tsv.is_file():
        raise ForgetkitError(
            f"{tsv} not found; put VLMEvalKit's {dataset}.tsv there (or point lmu_data at its directory)"
        )
    if benchmark is VMCBENCH:
        try:
            categories = set(pd.read_csv(tsv, sep="\t", usecols=["category"])["category"].astype(str))
        except ValueError as error:
            raise ForgetkitError(f"{tsv} cannot be read as a VMCBench TSV with a category column: {error}") from None
        missing = [name for name in VMCBENCH_CATEGORIES if name not in categories]
        if missing:
            raise ForgetkitError(
                f"{tsv} lacks VMCBench categories {', '.join(missing)}; VLMEvalKit's VMCBench report needs "
                f"rows from all {len(VMCBENCH_CATEGORIES)} source datasets"
            )


def predictions_path(work_dir: Path, dataset: str) -> Path:
    """Per-item JSONL of one dataset: index, prediction, answer, correct (+ split, category)."""
    return Path(work_dir) / f"{dataset}.items.jsonl"


def run_vlmeval(
    model_path: str | Path,
    datasets: Sequence[str],
    lmu_data: Path,
    work_dir: Path,
    log: Path,
    *,
    kind: str = "qwen2_5_vl",
    adapter: Path | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    vlmeval_entry: str | None = None,
    image_min_pixels: int | None = None,
    image_max_pixels: int | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    system_prompt: str | None = None,
) -> dict[str, float]:
    """Evaluate one checkpoint (a model folder or hub id) on `datasets` (TSVs in `lmu_data`) with VLMEvalKit;
    accuracy in [0, 1] per dataset.

    Images are scaled into [`image_min_pixels`, `image_max_pixels`] area; a limit left None is the one
    VLMEvalKit's own config entry `vlmeval_entry` (e.g. `Qwen2.5-VL-3B-Instruct`) gives the model, or none.
    VLMEvalKit's outputs go to `work_dir/vlmeval` (emptied first: VLMEvalKit would reuse stale predictions
    found there); per-item results to `predictions_path(work_dir, dataset)`.
    """
    if not datasets:
        raise ForgetkitError("no datasets to evaluate; name at least one MMMU or VMCBench TSV")
    if max_new_tokens < 1 or any(limit is not None and limit < 1 for limit in (image_min_pixels, image_max_pixels)):
        raise ForgetkitError("max_new_tokens, image_max_pixels and image_min_pixels must be positive")
    if dtype not in DTYPES:
        raise ForgetkitError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    lmu_data = Path(lmu_data).resolve()
    if not lmu_data.is_dir():
        raise ForgetkitError(f"LMUData directory {lmu_data} not found; create it and put the TSVs there")
    for dataset in datasets:
        check_tsv(lmu_data, dataset)
    model_path = local_model_dir(model_path)
    check_checkpoint(model_path, kind, adapter)

    work_dir = Path(work_dir).resolve()
    out = work_dir / "vlmeval"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model = {
        "class": "ForgetkitVLM",
        "model_path": str(model_path.resolve()),
        "kind": kind,
        "adapter": None if adapter is None else str(Path(adapter).resolve()),
        "device": device,
        "dtype": dtype,
        "vlmeval_entry": vlmeval_entry,
        "image_max_pixels": image_max_pixels,
        "image_min_pixels": image_min_pixels,
        "max_new_tokens": max_new_tokens,
        "system_prompt": system_prompt,
    }
    data = {name: {"class": benchmark_for(name).dataset_class, "dataset": name} for name in datasets}
    config = work_dir / "vlmeval_config.json"
    atomic.write_json(config, {"model": {MODEL_NAME: model}, "data": data})
    args = [sys.executable, "-m", RUNNER, "--config", str(config), "--work-dir", str(out)]
    _run(args + ["--judge", "exact_matching"], lmu_data, out, Path(log))
    return {dataset: _collect(out / MODEL_NAME, dataset, work_dir, Path(log)) for dataset in datasets}


def _env(lmu_data: Path) -> dict[str, str]:
    """VLMEvalKit's environment: data root set before import (else it creates ~/LMUData), fixed output
    formats, one process, and no variable that would move its outputs."""
    env = subprocess_env()
    env.update({"LMUData": str(lmu_data), "PRED_FORMAT": "xlsx", "EVAL_FORMAT": "csv"})
    env.setdefault("HF_HUB_OFFLINE", "1")
    for name in ("MMEVAL_ROOT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SPLIT_THINK", "SKIP_ERR"):
        env.pop(name, None)
    return env


def _run(args: list[str], lmu_data: Path, cwd: Path, log: Path) -> None:
    """Run VLMEvalKit in `cwd` (anything it writes to relative paths stays there) with its output in `log`
    and a progress bar fed by its inference bar there."""
    run_logged(
        args,
        log,
        desc="vlmeval",
        unit="item",
        watch=partial(_update, log=log),
        failure="VLMEvalKit",
        env=_env(lmu_data),
        cwd=cwd,
    )


def _update(bar: tqdm, log: Path) -> None:
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - 4096))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return
    matches = INFER_PROGRESS.findall(tail)
    if matches:
        dataset, done, total = matches[-1]
        desc = f"vlmeval {dataset.strip()}"
        if bar.desc != desc:
            bar.reset(total=int(total))
            bar.set_description(desc, refresh=False)
        bar.n = int(done)
        bar.refresh()


def _collect(pred_root: Path, dataset: str, work_dir: Path, log: Path) -> float:
    """Accuracy from VLMEvalKit's `_acc.csv`, per-item hits to JSONL; the two must agree."""
    import pandas as pd

    benchmark = benchmark_for(dataset)
    acc_file = pred_root / f"{MODEL_NAME}_{dataset}_acc.csv"
    items_file = pred_root / f"{MODEL_NAME}_{dataset}{benchmark.result_suffix}.xlsx"
    if not acc_file.is_file() or not items_file.is_file():
        raise StageFailed(f"VLMEvalKit did not score {dataset}: {_failure(pred_root, dataset, log)}; full log: {log}")
    acc = pd.read_csv(acc_file)
    items = pd.read_excel(items_file, **EMPTY_IS_MISSING)
    if benchmark is MMMU and "split" in items.columns:
        if MMMU_SPLIT not in set(items["split"]):
            raise ForgetkitError(
                f"{dataset} has splits {sorted(set(items['split']))} but no {MMMU_SPLIT!r} split, the one reported; "
                f"mark the rows to score as {MMMU_SPLIT!r}"
            )
        acc = acc[acc["split"] == MMMU_SPLIT]
        items = items[items["split"] == MMMU_SPLIT]
    accuracy = float(acc["Overall"].iloc[0]) / benchmark.scale
    rows = [_item(row) for row in items.sort_values("index").to_dict("records")]
    hits = sum(row["correct"] for row in rows) / len(rows)
    # VMCBench rounds its percentages to 2 decimals.
    if not math.isclose(accuracy, hits, abs_tol=1e-4):
        raise ForgetkitError(f"{dataset}: {acc_file} says {accuracy} but {items_file} has {hits} correct; see {log}")
    atomic.write_jsonl(predictions_path(work_dir, dataset), rows)
    return accuracy


def _item(row: dict) -> dict:
    import pandas as pd

    item = {
        "index": row["index"] if isinstance(row["index"], int) else str(row["index"]),
        "prediction": "" if pd.isna(row["prediction"]) else str(row["prediction"]),
        "answer": str(row["answer"]),
        "correct": bool(row["hit"]),
    }
    for key in ("split", "category"):
        if key in row and not pd.isna(row[key]):
            item[key] = str(row[key])
    return item


def _failure(pred_root: Path, dataset: str, log: Path) -> str:
    """Why VLMEvalKit skipped or failed a dataset, from its status.json, else the log's last error."""
    try:
        status = json.loads((pred_root / "status.json").read_text(encoding="utf-8"))
        entry = status["datasets"][dataset]
    except (OSError, ValueError, KeyError, TypeError):
        return last_error(log)
    reason = entry.get("error_message") or entry.get("skip_reason")
    return " ".join(str(reason).split())[:500] if reason else last_error(log)


def vlmeval_stage(
    study: Study,
    run: RunDir,
    model_path: str,
    base: ModelSpec,
    checkpoint: str,
    datasets: tuple[str, ...],
    adapter: Path | None,
    upstream: tuple[str, ...],
) -> Stage:
    names = tuple(name.removeprefix(VLMEVAL) for name in datasets)

    kind = family_of(base, "vlmeval")
    pixels = (study.eval.vlmeval_min_pixels, study.eval.vlmeval_max_pixels)
    if None in pixels and base.vlmeval_entry is None:
        raise ForgetkitError(
            f"vlmeval: {base.name} has no VLMEvalKit config entry to take its image limits from; "
            "set eval.vlmeval_min_pixels and eval.vlmeval_max_pixels in the spec"
        )
    stage = stage_name("vlmeval", checkpoint)
    settings = {
        "model": model_path,
        "adapter": str(adapter) if adapter else None,
        "kind": kind,
        "datasets": names,
        "vlmeval_entry": base.vlmeval_entry if None in pixels else None,
        "image_min_pixels": pixels[0],
        "image_max_pixels": pixels[1],
        "max_new_tokens": study.eval.max_new_tokens,
        "device": study.hardware.device,
    }
    digest = identity(json.dumps(settings, sort_keys=True), *upstream)
    targets = [run.predictions(checkpoint, f"{VLMEVAL}{name}") for name in names]
    return Stage(
        stage,
        f"python -m {RUNNER} --config {run.scratch(stage)}/vlmeval_config.json --judge exact_matching",
        digest,
        run.is_done(stage, digest) and all(target.is_file() for target in targets),
        partial(_evaluate, study, run, stage, settings, targets),
    )


def _evaluate(study: Study, run: RunDir, stage: str, settings: dict, targets: list[Path]) -> None:
    """VLMEvalKit's own runner and judge; its per-item verdicts are kept as this checkpoint's predictions."""
    scratch = run.scratch(stage)
    lmudata = Path(study.data.dataset_dir) / study.eval.lmudata
    run_vlmeval(
        Path(settings["model"]),
        settings["datasets"],
        lmudata,
        scratch,
        run.log(stage),
        kind=settings["kind"],
        adapter=Path(settings["adapter"]) if settings["adapter"] else None,
        device=settings["device"],
        vlmeval_entry=settings["vlmeval_entry"],
        image_min_pixels=settings["image_min_pixels"],
        image_max_pixels=settings["image_max_pixels"],
        max_new_tokens=settings["max_new_tokens"],
    )
    for name, target in zip(settings["datasets"], targets):
        items = [json.loads(line) for line in predictions_path(scratch, name).read_text(encoding="utf-8").splitlines()]
        rows = [{"predict": i["prediction"], "label": i["answer"], "correct": i["correct"]} for i in items]
        atomic.write_jsonl(target, rows)
    atomic.write_text(run.config(stage).with_suffix(".json"), (scratch / "vlmeval_config.json").read_text("utf-8"))
    shutil.rmtree(scratch, ignore_errors=True)
    with contextlib.suppress(OSError):
        scratch.parent.rmdir()
