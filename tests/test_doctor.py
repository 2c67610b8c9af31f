"""`forgetkit doctor` passes on the locked stack, names a broken one with its fix, and gates `demo` and `launch`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgetkit import doctor
from forgetkit.doctor import Check, installed_version, lock_check, read_lock, require
from forgetkit.errors import ForgetkitError

FORGETKIT = [sys.executable, "-m", "forgetkit"]


def forgetkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FORGETKIT, *args], capture_output=True, text=True, env=env, timeout=900)


def torchaudio_2_11_1(root: Path) -> Path:
    """A torchaudio 2.11.1 found before the venv's, failing to load as that wheel does beside torch 2.11.0.

    The real wheel's failure is `OSError: Could not load this library: .../libtorchaudio.so` (undefined
    symbol); installing it would need the network, so its version and its error are faked here.
    """
    package = root / "torchaudio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise OSError('Could not load this library: /venv/lib/site-packages/torchaudio/lib/libtorchaudio.so')\n"
    )
    info = root / "torchaudio-2.11.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    return root


def test_the_locked_stack_passes_every_required_check_and_matches_the_lock() -> None:
    result = forgetkit("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    required = [line for line in lines if "[required]" in line]
    assert [line.split(":")[0] for line in required] == [
        "✔ [required] torch stack",
        "✔ [required] LLaMA-Factory",
        "✔ [required] VLMEvalKit",
        "✔ [required] open_clip",
    ]
    assert "✔ [required] torch stack: torch 2.11.0, torchvision 0.26.0, torchaudio 2.11.0 import together" in lines
    assert any(line.startswith("✔ [optional] lock: ") and "match constraints.txt" in line for line in lines)
    names = [line.split(":")[0].split("] ")[1] for line in lines]
    assert names[4:] == ["CUDA", "flash-attn", "vLLM", "lock", "$LMUData", "HF cache"]


def test_a_torchaudio_that_does_not_load_stops_doctor_and_demo_with_its_pin(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(torchaudio_2_11_1(tmp_path / "site")), FORGETKIT_CACHE=str(tmp_path / "c"))
    result = forgetkit("doctor", env=env)
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "] torch stack:" in line]
    assert line.startswith(
        "✘ [required] torch stack: torchaudio 2.11.1 (forgetkit needs ==2.11.0): "
        "torch 2.11.0, torchvision 0.26.0, torchaudio 2.11.1 do not import together "
        "(OSError: Could not load this library: libtorchaudio.so)"
    )
    assert line.endswith("constraints.txt 'torchaudio==2.11.0'") and "; fix: pip install -c " in line

    workdir = tmp_path / "demo"
    demo = forgetkit("demo", "--workdir", str(workdir), env=env)
    assert demo.returncode == 2
    assert demo.stderr.splitlines()[-1] == f"error: {line}", "the gate stops at the torch stack, nothing more"
    assert "Traceback" not in demo.stderr
    assert not workdir.exists()


def test_a_pass_is_remembered_until_the_installed_packages_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORGETKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(doctor, "_PASSED", set())
    runs = []
    monkeypatch.setattr(doctor, "run_checks", lambda device, required_only: runs.append(device) or [])
    require("cpu")
    doctor._PASSED.clear()
    require("cpu")
    assert runs == ["cpu"]

    monkeypatch.syspath_prepend(str(torchaudio_2_11_1(tmp_path / "site")))
    doctor._PASSED.clear()
    require("cpu")
    assert runs == ["cpu", "cpu"]


def test_a_failed_required_check_is_never_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGETKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(doctor, "_PASSED", set())
    broken = [
        Check("torch stack", False, "torchaudio 2.11.1", "pip install 'torchaudio==2.11.0'"),
        Check("x", False, "y"),
    ]
    monkeypatch.setattr(doctor, "run_checks", lambda device, required_only: broken)
    for _ in range(2):
        with pytest.raises(doctor.EnvironmentBroken) as err:
            require("cuda")
        assert str(err.value) == (
            "✘ [required] torch stack: torchaudio 2.11.1; fix: pip install 'torchaudio==2.11.0' "
            "(1 more: run forgetkit doctor)"
        )
    assert not list((tmp_path / "cache").glob("doctor/*.ok"))


def test_the_lock_check_names_what_differs_and_stays_quiet_on_a_match(tmp_path: Path) -> None:
    pyyaml, packaging = installed_version("pyyaml"), installed_version("packaging")
    lock = tmp_path / "constraints.txt"
    lock.write_text(f"# a lock\nPyYAML=={pyyaml}\npackaging=={packaging}\nno-such-package==1.0\n")
    check = lock_check(lock)
    assert check.ok and check.detail == "2 installed packages match constraints.txt; 1 locked package not installed"

    lock.write_text(f"PyYAML=={pyyaml}\npackaging==0.1\n")
    check = lock_check(lock)
    assert not check.ok and not check.required
    assert check.detail == f"constraints.txt differs on 1 installed package: packaging {packaging} (lock 0.1)"


def test_a_malformed_lock_line_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "constraints.txt"
    lock.write_text("torch==2.11.0\ntorchaudio>=2.11\n")
    with pytest.raises(ForgetkitError, match=r"constraints.txt:2: 'torchaudio>=2.11' is not NAME==VERSION"):
        read_lock(lock)
