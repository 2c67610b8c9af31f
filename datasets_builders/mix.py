"""Data-hybrid training sets (paper §4.3, App. C.3): a base LF dataset mixed with others at given ratios.

The paper's released configs (github lihe50hz/MLLM-Forgetting, config_generation/mixing-datasets) let
LF do the mixing: `dataset: base,other`, `mix_strategy: interleave_over`, `interleave_probs: [1-r, r]`.
LF passes these to HF `datasets.interleave_datasets(..., stopping_strategy="all_exhausted")` with the
training seed: every row comes from dataset i with probability p_i, until each dataset has been used up
at least once; an exhausted dataset starts over, so the smaller one is oversampled (App. C.3).

Reads `<out>/dataset_info.json` (the datasets are entries there, built earlier into the same --out).
Default: writes `<out>/<name>.mix.json` holding those three LF keys (dataset_info.json cannot express
mixing) and a manifest. `--materialize`: writes the mixed rows as one LF dataset `<name>`, drawn by the
same HF function, so it equals what LF builds with `seed: <--seed>`.
"""

from __future__ import annotations

import importlib.metadata
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from datasets_builders.output import export_rows
from datasets_builders.registry import BuildOptions, BuildResult, register
from forgetkit import atomic
from forgetkit.digests import sha256_file
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json
from forgetkit.mixing import lf_settings, mix_plan, number


def parse_with(spec: str) -> tuple[str, Decimal]:
    """`NAME:RATIO` → (name, ratio); a ratio is the share of training rows drawn from NAME, 0 <= r < 1."""
    name, sep, ratio_text = spec.rpartition(":")
    try:
        ratio = Decimal(ratio_text.strip())
    except InvalidOperation:
        ratio = None
    if not sep or not name.strip() or ratio is None or not ratio.is_finite():
        raise ForgetkitError(f"--with {spec!r} is not NAME:RATIO, e.g. --with llava_665k:0.5")
    if not 0 <= ratio < 1:
        raise ForgetkitError(f"--with {spec!r}: the ratio must be at least 0 and below 1")
    return name.strip(), ratio


def plan_from_specs(base: str, specs: tuple[str, ...]) -> tuple[list[str], list[Decimal], list[str]]:
    if not specs:
        raise ForgetkitError("mix needs at least one --with NAME:RATIO, e.g. --with llava_665k:0.5")
    return mix_plan(base, [parse_with(spec) for spec in specs])


def read_dataset_info(out: Path) -> dict:
    return read_json(out / "dataset_info.json", dict, f"build the datasets to mix into --out {out} first")


def require_entries(info: dict, names: list[str], out: Path) -> None:
    for name in names:
        if name not in info:
            available = ", ".join(sorted(info)) or "none"
            raise ForgetkitError(
                f"dataset {name!r} is not in {out / 'dataset_info.json'}; available: {available}. "
                "Build it into the same --out first"
            )


def default_name(base: str, specs: tuple[str, ...]) -> str:
    parts = [f"{name}_{number(ratio)}" for name, ratio in map(parse_with, specs)]
    return "_".join(["mix", base, *parts])


