"""Whether a study's datasets are built, and what each one is: the identity a stage reading it is keyed by.

An LF dataset is built when `forgetkit build-data` wrote its manifest, last, and the files the manifest
lists still hold the bytes it hashed; a killed or overwritten build, or a hand-edited file, is not built.
A `vlmeval:NAME` benchmark is the TSV in VLMEvalKit's data folder, identified by its bytes.
"""

from __future__ import annotations

from pathlib import Path

from forgetkit.digests import file_digest
from forgetkit.errors import ForgetkitError
from forgetkit.jsonfile import read_json

VLMEVAL = "vlmeval:"
UNBUILT = "unbuilt"


def manifest_path(dataset_dir: Path, name: str) -> Path:
    return Path(dataset_dir) / f"{name}.manifest.json"


def data_identity(dataset_dir: str, name: str, lmudata: str = "lmudata") -> str:
    """The manifest's content hash (a benchmark's TSV digest), or `unbuilt`: a plan made before the data is
    built still lists every stage, and none of them counts as done."""
    if name.startswith(VLMEVAL):
        tsv = Path(dataset_dir) / lmudata / f"{name.removeprefix(VLMEVAL)}.tsv"
        return file_digest(tsv) if tsv.is_file() else UNBUILT
    path = manifest_path(Path(dataset_dir), name)
    try:
        manifest = read_json(path, dict, "")
    except ForgetkitError:
        return UNBUILT
    return str(manifest.get("content_hash", UNBUILT))


def check_built(dataset_dir: str, names: tuple[str, ...], lmudata: str = "lmudata") -> None:
    """Stop, naming the first dataset that is missing, unfinished or changed since its build, and how to fix it."""
    folder = Path(dataset_dir)
    info = read_json(
        folder / "dataset_info.json",
        dict,
        "build the data first (forgetkit build-data ...) or fix data.dataset_dir in the spec",
    )
    for name in dict.fromkeys(names):
        if name.startswith(VLMEVAL):
            tsv = folder / lmudata / f"{name.removeprefix(VLMEVAL)}.tsv"
            if not tsv.is_file():
                raise ForgetkitError(f"{name}: no {tsv}; put VLMEvalKit's TSV there (eval.lmudata names the folder)")
            continue
        rebuild = f"rebuild it (forgetkit build-data ... --out {folder})"
        if name not in info:
            known = ", ".join(sorted(info)[:20]) or "none"
            raise ForgetkitError(f"dataset {name!r} is not in {folder}/dataset_info.json; {rebuild}; known: {known}")
        path = manifest_path(folder, name)
        if not path.is_file():
            raise ForgetkitError(
                f"dataset {name!r} has no {path.name} in {folder}: its build did not finish; " + rebuild
            )
        files = read_json(path, dict, rebuild).get("files")
        if not isinstance(files, dict) or not files:
            raise ForgetkitError(f"{path} lists no files; {rebuild}")
        for file_name, digest in files.items():
            file = folder / str(file_name)
            if not file.is_file() or file_digest(file) != digest:
                state = "is missing" if not file.is_file() else "changed since its build"
                raise ForgetkitError(f"dataset {name!r}: {file} {state}; {rebuild}")
