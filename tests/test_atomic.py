"""Atomic writes keep a plain write's permissions: new files follow the umask, rewritten files keep their mode."""

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from forgetkit import atomic

FORGETKIT = [sys.executable, "-m", "forgetkit"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_output_gets_what_the_umask_allows(tmp_path: Path, umask: int, expected: int) -> None:
    target = tmp_path / "train.yaml"
    subprocess.run(
        [*FORGETKIT, "render-config", "--no-validate", "-o", str(target)], check=True, capture_output=True, umask=umask
    )
    assert mode(target) == expected
    assert "learning_rate" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["train.yaml"]


def test_a_rewritten_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic.write_json(target, {"a": 1})
    target.chmod(0o640)
    atomic.write_json(target, {"a": 2})
    assert mode(target) == 0o640
    assert target.read_text() == '{\n  "a": 2\n}\n'


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "scores.jsonl"
    atomic.write_text(target, "old\n")

    def rows():
        yield {"n": 1}
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError):
        atomic.write_jsonl(target, rows())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.jsonl"]
