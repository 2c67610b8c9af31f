"""forgetkit's classes for VLMEvalKit: a local checkpoint as a VLMEvalKit model, and a seeded VMCBench.

VLMEvalKit's own `Qwen2VLChat` needs CUDA, `nvidia-smi` and flash-attention 2, and its LLaVA class needs
the original `llava` package, so neither loads a fine-tuned Qwen2.5-VL or llava-1.5-hf checkpoint on any
device. `ForgetkitVLM` loads it with transformers (SDPA attention) and decodes greedily, resizing images by
the same pixel limits LLaMA-Factory applied in training. Importing this module imports VLMEvalKit: set
`LMUData` to an existing directory first, or VLMEvalKit creates `~/LMUData`.
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
from forgetkit.stages.vlmeval_eval import IMAGE_MAX_PIXELS, IMAGE_MIN_PIXELS, MODEL_KINDS, check_checkpoint

VMCBENCH_SEED = 0


def fit_pixels(image: Image.Image, max_pixels: int, min_pixels: int) -> Image.Image:
    """Scale `image` (aspect kept) into [min_pixels, max_pixels] area, as LLaMA-Factory does before its
    processor, so evaluation sees the pixel grids training saw."""
    area = image.width * image.height
    bound = max_pixels if area > max_pixels else min_pixels if area < min_pixels else None
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

    check_checkpoint(Path(model_path), kind, None if adapter is None else Path(adapter))
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = getattr(transformers, MODEL_KINDS[kind][1]).from_pretrained(
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
        image_max_pixels: int = IMAGE_MAX_PIXELS,
        image_min_pixels: int = IMAGE_MIN_PIXELS,
        max_new_tokens: int = 16,
        system_prompt: str | None = None,
    ) -> None:
        super().__init__()
        from transformers import GenerationConfig

        self.model, self.processor = load_checkpoint(model_path, kind, adapter, device, dtype)
        self.image_max_pixels = image_max_pixels
        self.image_min_pixels = image_min_pixels
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
