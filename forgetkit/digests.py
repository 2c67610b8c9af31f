"""Content digests of files a run depends on (datasets, model weights), each hashed once per version.

A digest is remembered under the cache by the file's absolute path, size and mtime, so a 6 GB model or a
1 GB dataset is read once, and every later plan of a study only stats it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from forgetkit import atomic
from forgetkit.cache import cache_root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of `path`'s bytes, reused while its size and mtime are unchanged."""
    path = Path(path).resolve()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = cache_root() / "digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        cached = json.loads(entry.read_text(encoding="utf-8"))
        if {k: cached.get(k) for k in key} == key and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError):
        pass
    value = sha256_file(path)
    try:
        atomic.write_json(entry, {**key, "sha256": value})
    except OSError:
        pass
    return value
