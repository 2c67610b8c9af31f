"""The GPU check: a full-size random-weight Qwen2.5-VL-3B built from its config (no download), then per recipe
(LLM full, LLM LoRA, vision, projector) LLaMA-Factory's step time and peak GPU memory with bf16 + SDPA, eval
throughput of one evaluate stage with HF generation, letter logits and vLLM (if installed) on the same rows,
and open_clip ViT-L-14 images/s. Everything runs the real tools: `llamafactory-cli train` on the drawn
shapes MCQs, `forgetkit.stages.eval_worker`, open_clip.

The 3B config is Qwen/Qwen2.5-VL-3B-Instruct's `config.json` (its text and vision sizes below); the
tokenizer and processor are the tiny offline model's (a byte-level BPE with Qwen's special tokens), which
changes token counts, not the cost of a token. Peak memory is the most `nvidia-smi` saw while the stage ran.

`--size tiny` runs the same code on the tiny model on CPU (a smoke test of this script, not a measurement).

Run (GPU machine): python benchmarks/gpu_check.py [--steps 20] [--rows 256] [--out gpu_check.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from datasets_builders import BuildOptions, build
from forgetkit.clip_encoder import ClipSpec
from forgetkit.fixtures.synthetic import make_image_folder
from forgetkit.models import ModelSpec
from forgetkit.recipes import CPU, Hardware, Method, Part, Recipe
from forgetkit.render import MAX_NEW_TOKENS, DataSpec, render_predict, render_train
from forgetkit.rundir import RunDir
from forgetkit.stages import llamafactory
from forgetkit.stages.chat_predict import chat_settings
from forgetkit.stages.evaluate import Evaluation, member, settings_config
from forgetkit.tiny_model import tiny_model_dir

QWEN25_VL_3B = {
    "text": {
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
"""Qwen2.5-VL-3B-Instruct's sizes (its hub config.json); everything else is the tiny model's config."""
RECIPES = {
    "llm-full": Recipe(part=Part.llm, method=Method.full, lr=1e-5),
    "llm-lora": Recipe(part=Part.llm, method=Method.lora, lr=1e-4),
    "vision": Recipe(part=Part.vision, method=Method.full, lr=1e-5),
    "projector": Recipe(part=Part.projector, method=Method.full, lr=1e-5),
}


def full_size_model(out: Path) -> Path:
    """The tiny model's tokenizer and processor with Qwen2.5-VL-3B's sizes and random bf16 weights."""
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    tiny = tiny_model_dir()
    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns("*.safetensors", "config.json"))
    config = json.loads((tiny / "config.json").read_text())
    config["text_config"].update(QWEN25_VL_3B["text"])
    layers = QWEN25_VL_3B["text"]["num_hidden_layers"]
    config["text_config"]["layer_types"] = ["full_attention"] * layers
    config["vision_config"].update(QWEN25_VL_3B["vision"])
    config["vocab_size"] = QWEN25_VL_3B["text"]["vocab_size"]
    config["tie_word_embeddings"] = True
    (out / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration._from_config(AutoConfig.from_pretrained(out), dtype=torch.bfloat16)
    model.save_pretrained(out)
    return out


class PeakMemory:
    """The most GPU memory `nvidia-smi` reports in use while the block runs (MiB; None without a GPU)."""

    def __enter__(self) -> PeakMemory:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            except (OSError, subprocess.CalledProcessError):
                return
            used = max(int(line) for line in out.split())
            self.peak = used if self.peak is None else max(self.peak, used)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def train_step_time(
    model: ModelSpec, name: str, recipe: Recipe, data: DataSpec, root: Path, hardware: Hardware
) -> dict:
    """LF's seconds per optimizer step (its train_runtime over the steps; and after the first step, from its
    log's whole-second clock) and the peak memory."""
    out = root / f"train-{name}"
    text = render_train(model, recipe, data, out, hardware, logging_steps=1)
    with PeakMemory() as memory:
        llamafactory.run("train", text, root / f"{name}.yaml", root / f"{name}.log", out, desc=name)
    log = [json.loads(line) for line in (out / llamafactory.TRAINER_LOG).read_text().splitlines()]
    elapsed = [entry["elapsed_time"] for entry in log if "elapsed_time" in entry]
    steps = len(elapsed) - 1
    after_first = (_seconds(elapsed[-1]) - _seconds(elapsed[0])) / steps if steps > 0 else float("nan")
    runtime = json.loads((out / "train_results.json").read_text())["train_runtime"]
    return {
        "recipe": name,
        "s_per_step": runtime / recipe.steps,
        "s_per_step_after_first": after_first,
        "peak_mib": memory.peak,
        "batch": recipe.batch_size,
    }


