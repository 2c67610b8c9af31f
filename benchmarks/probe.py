"""Drift probe along a real fine-tuning run: does the letter mass on caption prompts rise as the model learns MCQs?

The tiny random Qwen2.5-VL is fine-tuned by LF (`llamafactory-cli train`, LLM full, lr 3e-3, batch 4) on the
synthetic `imagenet-vqa` MCQs, saving every `--save-steps`. Each checkpoint is then probed against the base on
a drawn caption set (`forgetkit.fixtures.captions`, held out: no letter is a right answer there), and scored by
logits on the MCQ val set for comparison. Printed per checkpoint: KL(base || checkpoint) at the first answer
position and over the first `--positions` answer tokens, the letter mass on captions (base, checkpoint), the
share of caption prompts whose most likely first token is unchanged, the MCQ letter mass and accuracy, and
the probe's wall time (the first probe also pays LF's imports).

Measured on the 2-core CPU with OMP_NUM_THREADS=1, defaults (60 steps saved every 15, 24 caption prompts,
positions 4, 48 MCQ val rows):
  step  KL      KL@k    mass base→ckpt    top same  MCQ mass  MCQ acc  probe s
     0  0.0000  0.0000  0.0025→0.0025      1.00     0.002    0.354      3.3
    15  0.0834  0.0947  0.0025→0.0520      0.00     0.053    0.229      0.5
    30  1.2921  1.7011  0.0025→0.5255      0.00     0.532    0.229      0.6
    45  2.4677  3.0230  0.0025→0.6958      0.00     0.750    0.229      0.6
    60  2.6955  3.2393  0.0025→0.6935      0.00     0.775    0.229      0.6
So at this (deliberately high) learning rate the model learns to answer with a letter (MCQ letter mass 0.78,
accuracy at chance: the tiny model learns the format, not the classes) and carries the habit to captions: 69 %
of its first-token mass there goes to A-D and no caption keeps its first token. KL and letter mass rise
with the steps and level off by step 45. Each probe after the first takes ~0.6 s (LF's data build and two model loads).

Run: OMP_NUM_THREADS=1 python benchmarks/probe.py [--steps 60] [--save-steps 15] [--positions 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scoring import build_set

from forgetkit.fixtures.captions import write_caption_set
from forgetkit.models import resolve_model
from forgetkit.recipes import CPU, Recipe
from forgetkit.render import DataSpec, render_train
from forgetkit.rundir import checkpoint_dirs
from forgetkit.scoring import score_file
from forgetkit.stages import llamafactory
from forgetkit.stages.logits import score_by_logits
from forgetkit.stages.probe import probe

CAPTIONS = "shape_captions"
MCQ = "imagenet_vqa_val"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-steps", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--per-class", type=int, default=4, help="MCQ val images per class")
    parser.add_argument("--positions", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="forgetkit-probe-bench-") as tmp:
        root = Path(tmp)
        dataset_dir = build_set(root, args.per_class)
        write_caption_set(dataset_dir)
        data = DataSpec(str(dataset_dir), ("imagenet_vqa_train",), cutoff_len=512, image_max_pixels=4096)
        settings = {"image_max_pixels": data.image_max_pixels, "cutoff_len": data.cutoff_len}
        model = resolve_model("tiny-qwen2.5-vl")
        recipe = Recipe(lr=args.lr, batch_size=4, steps=args.steps, save_steps=args.save_steps)
        out = root / "tuned"
        text = render_train(model, recipe, data, out, CPU, logging_steps=args.save_steps)
        llamafactory.run("train", text, root / "train.yaml", root / "train.log", out, desc="tune")

        print("step  KL      KL@k    mass base→ckpt    top same  MCQ mass  MCQ acc  probe s")
        for checkpoint in [Path(model.path), *checkpoint_dirs(out)]:
            start = time.perf_counter()
            drift = probe(model.path, checkpoint, dataset_dir, CAPTIONS, model.template, positions=args.positions,
                          **settings)  # fmt: skip
            seconds = time.perf_counter() - start
            scored = score_by_logits(
                checkpoint, dataset_dir, MCQ, model.template, output=root / f"{checkpoint.name}.jsonl", **settings
            )
            rows = [json.loads(line) for line in scored.read_text(encoding="utf-8").splitlines()]
            mcq_mass = sum(row["letter_mass"] for row in rows) / len(rows)
            step = 0 if checkpoint == Path(model.path) else int(checkpoint.name.split("-")[1])
            print(
                f"{step:4d}  {drift['kl']:.4f}  {drift['kl_first_k']:.4f}  "
                f"{drift['answer_mass_base']:.4f}→{drift['answer_mass_checkpoint']:.4f}  "
                f"{drift['top_token_agreement']:8.2f}  {mcq_mass:8.3f}  {score_file(scored).accuracy:7.3f}  "
                f"{seconds:7.1f}"
            )


if __name__ == "__main__":
    main()
