"""Random-weight stand-ins of each model family, small enough for LLaMA-Factory to train on CPU, built offline.

Tests and the demo need real model directories that LLaMA-Factory, VLMEvalKit's stage and the logits stage
load as they load Qwen2.5-VL, Qwen2-VL, Qwen3-VL, LLaVA-1.5 or InternVL3-hf, but no weights or tokenizer can be
downloaded here. So the tokenizer is a byte-level BPE trained
locally with Qwen's pre-tokenizer and special tokens, and the weights are seeded random values.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forgetkit.cache import cache_root
from forgetkit.errors import ForgetkitError
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


def _build_tokenizer(rng: random.Random, named: Mapping[str, str]) -> Qwen2Tokenizer:
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
    specials = [*SPECIAL_TOKENS, *named.values()]
    vocab.update({token: len(vocab) + i for i, token in enumerate(specials)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in model["merges"]],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(named) if named else list(SPECIAL_TOKENS[1:]),
        model_max_length=RECIPE["text"]["max_position_embeddings"],
        chat_template=CHAT_TEMPLATE,
    )
    if named:  # named tokens take the extra-special slot; Qwen's own stay whole as added special tokens
        tokenizer.add_tokens(list(SPECIAL_TOKENS[1:]), special_tokens=True)
    return tokenizer


def build_tiny_model(out_dir: Path, family: str = "qwen2_5_vl", seed: int = 0) -> None:
    """Write tokenizer, processor, config, generation config and seeded random weights of `family`'s stand-in."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    builder = BUILDERS[family]
    tokenizer = _build_tokenizer(random.Random(seed), builder.extra_tokens)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    special = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    text_config = {**RECIPE["text"], **special, "vocab_size": -(-len(tokenizer) // 64) * 64}
    config, processor = builder.build(tokenizer, text_config)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        do_sample=False,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=special["pad_token_id"],
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _patching(patch_size: int, pixels: int) -> dict[str, Any]:
    """Qwen-VL image/video processor settings: every image resized to `pixels` area in `patch_size` patches."""
    # `size`, not min_pixels/max_pixels: in transformers 5.6 those overwrite the class-wide default dict.
    return {
        "size": {"shortest_edge": pixels, "longest_edge": pixels},
        "patch_size": patch_size,
        "temporal_patch_size": RECIPE["vision"]["temporal_patch_size"],
        "merge_size": RECIPE["vision"]["spatial_merge_size"],
    }


def _qwen_vl(
    names: tuple[str, str, str],
    tokenizer: Qwen2Tokenizer,
    text_config: dict[str, Any],
    vision_config: dict[str, Any],
    patching: dict[str, Any],
) -> tuple[Any, Any]:
    """A Qwen-VL generation's config and processor, from the names of its config, processor and video processor
    classes: all share Qwen2-VL's image processor, chat template and vision token ids."""
    import transformers
    from transformers import Qwen2VLImageProcessor

    config_class, processor_class, video_class = (getattr(transformers, name) for name in names)
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(**patching),
        video_processor=video_class(**patching),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids
    config = config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
        dtype="float32",
    )
    return config, processor


def _qwen2_5_vl(tokenizer: Qwen2Tokenizer, text: dict[str, Any]) -> tuple[Any, Any]:
    vision = RECIPE["vision"]
    names = ("Qwen2_5_VLConfig", "Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor")
    vision_config = {**vision, "out_hidden_size": text["hidden_size"]}
    return _qwen_vl(names, tokenizer, text, vision_config, _patching(vision["patch_size"], RECIPE["min_pixels"]))


def _qwen2_vl(tokenizer: Qwen2Tokenizer, text: dict[str, Any]) -> tuple[Any, Any]:
    vision = RECIPE["vision"]
    vision_config = {
        "depth": vision["depth"],
        "embed_dim": vision["hidden_size"],
        "hidden_size": text["hidden_size"],
        "mlp_ratio": vision["intermediate_size"] // vision["hidden_size"],
        "num_heads": vision["num_heads"],
        "patch_size": vision["patch_size"],
        "spatial_merge_size": vision["spatial_merge_size"],
        "temporal_patch_size": vision["temporal_patch_size"],
    }
    names = ("Qwen2VLConfig", "Qwen2VLProcessor", "Qwen2VLVideoProcessor")
    return _qwen_vl(names, tokenizer, text, vision_config, _patching(vision["patch_size"], RECIPE["min_pixels"]))


def _qwen3_vl(tokenizer: Qwen2Tokenizer, text: dict[str, Any]) -> tuple[Any, Any]:
    vision = RECIPE["vision"]
    patch = 16  # Qwen3-VL's patches are 16 px: 96x96 images make 9 image tokens, as 84x84 do for Qwen2.5-VL
    rope = {**text["rope_parameters"], "mrope_interleaved": True}
    text_config = {**text, "rope_parameters": rope, "head_dim": text["hidden_size"] // text["num_attention_heads"]}
    vision_config = {
        "depth": vision["depth"],
        "hidden_size": vision["hidden_size"],
        "intermediate_size": vision["intermediate_size"],
        "num_heads": vision["num_heads"],
        "patch_size": patch,
        "spatial_merge_size": vision["spatial_merge_size"],
        "temporal_patch_size": vision["temporal_patch_size"],
        "out_hidden_size": text["hidden_size"],
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    names = ("Qwen3VLConfig", "Qwen3VLProcessor", "Qwen3VLVideoProcessor")
    patching = _patching(patch, (3 * patch * vision["spatial_merge_size"]) ** 2)
    return _qwen_vl(names, tokenizer, text_config, vision_config, patching)


LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{{ ' ' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
"""llava-1.5-hf's conversation format: `USER: <image>\\n... ASSISTANT:`."""


def _llava(tokenizer: Qwen2Tokenizer, text: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor

    vision, side = RECIPE["vision"], 84
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer,
        patch_size=vision["patch_size"],
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    tower = CLIPVisionConfig(
        hidden_size=vision["hidden_size"],
        intermediate_size=vision["intermediate_size"],
        num_hidden_layers=vision["depth"],
        num_attention_heads=vision["num_heads"],
        image_size=side,
        patch_size=vision["patch_size"],
    )
    llama = {key: value for key, value in text.items() if key != "rope_parameters"}
    config = LlavaConfig(
        vision_config=tower.to_dict(),
        text_config=LlamaConfig(**llama, tie_word_embeddings=False).to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    return config, processor


def _internvl(tokenizer: Qwen2Tokenizer, text: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    vision, side = RECIPE["vision"], 84  # 6x6 patches, pixel-shuffled to 9 image tokens
    size = {"height": side, "width": side}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=9,
        chat_template=CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\\n"),
    )
    tower = InternVLVisionConfig(
        hidden_size=vision["hidden_size"],
        intermediate_size=vision["intermediate_size"],
        num_hidden_layers=vision["depth"],
        num_attention_heads=vision["num_heads"],
        image_size=[side, side],
        patch_size=[vision["patch_size"], vision["patch_size"]],
    )
    qwen2 = {key: value for key, value in text.items() if key != "rope_parameters"}
    config = InternVLConfig(
        vision_config=tower.to_dict(),
        text_config=Qwen2Config(**qwen2, tie_word_embeddings=False).to_dict(),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=9,
        tie_word_embeddings=False,
    )
    return config, processor


@dataclass(frozen=True)
class Builder:
    """How one family's stand-in is made: its config and processor, and the tokens it adds."""

    build: Callable[[Qwen2Tokenizer, dict[str, Any]], tuple[Any, Any]]
    extra_tokens: Mapping[str, str] = field(default_factory=dict)
    """Named special tokens the family's processor reads off its tokenizer (InternVL's `context_image_token`)."""


BUILDERS: dict[str, Builder] = {
    "qwen2_5_vl": Builder(_qwen2_5_vl),
    "qwen2_vl": Builder(_qwen2_vl),
    "qwen3_vl": Builder(_qwen3_vl),
    "llava": Builder(_llava, {"image_token": "<image>"}),
    "internvl": Builder(
        _internvl,
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    ),
}
"""Keyed as `models.FAMILIES`, by transformers' `model_type`; the model class follows from the config's."""


def recipe_hash(family: str = "qwen2_5_vl") -> str:
    """Short digest of everything the build depends on, so a changed recipe never reuses an old build."""
    blob = json.dumps({"version": RECIPE_VERSION, "recipe": RECIPE, "family": family}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def tiny_model_dir(cache_dir: Path | None = None, family: str = "qwen2_5_vl") -> Path:
    """Path of `family`'s cached tiny model (a transformers `model_type` in BUILDERS), built on first use; a killed
    or racing build never leaves a partial dir."""
    if family not in BUILDERS:
        raise ForgetkitError(f"forgetkit has no tiny stand-in for model type {family!r}; known: {', '.join(BUILDERS)}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    final = root / f"tiny-{family}-{recipe_hash(family)}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    tmp.chmod(0o755)
    try:
        build_tiny_model(tmp, family)
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
