"""Load a dataset the way LLaMA-Factory's trainer does, to prove an export is readable by its consumer.

Goes through LF's own argument parsing, tokenizer/processor loading, template and
`get_dataset` (dataset_info.json lookup, sharegpt conversion, image loading, tokenisation),
on the tiny offline model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from forgetkit.testing.tiny_model import tiny_model_dir


def load_with_llamafactory(dataset_dir: Path, dataset: str, image_max_pixels: int = 4096):
    """LF's preprocessed training set for `dataset` (a name in `dataset_dir/dataset_info.json`)."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with tempfile.TemporaryDirectory() as output_dir:
        args = {
            "model_name_or_path": str(tiny_model_dir()),
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "full",
            "dataset": dataset,
            "dataset_dir": str(dataset_dir),
            "template": "qwen2_vl",
            "cutoff_len": 2048,
            "image_max_pixels": image_max_pixels,
            "output_dir": output_dir,
            "overwrite_cache": True,
            "bf16": False,
            "fp16": False,
            "use_cpu": True,
            "report_to": "none",
        }
        model_args, data_args, training_args, _, _ = get_train_args(args)
        tokenizer_module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
        module = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)
        return module["train_dataset"], tokenizer_module["tokenizer"]
