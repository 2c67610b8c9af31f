"""Quiet in-process calls into LLaMA-Factory: forgetkit runs LF's argument parser, loaders and data
pipeline in its own process in a few places (config checks, letter logits, trainable parameters), and
their console output would otherwise land in the middle of forgetkit's own (a YAML on stdout, a table)."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """LF's argument dump, data example and INFO lines (stdout), transformers' INFO lines and its "Loading
    weights" bar (stderr) kept off the console; every level and the bar's switch restored after.

    LF's `get_train_args` sets transformers' logging to INFO itself, so a load after it needs a second block.
    """
    from transformers.utils import logging as hf_logging

    loggers = [logging.getLogger(name) for name in ("llamafactory", "transformers")]
    levels = [logger.level for logger in loggers]
    bars = hf_logging.is_progress_bar_enabled()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
