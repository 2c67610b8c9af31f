"""One checkpoint x 6 eval sets, side by side in one run: one `llamafactory-cli` process per set (how a
study evaluated before) vs one evaluate stage (`forgetkit.stages.eval_worker`: one process, one model load),
with generation and with letter logits; and the floor: one load plus the bare inference loops.

Reports wall time, model loads and rows/s of each path, whether the two generation paths wrote the same
bytes, and two ratios: the evaluate stage's wall time over (one load + the bare `generate` loops), target
<= 1.3, and generation over letter logits end to end in the evaluate stage (issue 17 asks >= 5x).

The floor runs in its own fresh interpreter: imports, LF's tokenizer and model load once ("one load"),
then per set LF's dataset (timed apart: "data") and `model.generate` over LF's collated batches with the
predict YAML's generation settings ("loops"). Each path gets its own empty HF datasets cache.

The model is the tiny Qwen2.5-VL after `--train-steps` steps of LLM full fine-tuning, enough for it to
answer with a letter (then generation stops at its end token); the sets are the synthetic shapes MCQs,
each set the same rows in its own order.

Run: OMP_NUM_THREADS=1 python benchmarks/eval_checkpoint.py [--per-class 8] [--train-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forgetkit.models import TINY, resolve_model
from forgetkit.recipes import CPU
from forgetkit.render import DataSpec, render_predict
from forgetkit.rundir import RunDir
from forgetkit.stages import llamafactory
from forgetkit.stages.evaluate import Evaluation, member
from forgetkit.stages.process import subprocess_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import build_set, tune  # noqa: E402

SETS = tuple(f"set{index}" for index in range(6))


def make_sets(data: Path, seed: int = 0) -> None:
    """Six copies of the val MCQs, each in its own row order (so no set's dataset cache serves another)."""
    rows = json.loads((data / "imagenet_vqa_val.json").read_text())
    info = json.loads((data / "dataset_info.json").read_text())
    for index, name in enumerate(SETS):
        shuffled = rows[:]
        random.Random(seed + index).shuffle(shuffled)
        (data / f"{name}.json").write_text(json.dumps(shuffled))
        info[name] = {**info["imagenet_vqa_val"], "file_name": f"{name}.json"}
    (data / "dataset_info.json").write_text(json.dumps(info))


def configs(model: str, data: DataSpec, root: Path, args: argparse.Namespace) -> dict[str, str]:
    return {
        name: render_predict(
            model, "qwen2_vl", name, data, root / name, CPU, args.batch_size, max_new_tokens=args.max_new_tokens
        )
        for name in SETS
    }


def fresh_cache(root: Path, name: str) -> None:
    os.environ["HF_DATASETS_CACHE"] = str(root / f"hf-cache-{name}")


def per_set_processes(texts: dict[str, str], root: Path) -> tuple[float, dict[str, bytes]]:
    fresh_cache(root, "per-set")
    start = time.perf_counter()
    for name, text in texts.items():
        llamafactory.run("train", text, root / f"{name}.yaml", root / f"{name}.log", root / name, name)
    wall = time.perf_counter() - start
    return wall, {name: (root / name / "generated_predictions.jsonl").read_bytes() for name in texts}


def evaluate_stage(texts: dict[str, str], root: Path, kind: str) -> tuple[float, dict[str, bytes]]:
    fresh_cache(root, kind)
    run = RunDir(root / f"run-{kind}").create()
    members = [member(run, kind, "checkpoint", name, text, ()) for name, text in texts.items()]
    start = time.perf_counter()
    Evaluation(run, "checkpoint", members, "cpu", (), chunk_rows=256)()
    wall = time.perf_counter() - start
    return wall, {m.dataset: Path(m.target).read_bytes() for m in members}


FLOOR = """
import json, sys, time
start = time.perf_counter()
import torch
from forgetkit.stages.lf_inprocess import Session, scratch_parse
texts = json.loads(open(sys.argv[1]).read())
args = {name: scratch_parse(text, "cpu") for name, text in texts.items()}
session = Session(next(iter(args.values())))
model = session.model
load = time.perf_counter() - start
data = loops = 0.0
for name, parsed in args.items():
    tick = time.perf_counter()
    rows = session.eval_dataset(parsed)
    collator = session.collator()
    data += time.perf_counter() - tick
    gen = parsed.generating_args.to_dict(obey_generation_config=True)
    gen["eos_token_id"] = session.tokenizer.eos_token_id
    gen["pad_token_id"] = session.tokenizer.pad_token_id
    batch_size = parsed.training_args.per_device_eval_batch_size
    tick = time.perf_counter()
    with torch.no_grad():
        for first in range(0, len(rows), batch_size):
            batch = collator([rows[index] for index in range(first, min(first + batch_size, len(rows)))])
            batch.pop("labels")
            model.generate(**batch, **gen)
    loops += time.perf_counter() - tick
print(json.dumps({"load": load, "data": data, "loops": loops}))
"""


def floor(texts: dict[str, str], root: Path) -> dict[str, float]:
    fresh_cache(root, "floor")
    (root / "floor.json").write_text(json.dumps(texts))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FLOOR, str(root / "floor.json")],
        check=True,
        capture_output=True,
        text=True,
        env=subprocess_env(),
    ).stdout
    timings = json.loads(out.strip().splitlines()[-1])
    return timings | {"wall": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=8, help="val images per class: 12 classes, so 96 rows")
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forgetkit-bench-") as tmp:
        root = Path(tmp)
        dataset_dir = build_set(root, args.per_class)
        make_sets(dataset_dir)
        data = DataSpec(str(dataset_dir), ("imagenet_vqa_train",), cutoff_len=512, image_max_pixels=4096)
        model = str(tune(root, data, args.train_steps)) if args.train_steps else resolve_model(TINY).path
        texts = configs(model, data, root, args)
        rows = len(json.loads((dataset_dir / "set0.json").read_text())) * len(SETS)

        old_wall, old = per_set_processes(texts, root)
        new_wall, new = evaluate_stage(texts, root, "predict")
        logits_wall, _ = evaluate_stage(texts, root, "logits")
        best = floor(texts, root)

    print(f"{len(SETS)} sets x {rows // len(SETS)} rows, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}")
    print(f"per-set llamafactory-cli: {old_wall:6.1f} s, {len(SETS)} loads, {rows / old_wall:5.1f} rows/s")
    print(f"evaluate stage, generate: {new_wall:6.1f} s, 1 load,  {rows / new_wall:5.1f} rows/s")
    print(f"evaluate stage, logits:   {logits_wall:6.1f} s, 1 load,  {rows / logits_wall:5.1f} rows/s")
    print(
        f"floor (fresh process):    {best['wall']:6.1f} s: one load {best['load']:.1f} s, "
        f"LF datasets {best['data']:.1f} s, bare generate loops {best['loops']:.1f} s"
    )
    print(f"generation outputs byte-identical, per-set vs evaluate stage: {old == new}")
    print(f"speed-up of the evaluate stage over per-set processes: {old_wall / new_wall:.2f}x")
    print(f"evaluate stage / (one load + bare loops): {new_wall / (best['load'] + best['loops']):.2f} (target <= 1.3)")
    print(f"evaluate stage / whole floor (with LF datasets): {new_wall / best['wall']:.2f}")
    print(f"generation / letter logits, end to end: {new_wall / logits_wall:.2f}x")


if __name__ == "__main__":
    main()
