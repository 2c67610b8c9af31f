"""`forgetkit report` on a run with hundreds of checkpoints x datasets: how long the whole report takes.

Builds a synthetic run directory in the real layout (LF-shaped prediction files per checkpoint and dataset,
quadrants.json, continual.json, spec.yaml), scores it with `score_run` as `launch` does, then times
the report as `write_report` makes it, in its two halves: the numbers (`build_report`: reading every
file's item credit and labels, timed alone too as `load_items`, then the bootstrap statistics) and the
files (`render_report`: CSVs, numbers.json, report.md and the figures).

Defaults: 10 recipes x 30 checkpoints + zero-shot on the paper's 8 eval sets (2408 files), 300 items each,
plus 4 continual sequences of 5 tasks, 1000 resamples.

Measured on the 2-core CPU (shared with other jobs, so timings vary by ~2x): 2473 files, 741,900 predictions,
report 5.1 s = numbers 3.8 s (reading item credit and labels 2.7 s: each file is read twice, once by
`score_items` and once for its labels; bootstrap statistics ~1 s) + tables and figures 1.3 s; score_run 2.6 s.


Run: python benchmarks/report.py [--recipes 10] [--checkpoints 30] [--items 300] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from forgetkit import atomic
from forgetkit.report import build_report, render_report
from forgetkit.report.inputs import load_items
from forgetkit.rundir import ZERO_SHOT, RunDir
from forgetkit.scoring import score_run

QUADRANTS = {
    "ID^T-ID^I": ["imagenet_vqa_val", "imagenetv2_vqa_test"],
    "ID^T-OOD^I": ["flowers102_vqa_test", "caltech101_vqa_test", "stanford_cars_vqa_test"],
    "OOD^T-ID^I": ["imagewikiqa"],
    "OOD^T-OOD^I": ["mmmu", "vmcbench"],
}
TASKS = ["rs", "med", "ad", "sci", "fin"]
LETTERS = np.array(list("ABCD"))


def predictions(rng: np.random.Generator, labels: np.ndarray, accuracy: float) -> list[dict]:
    """LF-shaped rows: right with probability `accuracy`, else another letter."""
    right = rng.random(labels.size) < accuracy
    predict = np.where(right, labels, LETTERS[(np.searchsorted(LETTERS, labels) + 1) % 4])
    return [
        {"prompt": f"<|im_start|>user\nQuestion {i}? A. x B. y C. z D. w<|im_end|>", "predict": p, "label": f"{t}\n"}
        for i, (p, t) in enumerate(zip(predict, labels))
    ]


def build_run(root: Path, recipes: int, checkpoints: int, items: int, seed: int = 0) -> RunDir:
    rng = np.random.default_rng(seed)
    run = RunDir(root).create()
    datasets = [name for names in QUADRANTS.values() for name in names]
    labels = {name: rng.choice(LETTERS, items) for name in [*datasets, *(f"{t}_test" for t in TASKS)]}
    base = {name: rng.uniform(0.4, 0.8) for name in labels}
    for name in labels:
        atomic.write_jsonl(run.predictions(ZERO_SHOT, name), predictions(rng, labels[name], base[name]))
    for r in range(recipes):
        drift = rng.uniform(-0.3, 0.05)
        for c in range(1, checkpoints + 1):
            progress = c / checkpoints
            for name in datasets:
                gain = 0.3 * progress if name in QUADRANTS["ID^T-ID^I"] else drift * progress
                accuracy = float(np.clip(base[name] + gain, 0.01, 0.99))
                atomic.write_jsonl(
                    run.predictions(f"recipe-{r}/checkpoint-{100 * c}", name), predictions(rng, labels[name], accuracy)
                )
    continual = {}
    for s in range(4):
        name = f"seq-{s}"
        stages = [f"{name}/task-{i + 1}-{task}" for i, task in enumerate(TASKS)]
        for i, stage in enumerate(stages):
            for j, task in enumerate(TASKS[: i + 1]):
                accuracy = 0.9 - 0.08 * (i - j)
                atomic.write_jsonl(
                    run.predictions(stage, f"{task}_test"), predictions(rng, labels[f"{task}_test"], accuracy)
                )
        continual[name] = {"strategy": "seqfull", "replay": None, "tasks": TASKS, "stages": stages,
                           "tests": [f"{task}_test" for task in TASKS]}  # fmt: skip
    atomic.write_json(run.quadrants_path, QUADRANTS)
    atomic.write_json(run.continual_path, continual)
    recipe_specs = "".join(f"  recipe-{r}: {{steps: {100 * checkpoints}, save_steps: 100}}\n" for r in range(recipes))
    spec = f"name: bench\nmodel: qwen2.5-vl-3b\ndata: {{dataset_dir: data}}\neval: {{quadrants: {QUADRANTS}}}\n"
    atomic.write_text(run.root / "spec.yaml", spec + "recipes:\n" + recipe_specs)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", type=int, default=10)
    parser.add_argument("--checkpoints", type=int, default=30, help="per recipe")
    parser.add_argument("--items", type=int, default=300, help="per prediction file")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forgetkit-report-bench-") as tmp:
        run = build_run(Path(tmp) / "run", args.recipes, args.checkpoints, args.items)
        files = run.prediction_files()
        start = time.perf_counter()
        score_run(run)
        scored = time.perf_counter() - start
        start = time.perf_counter()
        load_items(run)
        loading = time.perf_counter() - start
        start = time.perf_counter()
        numbers = build_report(run.root, resamples=args.resamples)
        built = time.perf_counter() - start
        start = time.perf_counter()
        out = render_report(numbers, run.root / "report")
        rendered = time.perf_counter() - start
        written = sorted(path.name for path in out.iterdir())
    rows = len(files) * args.items
    print(f"{len(files)} prediction files ({len({c for c, _, _ in files})} checkpoints), {rows} predictions, "
          f"{args.resamples} resamples")  # fmt: skip
    print(f"score_run (scores.json, for reference): {scored:.2f} s ({rows / scored:,.0f} predictions/s)")
    print(f"report: {built + rendered:.2f} s = numbers {built:.2f} s (of which reading item credit and labels "
          f"{loading:.2f} s, {rows / loading:,.0f} predictions/s) + tables and figures {rendered:.2f} s")  # fmt: skip
    print(f"wrote {len(written)} files: {', '.join(written)}")


if __name__ == "__main__":
    main()
