"""LLaMA-Factory's own prediction code in this process: its argument parser on a predict stage's YAML, its
tokenizer, template and model loaders, its predict-mode eval dataset and generation collator.

A `Session` loads one checkpoint's tokenizer and model once; every eval set of that checkpoint is then
read by LF's `get_dataset` and answered by the same model (`forgetkit.stages.eval_worker`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.exporters import dataset_entry
from forgetkit.lf_quiet import quiet

MODEL_KEYS = (
    "model_name_or_path",
    "adapter_name_or_path",
    "finetuning_type",
    "template",
    "image_max_pixels",
    "trust_remote_code",
    "bf16",
)
"""The predict YAML keys that decide the loaded tokenizer and model: sets that agree on them share one load."""


@dataclass
class PredictArgs:
    """A predict YAML as LF's `get_train_args` parsed it."""

    config: dict[str, Any]
    model_args: Any
    data_args: Any
    training_args: Any
    finetuning_args: Any
    generating_args: Any

    @property
    def dataset(self) -> str:
        return self.config["eval_dataset"]

    def model_key(self) -> tuple:
        return tuple(self.config.get(key) for key in MODEL_KEYS)


def parse_predict(config_text: str, device: str, output_dir: str | Path) -> PredictArgs:
    """LF's parse of a predict stage's YAML with `output_dir` replaced and data workers set to none, which
    changes no input LF builds. A missing dataset fails in one line before LF's import time is spent."""
    config = yaml.safe_load(config_text)
    dataset_entry(Path(config["dataset_dir"]), config["eval_dataset"])
    config.update(output_dir=str(output_dir), preprocessing_num_workers=1, dataloader_num_workers=0)
    config["use_cpu"] = device == "cpu"
    with quiet():
        import transformers
        from llamafactory.hparams import get_train_args

        try:
            parsed = get_train_args(dict(config))
        except ValueError as err:
            raise ForgetkitError(f"LLaMA-Factory rejects the predict settings: {err}") from None
        transformers.logging.set_verbosity_error()  # get_train_args switched it to INFO; quiet() restores the old level
    model_args = parsed[0]
    model_args.device_map = {"": device}
    return PredictArgs(config, *parsed)


class Session:
    """One checkpoint's tokenizer module, LF template and (on first use) model, as LF's predict loads them."""

    def __init__(self, args: PredictArgs) -> None:
        with quiet():
            from llamafactory.data import get_template_and_fix_tokenizer
            from llamafactory.model import load_tokenizer

            self.tokenizer_module = load_tokenizer(args.model_args)
            self.template = get_template_and_fix_tokenizer(self.tokenizer_module["tokenizer"], args.data_args)
        self.args = args
        self._model: Any = None

    @property
    def tokenizer(self) -> Any:
        return self.tokenizer_module["tokenizer"]

    def check_same_model(self, args: PredictArgs) -> None:
        if args.model_key() != self.args.model_key():
            raise ForgetkitError(
                f"eval set {args.dataset!r} loads a different model than {self.args.dataset!r} "
                f"({dict(zip(MODEL_KEYS, args.model_key()))}); one session evaluates one checkpoint"
            )

    @property
    def model(self) -> Any:
        """LF's `load_model` for prediction: its class choice, dtype, attention and merged LoRA adapters."""
        if self._model is None:
            from llamafactory.model import load_model

            with quiet():
                self._model = load_model(
                    self.tokenizer, self.args.model_args, self.args.finetuning_args, is_trainable=False
                )
        return self._model

    def eval_dataset(self, args: PredictArgs) -> Any:
        """LF's predict-mode eval dataset of `args` (input ids end at the assistant prefix)."""
        self.check_same_model(args)
        from llamafactory.data import get_dataset

        with quiet():
            try:
                rows = get_dataset(
                    self.template, args.model_args, args.data_args, args.training_args, "sft", **self.tokenizer_module
                )
            except (ValueError, RuntimeError) as err:
                raise ForgetkitError(
                    f"LLaMA-Factory cannot read dataset {args.dataset!r} in {args.config['dataset_dir']}: {err}"
                ) from None
        return rows["eval_dataset"]

    def collator(self, model: Any = None) -> Any:
        """LF's collator with left padding. Without `model` it is the generation collator LF's predict builds (no
        position ids); with it LF also computes the model's position ids, as it does for training: Qwen-VL's
        M-RoPE, which transformers 5.6 cannot build from LF's generation batch (they carry no
        `mm_token_type_ids`: Qwen2.5-VL falls back to 1-D positions, Qwen2-VL refuses the batch)."""
        from llamafactory.data import SFTDataCollatorWith4DAttentionMask
        from llamafactory.extras.constants import IGNORE_INDEX

        model_args, data_args = self.args.model_args, self.args.data_args
        self.tokenizer.padding_side = "left"
        return SFTDataCollatorWith4DAttentionMask(
            template=self.template,
            model=model,
            pad_to_multiple_of=None,
            label_pad_token_id=IGNORE_INDEX if data_args.ignore_pad_token_for_loss else self.tokenizer.pad_token_id,
            block_diag_attn=model_args.block_diag_attn,
            neat_packing=data_args.neat_packing,
            compute_dtype=model_args.compute_dtype,
            **self.tokenizer_module,
        )


def scratch_parse(config_text: str, device: str) -> PredictArgs:
    """`parse_predict` into a scratch output folder, for callers that write nothing there."""
    with tempfile.TemporaryDirectory(prefix="forgetkit-predict-") as scratch:
        return parse_predict(config_text, device, scratch)