def _seconds(clock: str) -> float:
    """LF's `elapsed_time` (H:MM:SS) in seconds."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def eval_throughput(model: ModelSpec, data: DataSpec, dataset: str, root: Path, hardware: Hardware, batch: int) -> list:
    rows = len(json.loads((Path(data.dataset_dir) / f"{dataset}.json").read_text()))
    results = []
    kinds = ["predict", "logits"]
    try:
        import vllm  # noqa: F401

        kinds.append("chat")
    except ImportError:
        print("vLLM not installed: its throughput is not measured")
    for kind in kinds:
        run = RunDir(root / f"eval-{kind}").create()
        if kind == "chat":
            settings = chat_settings(data, MAX_NEW_TOKENS, False, model.path, model.template, dataset, None)
            config = settings_config(settings)
        else:
            config = render_predict(model.path, model.template, dataset, data, run.scratch(kind), hardware, batch)
        members = [member(run, kind, "checkpoint", dataset, config, ())]
        with PeakMemory() as memory:
            start = time.perf_counter()
            Evaluation(run, "checkpoint", members, hardware.device, (), chunk_rows=1024)()
            wall = time.perf_counter() - start
        results.append({"eval": kind, "rows": rows, "wall_s": wall, "rows_per_s": rows / wall, "peak_mib": memory.peak})
    return results


def clip_images_per_second(device: str, batch: int = 256, rounds: int = 5) -> float:
    import open_clip
    import torch

    model = open_clip.create_model("ViT-L-14", pretrained=None).to(device).eval()
    images = torch.randn(batch, 3, 224, 224, device=device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        model.encode_image(images)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            model.encode_image(images)
        if device == "cuda":
            torch.cuda.synchronize()
    return batch * rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=256, help="eval rows (12 shape classes, rounded up)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tiny = args.size == "tiny"
    device = "cpu" if tiny else "cuda"
    hardware = CPU if tiny else Hardware(devices=1, per_device_batch_size=4, dataloader_workers=2)
    with tempfile.TemporaryDirectory(prefix="forgetkit-gpu-check-") as tmp:
        root = Path(tmp)
        path = tiny_model_dir() if tiny else full_size_model(root / "qwen2.5-vl-3b-random")
        model = ModelSpec(f"qwen2.5-vl-{args.size}-random", str(path), "qwen2_vl", model_type="qwen2_5_vl")
        images = make_image_folder(root / "images", splits={"train": 8, "val": -(-args.rows // 12)})
        clip = ClipSpec(model="tiny-random-clip", pretrained="none", batch_size=64, cache_dir=root / "clip")
        for split in ("train", "val"):
            build("imagenet-vqa", BuildOptions(images, root / "data", split, images / "class_names.txt", clip=clip))
        data = DataSpec(str(root / "data"), ("imagenet_vqa_train",), cutoff_len=1024, image_max_pixels=262144)
        results: dict = {"model": model.name, "device": device, "train": [], "eval": []}
        for name, recipe in RECIPES.items():
            sized = replace(recipe, steps=args.steps, save_steps=args.steps, batch_size=16)
            results["train"].append(train_step_time(model, name, sized, data, root, hardware))
            print(results["train"][-1], flush=True)
        results["eval"] = eval_throughput(model, data, "imagenet_vqa_val", root, hardware, args.batch)
        print(results["eval"], flush=True)
        clip_batch, rounds = (2, 1) if tiny else (256, 5)
        results["clip_vit_l14_images_per_s"] = clip_images_per_second(device, clip_batch, rounds)
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
