"""A local model folder placed into an HF hub cache in the layout `hf download` leaves, so a test can name the
model by hub id and have it served offline, as the paper's studies name Qwen2.5-VL."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from forgetkit.digests import sha256_file


def place_in_hub_cache(folder: Path, repo_id: str, cache: Path, commit: str | None = None) -> Path:
    """`cache/models--<owner>--<name>`: each file of `folder` as a blob named by its content, linked from
    `snapshots/<commit>/`, and `refs/main` naming that commit (by default one derived from `repo_id`).
    Returns the snapshot folder."""
    from huggingface_hub.file_download import repo_folder_name

    repo = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for part in (repo / "blobs", repo / "refs", snapshot):
        part.mkdir(parents=True, exist_ok=True)
    for file in sorted(Path(folder).iterdir()):
        if not file.is_file():
            continue
        blob = repo / "blobs" / sha256_file(file)
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.name
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot
