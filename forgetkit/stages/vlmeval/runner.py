"""`python -m forgetkit.stages.vlmeval.runner ARGS`: VLMEvalKit's own runner (`python -m vlmeval ARGS`) with forgetkit's
classes registered, since a config's `class` is looked up on `vlmeval.vlm` / `vlmeval.dataset` in the
process that runs it, and its tables read with their texts intact (`texts_kept`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json

CONFIG_FIX = (
    'write VLMEvalKit\'s config: {"model": {NAME: {"class": ...}}, "data": {NAME: {"class": ..., "dataset": ...}}}'
)

EMPTY_IS_MISSING = {"keep_default_na": False, "na_values": ("",)}
"""How VLMEvalKit's tables are read in forgetkit: its writers leave a missing cell empty, and every other cell,
pandas' default NA strings ('NA', 'None', 'null', 'nan', 'N/A', ...) included, is a text an option, class or answer
may be."""


def _data_entries(config: Path) -> dict[str, dict]:
    """The config's dataset entries, checked before VLMEvalKit's ~15 s import."""
    data = read_json(config, dict, CONFIG_FIX).get("data")
    if not isinstance(data, dict) or not all(
        isinstance(entry, dict) and {"class", "dataset"} <= set(entry) for entry in data.values()
    ):
        raise ForgetkitError(f"{config}: 'data' must map names to entries with 'class' and 'dataset'; {CONFIG_FIX}")
    return data


def _check_pinned_tsvs(data: dict[str, dict], lmu_data: Path) -> None:
    """Refuse a local TSV whose md5 differs from the one VLMEvalKit pins for its name: VLMEvalKit would
    overwrite it with a download (or fail offline) instead of evaluating it."""
    import vlmeval.dataset
    from vlmeval.smp import md5

    for name, entry in data.items():
        dataset_class = getattr(vlmeval.dataset, entry["class"], None)
        if dataset_class is None:
            raise ForgetkitError(f"dataset class {entry['class']!r} is not in vlmeval.dataset; {CONFIG_FIX}")
        pinned = dataset_class.DATASET_MD5.get(entry["dataset"])
        tsv = lmu_data / f"{entry['dataset']}.tsv"
        if pinned is not None and tsv.is_file() and md5(str(tsv)) != pinned:
            raise ForgetkitError(
                f"{tsv} is not VLMEvalKit's {entry['dataset']} (md5 differs from its pinned {pinned}), and "
                f"VLMEvalKit would replace it by a download; rename it (e.g. {name}_local.tsv) to evaluate it as is"
            )


@contextlib.contextmanager
def texts_kept() -> Iterator[None]:
    """Within: pandas' `read_csv` and `read_excel` read with `EMPTY_IS_MISSING` unless the caller sets NA handling.

    VLMEvalKit loads every table (`vlmeval.smp.load`: the dataset TSV, the prediction and result sheets) with
    pandas' default NA strings, so an option text 'NA' or 'None' would come back as NaN: left out of the prompt and
    of the choices an answer is matched against (a class text as the category, too). VLMEvalKit has no setting for
    this, pandas reads even a quoted 'NA' as missing (no TSV can spell it), and `load` is bound by name in every
    module that uses it; so the two pandas readers it calls are wrapped, for as long as VLMEvalKit runs here.
    """
    import pandas as pd

    def keeping_texts(reader: Callable) -> Callable:
        @functools.wraps(reader)
        def read(*args, **kwargs):
            if "keep_default_na" not in kwargs and "na_values" not in kwargs:
                kwargs = {**kwargs, **EMPTY_IS_MISSING}
            return reader(*args, **kwargs)

        return read

    originals = {name: getattr(pd, name) for name in ("read_csv", "read_excel")}
    for name, reader in originals.items():
        setattr(pd, name, keeping_texts(reader))
    try:
        yield
    finally:
        for name, reader in originals.items():
            setattr(pd, name, reader)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    lmu_data = os.environ.get("LMUData", "")
    if not lmu_data or not Path(lmu_data).is_dir():
        raise ForgetkitError("set LMUData to the directory holding the TSVs before running VLMEvalKit")
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", type=Path)
    config = parser.parse_known_args(argv)[0].config
    data = _data_entries(config) if config is not None else {}
    import vlmeval.dataset
    import vlmeval.vlm
    from vlmeval import run

    from forgetkit.stages.vlmeval.model import ForgetkitVLM, SeededVMCBench

    vlmeval.vlm.ForgetkitVLM = ForgetkitVLM
    vlmeval.dataset.SeededVMCBench = SeededVMCBench
    _check_pinned_tsvs(data, Path(lmu_data))
    sys.argv = ["vlmeval", *argv]
    with texts_kept():
        run.main()


if __name__ == "__main__":
    try:
        main()
    except ForgetkitError as error:
        print(f"ForgetkitError: {error}", file=sys.stderr)
        sys.exit(2)
