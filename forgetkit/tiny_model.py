"""A random-weight Qwen2.5-VL small enough for LLaMA-Factory to train on CPU, built offline and cached.

Tests and the demo need a real model directory that LLaMA-Factory loads with `template: qwen2_vl`,
but no weights or tokenizer can be downloaded here. So the tokenizer is a byte-level BPE trained
locally with Qwen's pre-tokenizer and special tokens, and the weights are seeded random values.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit.cache import cache_root
from forgetkit.records import CLASSIFICATION_QUESTION

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer

# Bump whenever the build code or word lists change: only this and RECIPE feed the cache-dir hash.
RECIPE_VERSION = 1

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

# Same output as Qwen2-VL's own template, so LF's qwen2_vl template and the processor agree.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Everything that shapes the saved files; its hash names the cache directory.
RECIPE: dict[str, Any] = {
    "bpe_vocab_size": 1500,
    "corpus_sentences": 3000,
    "text": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    },
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
    },
    # Every image becomes 84x84: 9 image tokens. At 4 (64x64) the colours' states in the LLM were 0.9965
    # cosine-alike, and a drawn colour was not learned in 100 LF steps; at 9 it was, at 100 %.
    "min_pixels": 84 * 84,
    "max_pixels": 84 * 84,
}

CLASS_WORDS = (
    "golden retriever", "tabby cat", "tiger", "zebra", "goldfish", "sports car", "airliner",
    "container ship", "pizza", "banana", "strawberry", "daisy", "rose", "sunflower", "tulip",
    "mountain bike", "school bus", "fire truck", "teapot", "umbrella", "castle", "lighthouse",
    "red", "green", "blue", "yellow", "square", "circle", "triangle", "stripes", "shirt", "sneaker",
)  # fmt: skip
COMMON_WORDS = (
    "the", "a", "an", "this", "that", "these", "those", "it", "its", "there", "here", "what",
    "which", "who", "where", "when", "why", "how", "is", "are", "was", "were", "be", "been",
    "being", "has", "have", "had", "do", "does", "did", "can", "could", "will", "would", "should",
    "may", "might", "must", "not", "no", "yes", "and", "or", "but", "if", "then", "than", "so",
    "because", "while", "of", "in", "on", "at", "by", "for", "with", "from", "to", "into", "over",
    "under", "above", "below", "near", "between", "behind", "front", "inside", "outside", "image",
    "picture", "photo", "scene", "shows", "contains", "depicts", "looks", "like", "seems", "answer",
    "class", "letter", "option", "question", "choice", "correct", "wrong", "best", "describes",
    "describe", "label", "category", "type", "small", "large", "tiny", "huge", "bright", "dark",
    "light", "heavy", "old", "new", "young", "round", "flat", "tall", "short", "long", "wide",
    "narrow", "soft", "hard", "warm", "cold", "wet", "dry", "clean", "dirty", "happy", "quiet",
    "loud", "fast", "slow", "early", "late", "first", "last", "next", "other", "same", "different",
    "many", "few", "several", "every", "each", "some", "all", "most", "more", "less", "very",
    "really", "quite", "only", "also", "just", "still", "animal", "bird", "dog", "cat", "fish",
    "horse", "cow", "sheep", "goat", "pig", "duck", "chicken", "rabbit", "mouse", "bear", "lion",
    "elephant", "monkey", "snake", "frog", "turtle", "insect", "butterfly", "spider", "bee", "tree",
    "flower", "leaf", "grass", "forest", "river", "lake", "ocean", "sea", "beach", "mountain",
    "hill", "valley", "desert", "island", "sky", "cloud", "rain", "snow", "sun", "moon", "star",
    "road", "street", "bridge", "building", "house", "room", "kitchen", "table", "chair", "bed",
    "door", "window", "wall", "floor", "roof", "garden", "park", "city", "town", "village", "farm",
    "field", "car", "truck", "bus", "train", "plane", "boat", "ship", "bicycle", "motorcycle",
    "wheel", "engine", "sign", "lamp", "clock", "phone", "computer", "screen", "keyboard", "book",
    "paper", "pen", "bottle", "cup", "glass", "plate", "bowl", "spoon", "fork", "knife", "food",
    "bread", "cheese", "apple", "orange", "lemon", "grape", "cake", "cookie", "soup", "rice",
    "meat", "egg", "milk", "water", "coffee", "tea", "juice", "person", "man", "woman", "child",
    "boy", "girl", "people", "crowd", "player", "team", "ball", "game", "sport", "music", "guitar",
    "piano", "drum", "song", "dance", "painting", "drawing", "shape", "color", "pattern", "texture",
    "line", "edge", "corner", "center", "middle", "left", "right", "top", "bottom", "side", "part",
    "object", "thing", "item", "piece", "group", "set", "pair", "number", "count", "sample", "test",
    "model", "data", "result", "score", "value", "holding", "sitting", "standing", "walking",
    "running", "eating", "drinking", "playing", "reading", "writing", "looking", "watching",
    "carrying", "wearing", "flying", "swimming", "jumping", "driving", "riding", "sleeping",
    "smiling", "opening", "closing", "moving",
)  # fmt: skip
FILLER_WORDS = COMMON_WORDS + tuple(word for name in CLASS_WORDS for word in name.split())


def _corpus(rng: random.Random, n_sentences: int) -> list[str]:
    """Text whose frequent pairs become merges, so prompts and answers tokenize into few tokens."""
    lines = [
        CLASSIFICATION_QUESTION,
        "You are a helpful assistant.",
        "system",
        "user",
        "assistant",
        "A B C D E F",
    ] * 100
    for _ in range(n_sentences):
        words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(4, 12))]
        lines.append(" ".join(words).capitalize() + rng.choice(".?!"))
        options = rng.sample(CLASS_WORDS, 4)
        lines.append("\n".join(f"{letter}. {name}" for letter, name in zip("ABCD", options)))
        lines.append(f"The answer is {rng.choice('ABCDEF')}.")
    return lines


def _build_tokenizer(rng: random.Random) -> Qwen2Tokenizer:
    """Train a byte-level BPE with Qwen2's pre-tokenizer; special tokens sit after the BPE ids as in Qwen."""
    from tokenizers import (
        Regex,
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=RECIPE["bpe_vocab_size"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(rng, RECIPE["corpus_sentences"]), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    vocab.update({token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)})
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=RECIPE["text"]["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(out_dir: Path, seed: int = 0) -> None:
    """Write tokenizer, processor, config, generation config and seeded random weights into `out_dir`."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _build_tokenizer(random.Random(seed))
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    vision = RECIPE["vision"]
    # `size`, not min_pixels/max_pixels: in transformers 5.6 those overwrite the class-wide default dict.
    patching = {
        "size": {"shortest_edge": RECIPE["min_pixels"], "longest_edge": RECIPE["max_pixels"]},
        "patch_size": vision["patch_size"],
        "temporal_patch_size": vision["temporal_patch_size"],
        "merge_size": vision["spatial_merge_size"],
    }
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**patching),
        video_processor=Qwen2VLVideoProcessor(**patching),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )

    special = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    text_config = {**RECIPE["text"], **special, "vocab_size": -(-len(tokenizer) // 64) * 64}
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config={**vision, "out_hidden_size": text_config["hidden_size"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=special["pad_token_id"],
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def recipe_hash() -> str:
    """Short digest of everything the build depends on, so a changed recipe never reuses an old build."""
    blob = json.dumps({"version": RECIPE_VERSION, "recipe": RECIPE}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def tiny_model_dir(cache_dir: Path | None = None) -> Path:
    """Path of the cached tiny model, built on first use; a killed or racing build never leaves a partial dir."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    final = root / f"tiny-qwen2_5_vl-{recipe_hash()}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    tmp.chmod(0o755)
    try:
        build_tiny_model(tmp)
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
