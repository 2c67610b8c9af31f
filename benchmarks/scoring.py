"""Logits scoring vs LF generation on one checkpoint and one MCQ set: wall time, speed ratio, agreement.

Generation is the predict stage for real (`llamafactory-cli train` on `render_predict`'s YAML);
logits scoring is `forgetkit.stages.logits` on the same model, data and settings. Each is timed twice:
as a fresh process, end to end (imports, data, model load, inference), and by its inference loop alone
(LF's `predict_runtime` against `score_inputs`). Agreement is the fraction of rows where the letter
matcher accepts the generated text for the letter the logits picked; the script also counts rows
whose prompt and label (as written to the JSONL) are identical on both sides.

By default the data are the synthetic shapes built into `imagenet-vqa` MCQs (random-weight tiny CLIP)
and the model is the tiny random Qwen2.5-VL after `--train-steps` steps of LLM full fine-tuning by LF,
enough for it to answer with a letter; `--train-steps 0` keeps it random (it then rambles up to
`--max-new-tokens`); `--model DIR --template T` and `--data DIR --dataset NAME` take any checkpoint/set.

Measured on the 2-core CPU with OMP_NUM_THREADS=1 (a busy second core makes 2-thread torch ops ~50x
slower for both sides), batch 8, max_new_tokens 16 unless said, timings noisy by ~30 %:
- tuned 60 steps, 96 rows: fresh process 16.5-17.0 s vs 11.6-13.0 s (1.3-1.5x); loop 1.3-1.8 s vs
  0.26-0.28 s (5.0-6.5x); agreement 96/96; prompts and labels identical 96/96; letter mass 0.78;
  accuracy 0.323 both.
  Same with max_new_tokens 2: loop 1.64 s vs 0.29 s (5.7x), agreement 96/96.
- tuned 60 steps, 384 rows: fresh process 16.5-19.1 s vs 12.0-13.3 s (1.2-1.6x); loop 2.6-3.4 s vs
  1.0-1.2 s (2.2-3.4x); agreement 384/384; accuracy 0.237 both.
- random model, 384 rows: fresh process 19.5 s vs 11.1 s (1.8x); loop 5.4 s vs 1.1 s (4.8x);
  agreement 0/384, as expected: it never generates a letter (letter mass 0.002).
So the logits answer is the generated answer whenever the model answers with a letter; the loop is
2-6x faster even when generation stops right after the letter, more when it writes more; on small sets
the fixed ~10 s of LF imports, data and model loading paid by both sides hides most of the gain.

Run: OMP_NUM_THREADS=1 python benchmarks/scoring.py [--per-class 8] [--train-steps 60] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.fixtures.synthetic import make_image_folder
from forgetkit.matchers import letter
from forgetkit.models import resolve_model
from forgetkit.recipes import CPU, Hardware, Recipe
from forgetkit.render import DataSpec, render_predict, render_train
from forgetkit.rundir import checkpoint_dirs
from forgetkit.scoring import score_file
from forgetkit.stages import llamafactory
from forgetkit.stages.logits import load_lf_model, load_predict_inputs, score_inputs

DATASET = "imagenet_vqa_val"


def build_set(root: Path, per_class: int) -> Path:
    """Shapes images → imagenet-vqa train and val MCQs in `root/data` (random-weight tiny CLIP, offline)."""
    images = make_image_folder(root / "images", splits={"train": 8, "val": per_class})
    clip = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=32, cache_dir=root / "clip-cache")
    for split in ("train", "val"):
        options = BuildOptions(
            source=images, out=root / "data", split=split, class_names=images / "class_names.txt", clip=clip
        )
        build("imagenet-vqa", options)
    return root / "data"


def tune(root: Path, data: DataSpec, steps: int) -> Path:
    """LLM full fine-tuning of the tiny model (lr 3e-3, batch 4): ~40 steps teach it to answer with a letter."""
    recipe = Recipe(lr=3e-3, batch_size=4, steps=steps, save_steps=steps)
    out = root / "tuned"
    text = render_train(resolve_model("tiny-qwen2.5-vl"), recipe, data, out, CPU, logging_steps=steps)
    llamafactory.run("train", text, root / "train.yaml", root / "train.log", out, desc="tune")
    return checkpoint_dirs(out)[-1]


def time_generation(
    model: str, dataset: str, data: DataSpec, hardware: Hardware, args: argparse.Namespace, root: Path
) -> tuple[float, float, Path]:
    """(wall s, LF's predict_runtime s, predictions file) of the real predict stage."""
    scratch = root / "predict"
    text = render_predict(
        model, args.template, dataset, data, scratch, hardware, args.batch_size, max_new_tokens=args.max_new_tokens
    )
    start = time.perf_counter()
    llamafactory.run("train", text, root / "predict.yaml", root / "predict.log", scratch, desc="generation")
    wall = time.perf_counter() - start
    runtime = json.loads((scratch / "predict_results.json").read_text())["predict_runtime"]
    return wall, runtime, scratch / "generated_predictions.jsonl"


def time_logits_fresh(
    model: str, dataset: str, data: DataSpec, args: argparse.Namespace, settings: dict, out: Path
) -> float:
    """Wall seconds of `score_by_logits` in a new interpreter, as a study stage would pay for it."""
    code = (
        "from pathlib import Path; from forgetkit.stages.logits import score_by_logits; "
        f"score_by_logits({model!r}, {data.dataset_dir!r}, {dataset!r}, {args.template!r}, output=Path({str(out)!r}), "
        f"batch_size={args.batch_size}, **{settings!r})"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint directory (default: the tiny model, tuned --train-steps)")
    parser.add_argument("--template", default="qwen2_vl")
    parser.add_argument("--data", help="folder with dataset_info.json (default: build the synthetic set)")
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--train-dataset", default="imagenet_vqa_train", help="what --train-steps tunes on")
    parser.add_argument("--per-class", type=int, default=8, help="val images per class of the synthetic set")
    parser.add_argument("--train-steps", type=int, default=60, help="0: score the random tiny model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--image-max-pixels", type=int, default=4096)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    hardware = CPU if args.device == "cpu" else Hardware(dataloader_workers=0, preprocessing_workers=1)

    with tempfile.TemporaryDirectory(prefix="forgetkit-bench-") as tmp:
        root = Path(tmp)
        dataset_dir = Path(args.data).resolve() if args.data else build_set(root, args.per_class)
        data = DataSpec(str(dataset_dir), (args.train_dataset,), cutoff_len=512, image_max_pixels=args.image_max_pixels)
        if args.model:
            model = args.model
        elif args.train_steps:
            model = str(tune(root, data, args.train_steps))
        else:
            model = resolve_model("tiny-qwen2.5-vl").path
        settings = {
            "image_max_pixels": data.image_max_pixels,
            "cutoff_len": data.cutoff_len,
            "bf16": hardware.bf16,
            "device": args.device,
        }

        gen_wall, gen_loop, generated = time_generation(model, args.dataset, data, hardware, args, root)
        scored = root / "logits.jsonl"
        logits_wall = time_logits_fresh(model, args.dataset, data, args, settings, scored)
        inputs = load_predict_inputs(model, dataset_dir, args.dataset, args.template, **settings)
        lf_model = load_lf_model(inputs)
        start = time.perf_counter()
        score_inputs(lf_model, inputs, args.batch_size)
        logits_loop = time.perf_counter() - start

        pairs = list(zip(read_jsonl(generated), read_jsonl(scored), strict=True))
        same_prompt = sum(gen["prompt"] == logit["prompt"] for gen, logit in pairs)
        same_label = sum(gen["label"] == logit["label"] for gen, logit in pairs)
        agree = sum(letter(gen["predict"], logit["predict"]) for gen, logit in pairs)
        mass = sum(logit["letter_mass"] for _, logit in pairs) / len(pairs)
        accuracy = score_file(generated).accuracy, score_file(scored).accuracy
    n = len(pairs)
    print(f"{model} ({args.template}), {args.dataset}: {n} rows, batch {args.batch_size}, "
          f"max_new_tokens {args.max_new_tokens}, {args.device}")  # fmt: skip
    print(f"prompts identical {same_prompt}/{n}, labels identical {same_label}/{n}")
    print(
        f"fresh process: generation {gen_wall:.1f} s, logits {logits_wall:.1f} s, ratio {gen_wall / logits_wall:.2f}x"
    )
    print(f"inference loop: generation (LF's predict_runtime) {gen_loop:.2f} s, logits {logits_loop:.2f} s, "
          f"ratio {gen_loop / logits_loop:.2f}x")  # fmt: skip
    print(f"agreement {agree}/{n} = {agree / n:.3f}; mean letter mass {mass:.3f}")
    print(f"accuracy (score_file): generation {accuracy[0]:.3f}, logits {accuracy[1]:.3f}")


if __name__ == "__main__":
    main()
