"""Time the letter matcher (Listing 1) over 1M predictions, and `score_items` over the same as a JSONL file.

Target: at least 1M predictions/s for the matcher. The plain Python loop meets it; numpy's string ufuncs
(np.strings strip/rpartition/upper/startswith over StringDType arrays) were measured 2-3x slower here,
conversion to arrays included, so the matcher stays a per-item function.

Measured on the 2-core CPU (best of 3, load average 2.5-3.8 from other work): matcher 1.06-2.34M/s;
`score_items` on a 1M-line LF-style JSONL 0.14-0.33M/s, parsing each line's JSON being most of it (reading
through json's C scanner directly made it ~2x faster than json.loads, parallel lists instead of an object
per row another ~2x).

Run: python benchmarks/matchers.py [--items 1000000] [--repeats 3] [--no-file]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from forgetkit.matchers import letter
from forgetkit.scoring import score_items

FORMS = ("{L}", "{L}.", "{L}. tabby cat", "Answer: {L}", " {l} ", "The answer is ({L})", "{L}\n", "")
"""What models write: a bare letter, letter + option text, a preamble with ':', lower case, no answer."""


def predictions(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """`n` seeded (predict, label) pairs in LF's shape: labels carry the ChatML turn's trailing newline."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(list("ABCD"), n)
    truths = rng.choice(list("ABCD"), n)
    forms = rng.integers(0, len(FORMS), n)
    predicts = [FORMS[form].format(L=choice, l=choice.lower()) for choice, form in zip(picked, forms)]
    return predicts, [f"{truth}\n" for truth in truths]


def best_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-file", action="store_true", help="time the matcher only, not score_items on a file")
    args = parser.parse_args()
    predicts, labels = predictions(args.items)
    correct = sum(map(letter, predicts, labels))
    seconds = best_seconds(lambda: sum(map(letter, predicts, labels)), args.repeats)
    print(f"letter matcher: {args.items} predictions in {seconds:.3f} s = {args.items / seconds / 1e6:.2f}M/s "
          f"(accuracy {correct / args.items:.3f}; target >= 1M/s)")  # fmt: skip
    if args.no_file:
        return
    with tempfile.TemporaryDirectory(prefix="forgetkit-bench-") as tmp:
        path = Path(tmp) / "generated_predictions.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for predict, label in zip(predicts, labels):
                handle.write(json.dumps({"prompt": "<|im_start|>user\n...", "predict": predict, "label": label}) + "\n")
        seconds = best_seconds(lambda: score_items(path), args.repeats)
    print(f"score_items on a JSONL: {args.items} lines in {seconds:.3f} s = {args.items / seconds / 1e6:.2f}M/s")


if __name__ == "__main__":
    main()