def interleave_order(lengths: list[int], probs: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(dataset, row) of every mixed row, drawn by the HF code LF runs, on index-only datasets.

    `interleave_datasets` hands map-style datasets to `_interleave_map_style_datasets`; calling that
    directly only adds a fixed fingerprint, which spares HF pickling the whole index list to hash it
    (~4 min for ImageNet + LLaVA-665K). A test checks both give the same rows.
    """
    from datasets import Dataset
    from datasets.arrow_dataset import _interleave_map_style_datasets

    parts = [Dataset.from_dict({"part": np.full(n, k), "row": np.arange(n)}) for k, n in enumerate(lengths)]
    mixed = _interleave_map_style_datasets(
        parts, probs, seed, stopping_strategy="all_exhausted", new_fingerprint=f"forgetkit-mix-{seed}"
    )
    frame = mixed.to_pandas()
    return frame["part"].to_numpy(), frame["row"].to_numpy()


def read_lf_rows(out: Path, name: str, entry: dict) -> list:
    """The rows of one local LF dataset (a JSON list or JSONL file beside dataset_info.json)."""
    file_name = entry.get("file_name")
    path = out / file_name if isinstance(file_name, str) else None
    if path is None or not path.is_file() or path.suffix not in (".json", ".jsonl"):
        raise ForgetkitError(f"{name}: --materialize reads local .json/.jsonl files; its entry has {file_name!r}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise ForgetkitError(f"{path} is not valid JSON ({err}); rebuild {name}") from None
    if not isinstance(rows, list) or not rows:
        raise ForgetkitError(f"{path} holds no rows; rebuild {name}")
    return rows


def shared_entry(info: dict, names: list[str]) -> dict:
    """The dataset_info entry of the mixed file: all parts must be read the same way (columns, tags)."""
    layouts = {name: {k: v for k, v in info[name].items() if k != "file_name"} for name in names}
    for name in names:
        if "num_samples" in layouts[name]:
            raise ForgetkitError(f"{name}: --materialize cannot reproduce LF's num_samples resampling; drop it")
        if layouts[name] != layouts[names[0]]:
            raise ForgetkitError(
                f"{name} and {names[0]} have different dataset_info.json layouts (formatting, columns or tags); "
                "one mixed file needs one layout: mix them with LF instead (omit --materialize)"
            )
    return layouts[names[0]]


def component_counts(out: Path, names: list[str]) -> dict[str, int | None]:
    """Rows per dataset as its build manifest records them (None where there is no forgetkit manifest)."""
    counts: dict[str, int | None] = {}
    for name in names:
        manifest = out / f"{name}.manifest.json"
        try:
            counts[name] = json.loads(manifest.read_text(encoding="utf-8"))["counts"]["records"]
        except (OSError, ValueError, KeyError, TypeError):
            counts[name] = None
    return counts


@register("mix", params={"name": "name of the mix (default: mix_<base>_<name>_<ratio>...)"})
def build(options: BuildOptions) -> BuildResult:
    """A base LF dataset mixed with --with NAME:RATIO datasets: LF interleave_over settings, or --materialize rows."""
    if not options.base:
        raise ForgetkitError("mix needs --base NAME, the dataset the mix is built around, e.g. imagenet_vqa_train")
    names, probs, dropped = plan_from_specs(options.base, options.mix)
    mix_name = options.param("name") or default_name(options.base, options.mix)
    if not mix_name or any(c in mix_name for c in ",/\\") or mix_name.startswith("."):
        raise ForgetkitError(f"mix name {mix_name!r} must be a plain file name without ',' or '/'")
    info = read_dataset_info(options.out)
    require_entries(info, names + dropped, options.out)
    settings = lf_settings(names, probs)
    details = {
        "base": options.base,
        "with": list(options.mix),
        "left_out_at_ratio_0": dropped,
        "lf_settings": settings,
        "probabilities": dict(zip(names, map(number, probs))),
    }
    if options.materialize:
        return materialize(options, mix_name, names, probs, info, details)
    return write_settings(options, mix_name, names, settings, details)


def materialize(
    options: BuildOptions, mix_name: str, names: list[str], probs: list[Decimal], info: dict, details: dict
) -> BuildResult:
    """One LF file with the rows LF's interleave_over would draw for training seed `options.seed`."""
    entry = shared_entry(info, names) | {"file_name": f"{mix_name}.json"}
    parts = [read_lf_rows(options.out, name, info[name]) for name in names]
    which, rows = interleave_order([len(p) for p in parts], [float(p) for p in probs], options.seed)
    mixed = [parts[k][i] for k, i in zip(which.tolist(), rows.tolist())]
    drawn = np.bincount(which, minlength=len(names))
    details |= {
        "lf_seed": options.seed,
        "components": {
            name: {"rows": len(part), "drawn": int(n), "share": round(int(n) / len(mixed), 4)}
            for name, part, n in zip(names, parts, drawn)
        },
    }
    return export_rows(mixed, mix_name, options, entry, details=details)


def write_settings(
    options: BuildOptions, mix_name: str, names: list[str], settings: dict[str, str], details: dict
) -> BuildResult:
    """`<name>.mix.json` with the LF keys, its manifest, and what to put in the training config."""
    out = options.out
    manifest_path = out / f"{mix_name}.manifest.json"
    manifest_path.unlink(missing_ok=True)
    mix_path = out / f"{mix_name}.mix.json"
    atomic.write_json(mix_path, settings)
    counts = component_counts(out, names)
    digest = sha256_file(mix_path)
    manifest = {
        "dataset": mix_name,
        "kind": "lf-mix",
        **details,
        "component_rows": counts,
        "files": {mix_path.name: digest},
        "forgetkit": importlib.metadata.version("forgetkit"),
    }
    atomic.write_json(manifest_path, manifest)
    lines = [f"{key}: {value}" for key, value in settings.items()]
    print(f"{mix_name}: put these keys in the LLaMA-Factory training config (dataset_dir: {out}):")
    print("\n".join(f"  {line}" for line in lines))
    print(f"  e.g. forgetkit render-config --dataset {settings['dataset']} --dataset-dir {out}, plus the mix keys")
    records = sum(n for n in counts.values() if n is not None)
    return BuildResult(mix_name, records, (mix_path, manifest_path))
