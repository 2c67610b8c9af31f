"""The offline tiny Qwen2.5-VL: built once, cached, and loadable by transformers like a hub model."""

from pathlib import Path

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from forgetkit.models import TINY, resolve_model
from forgetkit.tiny_model import tiny_model_dir


def test_tiny_model_is_cached_and_resolves_by_name() -> None:
    first = tiny_model_dir()
    assert tiny_model_dir() == first
    assert resolve_model(TINY).path == str(first)
    assert resolve_model(TINY).template == "qwen2_vl"
    assert (first / "model.safetensors").stat().st_size < 5_000_000


def test_tiny_model_generates_from_an_image_and_the_chat_template(tmp_path: Path) -> None:
    path = tiny_model_dir()
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>" in prompt
    inputs = processor(text=[prompt], images=[Image.new("RGB", (64, 64), "red")], return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_build_is_deterministic(tmp_path: Path) -> None:
    a, b = tiny_model_dir(tmp_path / "a"), tiny_model_dir(tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
