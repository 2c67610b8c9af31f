"""A dataset's predictions as they are made, so a killed evaluation resumes at its first missing row.

Each worker appends `ROW<TAB>LINE` records to its own part file, one write and one fsync per chunk of
rows; LINE is the prediction's JSONL line exactly as the finished file holds it (JSON escapes tabs and
newlines, so the first tab splits a record). A torn last record (a kill mid-write) is cut off when the
worker reopens its part. Once every row is present, the parts merge in row order into the dataset's
predictions file (temp file, then rename) and are deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forgetkit import atomic


class RowLog:
    """The part files of one dataset's predictions in `folder`; this worker writes `part-<shard>.tsv`."""

    def __init__(self, folder: Path, shard: int) -> None:
        self.folder = folder
        self.part = folder / f"part-{shard}.tsv"

    def done(self) -> dict[int, str]:
        """Row -> line for every complete record in any worker's part (this worker's torn tail cut off)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.part.is_file():
            _cut_torn_tail(self.part)
        found: dict[int, str] = {}
        for part in sorted(self.folder.glob("part-*.tsv")):
            found |= dict(_records(part))
        return found

    def append(self, records: list[tuple[int, str]]) -> None:
        """One chunk's records, durable before this returns."""
        data = "".join(f"{row}\t{line}\n" for row, line in records).encode("utf-8")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.part, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def merge(self, rows: int, target: Path) -> bool:
        """Write `target` from the parts if they hold rows 0..rows-1, then delete them; False if some are missing.

        Locked, so two workers finishing the same dataset together merge it once."""
        with self._locked():
            if not self.folder.is_dir():
                return target.is_file()
            found = self.done()
            if any(row not in found for row in range(rows)):
                return False
            atomic.write_text(target, "".join(found[row] + "\n" for row in range(rows)))
            for part in self.folder.glob("part-*.tsv"):
                part.unlink()
            return True

    @property
    def _lock_path(self) -> Path:
        return lock_path(self.folder)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def lock_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".lock")


def remove(folder: Path) -> None:
    """A merged set's folder (with whatever scratch the tool left in it) and its lock, once its workers ended."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        lock_path(folder).unlink()
        folder.parent.rmdir()


def _records(part: Path) -> Iterator[tuple[int, str]]:
    with open(part, encoding="utf-8") as handle:
        for record in handle:
            if record.endswith("\n"):
                row, _, line = record[:-1].partition("\t")
                yield int(row), line


def _cut_torn_tail(part: Path) -> None:
    data = part.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(part, "r+b") as handle:
            handle.truncate(end)
