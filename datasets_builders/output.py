"""What every build leaves in `--out`: the LF JSON, its dataset_info.json entry, the VLMEvalKit TSV
(evaluation splits), and a manifest saying how the files were made and what they hold; and how the images a
build writes there (`write_image`) and the images its rows point at (`image_ref`) are placed.

Each file is written atomically; the manifest comes last, so a manifest that exists describes
files that are complete.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from datasets_builders.registry import BuildOptions, BuildResult
from forgetkit import atomic, exporters
from forgetkit.digests import sha256_file
from forgetkit.errors import ForgetkitError
from forgetkit.records import MCQRecord


def export(
    records: Sequence[MCQRecord],
    dataset: str,
    options: BuildOptions,
    *,
    skipped: Mapping[str, str] | None = None,
    details: Mapping[str, object] | None = None,
) -> BuildResult:
    """Write the MCQ records of `dataset` in every format, then its manifest.

    `<dataset>.records.jsonl` holds the canonical records in the LF JSON's row order, so what scoring needs
    beyond the label (class name, planted class-name option) lines up with LF's predictions.
    """
    if not records:
        raise ForgetkitError(f"{dataset}: no questions to write (every source item was skipped or filtered out)")
    out = _begin(dataset, options)
    json_path = out / f"{dataset}.json"
    exporters.write_lf_json(records, json_path)
    records_path = out / f"{dataset}.records.jsonl"
    atomic.write_jsonl(records_path, (record.to_dict() for record in records))
    files = [json_path, records_path]
    if options.write_tsv:
        tsv_path = out / f"{dataset}.tsv"
        exporters.write_vlmeval_tsv(records, tsv_path, lambda record: out / record.image)
        files.append(tsv_path)
    answers = Counter(record.answer for record in records)
    counts = {
        "records": len(records),
        "skipped": len(skipped or {}),
        "answers": dict(sorted(answers.items())),
        "classes": len({record.class_label for record in records}),
    }
    return _finish(dataset, options, files, counts, skipped, details, exporters.lf_dataset_entry(json_path.name))


def export_rows(
    rows: Sequence[dict],
    dataset: str,
    options: BuildOptions,
    entry: dict,
    *,
    sidecars: Mapping[str, Sequence[dict]] | None = None,
    skipped: Mapping[str, str] | None = None,
    details: Mapping[str, object] | None = None,
) -> BuildResult:
    """Write ready LF rows (conversations that are not 4-option MCQs, e.g. LLaVA-665K) and their manifest.

    Each `sidecars` entry `kind → rows` becomes `<dataset>.<kind>.jsonl`, row-aligned with the LF JSON
    (e.g. MLLM-CL's question ids and answers, which its matchers need).
    """
    if not rows:
        raise ForgetkitError(f"{dataset}: no rows to write (every source item was skipped or filtered out)")
    out = _begin(dataset, options)
    json_path = out / entry["file_name"]
    exporters.write_lf_rows(rows, json_path)
    files = [json_path]
    for kind, sidecar in (sidecars or {}).items():
        if len(sidecar) != len(rows):
            raise ValueError(f"{dataset}: sidecar {kind!r} has {len(sidecar)} rows for {len(rows)} LF rows")
        files.append(out / f"{dataset}.{kind}.jsonl")
        atomic.write_jsonl(files[-1], sidecar)
    counts = {"records": len(rows), "skipped": len(skipped or {})}
    return _finish(dataset, options, files, counts, skipped, details, entry)


def _manifest_path(dataset: str, options: BuildOptions) -> Path:
    return options.out / f"{dataset}.manifest.json"


def _begin(dataset: str, options: BuildOptions) -> Path:
    """Drop the old manifest first: if this build dies midway, no manifest vouches for mixed files (and a study
    refuses them). Temp files a killed build of this dataset left behind go too."""
    options.out.mkdir(parents=True, exist_ok=True)
    _manifest_path(dataset, options).unlink(missing_ok=True)
    for stale in options.out.glob(f".{glob.escape(dataset)}.*.tmp"):
        stale.unlink(missing_ok=True)
    return options.out


def _finish(
    dataset: str,
    options: BuildOptions,
    files: list[Path],
    counts: dict,
    skipped: Mapping[str, str] | None,
    details: Mapping[str, object] | None,
    entry: dict,
) -> BuildResult:
    info_path = exporters.merge_dataset_info(options.out, dataset, entry)
    digests = {path.name: sha256_file(path) for path in files}
    manifest = {
        "dataset": dataset,
        "source": _source(options),
        "split": options.split,
        "seed": options.seed,
        "limit": options.limit,
        "params": dict(sorted(options.params.items())),
        "counts": counts,
        "clip": options.clip.describe(),
        **dict(details or {}),
        "skipped": [{"item": item, "reason": reason} for item, reason in sorted((skipped or {}).items())],
        "files": digests,
        "content_hash": hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest(),
        "forgetkit": importlib.metadata.version("forgetkit"),
    }
    manifest_path = _manifest_path(dataset, options)
    atomic.write_json(manifest_path, manifest)
    return BuildResult(dataset, counts["records"], (*files, info_path, manifest_path), counts["skipped"])


def _source(options: BuildOptions) -> str | None:
    """A local source as an absolute path; a hub name (`hf:owner/name`) as given."""
    if options.source is None:
        return None
    return str(options.source) if str(options.source).startswith("hf:") else str(options.source.resolve())


def image_ref(path: Path, out_dir: Path) -> str:
    """LF resolves image paths against its dataset_dir, which is `out_dir`."""
    return Path(os.path.relpath(Path(path).resolve(), out_dir.resolve())).as_posix()


def write_image(path: Path, data: bytes) -> bool:
    """Write image bytes to `path` unless it already holds exactly them (a resumed build); True if written.

    The one resume rule of every builder that writes source image bytes (HF datasets, ImageWikiQA's parquet,
    OCR-VQA's covers): the size is compared first, so only a file of the right size is read back. Renamed into
    place, so no reader sees half a file; no fsync per image, which over a million small files would dominate
    the build: a file a crash left short or wrong differs, so the next run writes it again. BSCCM and PitVis
    keep their own rule (an existing file is done, as each is written with fsync): it spares decoding the plane
    or video frame, which comparing bytes would need.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True
