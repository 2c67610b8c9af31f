"""The builder registry: what `forgetkit build-data NAME` can run, and the options every builder gets.

Adding a dataset is one module in this package whose builder function is decorated with
`@register(name, params=..., output=...)`; the package imports every module, and the CLI lists and runs
whatever is registered. Builder-specific knobs arrive as `--param key=value`, declared once in
`params` so that unknown keys fail with the list of known ones.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOptions:
    """Everything `forgetkit build-data` passes to a builder."""

    source: Path | None
    out: Path
    split: str = "val"
    class_names: Path | None = None
    seed: int = 0
    limit: int | None = None
    strict: bool = False
    """Fail on the first unreadable image or malformed source row instead of skipping it with a count."""
    tsv: bool | None = None
    """Write the VLMEvalKit TSV; None = only for evaluation splits (a TSV of ImageNet train would be ~190 GB)."""
    base: str | None = None
    mix: tuple[str, ...] = ()
    materialize: bool = False
    params: Mapping[str, str] = field(default_factory=dict)
    clip: ClipSpec = field(default_factory=ClipSpec)

    def require_source(self, what: str) -> Path:
        """The --source path, which must exist; `what` tells the user what to point it at."""
        if self.source is None:
            raise ForgetkitError(f"--source is required: pass {what}")
        if not self.source.exists():
            raise ForgetkitError(f"source {self.source} does not exist; pass {what}")
        return self.source

    def param(self, name: str, default: str | None = None) -> str | None:
        return self.params.get(name, default)

    @property
    def write_tsv(self) -> bool:
        return self.split != "train" if self.tsv is None else self.tsv


@dataclass(frozen=True)
class BuildResult:
    dataset: str
    records: int
    files: tuple[Path, ...]
    skipped: int = 0


Builder = Callable[[BuildOptions], BuildResult]


@dataclass(frozen=True)
class BuilderInfo:
    name: str
    build: Builder
    params: Mapping[str, str]
    output: str | None = None
    """The dataset name it writes, `{split}` filled from `--split`; None where it depends on more (a domain, a mix)."""

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.build) or ""
        return doc.splitlines()[0] if doc else ""


BUILDERS: dict[str, BuilderInfo] = {}


def register(
    name: str, params: Mapping[str, str] | None = None, output: str | None = None
) -> Callable[[Builder], Builder]:
    """Register a builder under `name`; `params` maps each `--param` key it reads to its help text, `output` is
    the name of the dataset it writes (`{split}` for the split), which a builder and its callers both read."""

    def add(builder: Builder) -> Builder:
        if name in BUILDERS:
            raise ValueError(f"builder {name!r} registered twice")
        BUILDERS[name] = BuilderInfo(name, builder, dict(params or {}), output)
        return builder

    return add


def output_name(builder: str, split: str = "val") -> str:
    """The dataset builder `builder` writes for `split`, as its registration declares it."""
    output = get_builder(builder).output
    if output is None:
        raise ForgetkitError(f"{builder} names its dataset from more than the split; see its --help")
    return output.format(split=split)


def get_builder(name: str) -> BuilderInfo:
    try:
        return BUILDERS[name]
    except KeyError:
        raise ForgetkitError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(BUILDERS))}") from None


SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A split names the output files (`<dataset>_<split>.json`), so it may not leave `--out`."""


def build(name: str, options: BuildOptions) -> BuildResult:
    """Run builder `name` after checking its `--param` keys."""
    info = get_builder(name)
    unknown = sorted(set(options.params) - set(info.params))
    if unknown:
        known = ", ".join(sorted(info.params)) or "none"
        raise ForgetkitError(f"{name} has no parameter {unknown[0]!r}; its parameters: {known}")
    if options.out.exists() and not options.out.is_dir():
        raise ForgetkitError(f"--out {options.out} is a file; name a folder (it becomes LLaMA-Factory's dataset_dir)")
    if not SPLIT_NAME.fullmatch(options.split):
        raise ForgetkitError(f"--split {options.split!r} names output files; use letters, digits, '.', '_' or '-'")
    return info.build(options)


@dataclass
class Skips:
    """Malformed rows and unreadable items of a source: kept with their reason for the manifest
    (`export(skipped=skips.items)`) and reported in one warning, or fatal at the first one with --strict."""

    strict: bool
    label: str = "source"
    items: dict[str, str] = field(default_factory=dict)

    def add(self, item: str, reason: str) -> None:
        if self.strict:
            raise ForgetkitError(f"{item}: {reason} (drop --strict to skip such rows with a count)")
        self.items[item] = reason

    def report(self) -> None:
        if self.items:
            item, reason = next(iter(self.items.items()))
            log.warning(
                "%s: skipped %d item(s), listed in the manifest; first: %s (%s). Use --strict to stop instead",
                self.label,
                len(self.items),
                item,
                reason,
            )


def seeded_subset(count: int, limit: int | None, seed: int | np.random.Generator) -> np.ndarray:
    """Positions of the `--limit` subset of `count` source items, in source order (all of them without a limit).

    Every builder takes its subset here, so `--limit N --seed S` means the same rule everywhere; `seed` may
    be a builder's own generator when the subset is one draw among others.
    """
    if limit is not None and limit < 1:
        raise ForgetkitError(f"--limit must be at least 1, got {limit}")
    if limit is None or limit >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings from the command line → a dict; a malformed pair names itself."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ForgetkitError(f"--param {pair!r} is not key=value, e.g. --param domain=RS")
        params[key.strip()] = value.strip()
    return params
