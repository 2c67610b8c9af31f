"""forgetkit's classes for VLMEvalKit: a local checkpoint as a VLMEvalKit model, and a seeded VMCBench.

VLMEvalKit's own `Qwen2VLChat` needs CUDA, `nvidia-smi` and flash-attention 2, and its LLaVA class needs
the original `llava` package, so neither loads a fine-tuned Qwen2.5-VL or llava-1.5-hf checkpoint on any
device. `ForgetkitVLM` loads it with transformers (SDPA attention) and decodes greedily, scaling images into
the pixel limits VLMEvalKit's own entry for the model sets (unless the study gives its own). Importing this
module imports VLMEvalKit: set `LMUData` to an existing directory first, or VLMEvalKit creates `~/LMUData`.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from vlmeval.dataset import VMCBenchDataset
from vlmeval.vlm.base import BaseModel

from forgetkit.errors import ForgetkitError
from forgetkit.models import FAMILIES, check_checkpoint, local_model_dir
from forgetkit.render import MAX_NEW_TOKENS

VMCBENCH_SEED = 0


def vlmeval_pixel_limits(entry: str) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) of VLMEvalKit's config entry `entry` (None where it sets none, as for LLaVA)."""
    from vlmeval.config import supported_VLM

    if entry not in supported_VLM:
        raise ForgetkitError(f"VLMEvalKit has no model {entry!r} in vlmeval/config.py; give the pixel limits")
    keywords = getattr(supported_VLM[entry], "keywords", {})
    return keywords.get("min_pixels"), keywords.get("max_pixels")


def fit_pixels(image: Image.Image, max_pixels: int | None, min_pixels: int | None) -> Image.Image:
    """Scale `image` (aspect kept) into [min_pixels, max_pixels] area (a None limit does not bind), as
    VLMEvalKit's Qwen2.5-VL entries bound the processor's resizing."""
    area = image.width * image.height
    above = max_pixels is not None and area > max_pixels
    below = min_pixels is not None and area < min_pixels
    bound = max_pixels if above else min_pixels if below else None
    if bound is not None:
        factor = math.sqrt(bound / area)
        image = image.resize((max(1, int(image.width * factor)), max(1, int(image.height * factor))))
    return image.convert("RGB")


def load_checkpoint(
    model_path: str | Path, kind: str, adapter: str | Path | None, device: str, dtype: str
) -> tuple[torch.nn.Module, Any]:
    """Model (LoRA adapter merged in, if any) on `device` in eval mode, and its processor."""
    import transformers
    from transformers import AutoProcessor

    model_path = local_model_dir(model_path)
    check_checkpoint(model_path, kind, None if adapter is None else Path(adapter))
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = getattr(transformers, FAMILIES[kind].hf_class).from_pretrained(
        str(model_path), dtype=torch_dtype, attn_implementation="sdpa"
    )
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    processor = AutoProcessor.from_pretrained(str(model_path))
    if getattr(processor, "chat_template", None) is None:
        raise ForgetkitError(f"{model_path} has no chat template in its processor; save one with the checkpoint")
    return model.to(device).eval(), processor


class ForgetkitVLM(BaseModel):
    """A local Qwen2.5-VL or llava-1.5-hf checkpoint (optionally + LoRA adapter) as a VLMEvalKit model.

    Prompts come from the dataset (`use_custom_prompt` stays False), as in VLMEvalKit's Qwen2.5-VL
    entries; images and text keep their interleaved order, rendered by the checkpoint's chat template.
    """

    INTERLEAVE = True

    def __init__(
        self,
        model_path: str,
        kind: str = "qwen2_5_vl",
        adapter: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        vlmeval_entry: str | None = None,
        image_max_pixels: int | None = None,
        image_min_pixels: int | None = None,
        max_new_tokens: int = MAX_NEW_TOKENS,
        system_prompt: str | None = None,
    ) -> None:
        super().__init__()
        from transformers import GenerationConfig

        self.model, self.processor = load_checkpoint(model_path, kind, adapter, device, dtype)
        entry_min, entry_max = vlmeval_pixel_limits(vlmeval_entry) if vlmeval_entry else (None, None)
        self.image_max_pixels = entry_max if image_max_pixels is None else image_max_pixels
        self.image_min_pixels = entry_min if image_min_pixels is None else image_min_pixels
        self.system_prompt = system_prompt
        defaults = self.model.generation_config
        # A fresh config: checkpoints ship sampling settings (Qwen2.5-VL: repetition_penalty 1.05) that greedy
        # decoding must not inherit.
        self.generation_config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            max_new_tokens=max_new_tokens,
            bos_token_id=defaults.bos_token_id,
            eos_token_id=defaults.eos_token_id,
            pad_token_id=defaults.pad_token_id if defaults.pad_token_id is not None else defaults.eos_token_id,
        )

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> str:
        """Answer one VLMEvalKit message (a list of `{'type': 'image'|'text', 'value': ...}`)."""
        content: list[dict[str, str]] = []
        images: list[Image.Image] = []
        for item in message:
            if item["type"] == "image":
                with Image.open(item["value"]) as image:
                    images.append(fit_pixels(image, self.image_max_pixels, self.image_min_pixels))
                content.append({"type": "image"})
            else:
                content.append({"type": "text", "text": item["value"]})
        conversation = [{"role": "user", "content": content}]
        if self.system_prompt is not None:
            conversation.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        prompt = self.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=self.generation_config)
        answer = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.decode(answer, skip_special_tokens=True).strip()


class SeededVMCBench(VMCBenchDataset):
    """VMCBench whose answer parser falls back to `random.choice` on unparseable answers; seeding right
    before scoring makes a score independent of whatever ran earlier in the process."""

    def evaluate(self, eval_file: str, **judge_kwargs: Any) -> Any:
        random.seed(VMCBENCH_SEED)
        return super().evaluate(eval_file, **judge_kwargs)
