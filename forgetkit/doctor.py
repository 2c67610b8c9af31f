"""`forgetkit doctor`: is this the stack forgetkit was tested on, and can it run a study here?

Each check is one line, ✔ or ✘ with its fix. Required checks gate `launch` and `demo`, so a broken
install stops before the first stage with the line that names it, not with a traceback deep in a
stage log. The tools are imported in child processes: a torch build that does not load must not take
forgetkit down with it, and VLMEvalKit's import turns off SSL verification process-wide.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from forgetkit.cache import cache_root
from forgetkit.errors import ForgetkitError
from forgetkit.resources import bundled

LOCK = "constraints.txt"
"""The whole resolved environment the suite passed in, as a pip constraints file (`pip install -c`)."""
TORCH_STACK = ("torch", "torchvision", "torchaudio")
MIN_FREE_GIB = 20
"""Below this, the HF cache check warns: one 7B checkpoint is ~15 GB."""

_TORCH_PROBE = """
import json, torch, torchvision, torchaudio
cuda = torch.cuda.is_available()
print(json.dumps({
    "cuda": cuda,
    "cuda_version": torch.version.cuda,
    "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
}))
"""


_PASSED: set[str] = set()
"""Devices whose required checks passed in this process."""


class EnvironmentBroken(ForgetkitError):
    """A required doctor check failed; the message is its line."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        """`✔ [required] name: detail`, or `✘ ...; fix: ...` when it failed."""
        need = "required" if self.required else "optional"
        fix = f"; fix: {self.fix}" if not self.ok and self.fix else ""
        return f"{'✔' if self.ok else '✘'} [{need}] {self.name}: {self.detail}{fix}"


@cache
def pins() -> dict[str, SpecifierSet]:
    """forgetkit's version requirements as installed (exact pins and ranges), keyed by normalised name."""
    found = {}
    for text in importlib.metadata.requires("forgetkit") or ():
        requirement = Requirement(text)
        if requirement.marker is None and requirement.specifier:
            found[_normalise(requirement.name)] = requirement.specifier
    return found


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def lock_path() -> Path | None:
    """The lock shipped with forgetkit (a checkout's top folder, or inside the wheel), if there is one."""
    try:
        return bundled(LOCK)
    except ForgetkitError:
        return None


def read_lock(path: Path) -> dict[str, str]:
    """`name==version` lines of a constraints file, keyed by normalised name (comments and blanks skipped)."""
    locked = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ForgetkitError(f"{path}:{number}: {raw!r} is not NAME==VERSION; refresh the lock (README, Set up)")
        locked[_normalise(name.strip())] = version.strip()
    return locked


def run_checks(device: str = "cpu", required_only: bool = False) -> list[Check]:
    """Every check, in the order `forgetkit doctor` prints them; CUDA is required when `device` is cuda.

    `required_only` (the gate before a stage runs) stops at a broken torch stack and kills the other probes."""
    with _Probes() as probes:
        torch = _torch_stack(probes.result("torch"))
        if required_only and not torch.ok:
            return [torch]  # every tool imports torch: its check would only repeat this failure, after its import
        checks = [
            torch,
            _llamafactory(probes.result("llamafactory"), probes.result("llamafactory-cli")),
            _tool("VLMEvalKit", "ms-vlmeval", probes.result("vlmeval")),
            _tool("open_clip", "open_clip_torch", probes.result("open_clip")),
            _cuda(probes.result("torch"), required=device == "cuda"),
        ]
    if required_only:
        return [check for check in checks if check.required]
    return [
        *checks,
        _optional_package("flash-attn", "flash_attn", "LF falls back to PyTorch's sdpa attention"),
        _optional_package("vLLM", "vllm", "eval.backend auto uses LF's HF engine"),
        lock_check(lock_path()),
        _lmudata(),
        _hf_cache(),
    ]


def require(device: str = "cpu") -> None:
    """Raise `EnvironmentBroken` with the first failing required check's line. A pass is remembered for
    this exact set of installed packages (and within the process), so only a changed environment pays
    for the checks again."""
    if device in _PASSED:
        return
    stamp = cache_root() / "doctor" / f"{_fingerprint(device)}.ok"
    if not stamp.is_file():
        sys.stderr.write("checking the environment once (forgetkit doctor) ...\n")
        failed = [check for check in run_checks(device, required_only=True) if not check.ok]
        if failed:
            more = f" ({len(failed) - 1} more: run forgetkit doctor)" if len(failed) > 1 else ""
            raise EnvironmentBroken(failed[0].line() + more)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    _PASSED.add(device)


def _fingerprint(device: str) -> str:
    """Digest of the interpreter, the device asked for and every installed distribution's name and version."""
    seen = sorted(
        f"{dist.metadata['Name']}=={dist.version}@{dist.locate_file('')}" for dist in importlib.metadata.distributions()
    )
    blob = json.dumps([sys.executable, device, seen])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The child's last exception line (or last line), with long library paths cut to their file name."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        for line in reversed(lines):
            if line.split(":", 1)[0].endswith(("Error", "Exception")):
                break
        else:
            line = lines[-1] if lines else f"exit {self.returncode}, no output"
        return " ".join(word if "/" not in word else Path(word).name for word in line.split())[:300]


class _Probes:
    """The tools' imports in child processes: torch's alone first (every other one imports it, so a broken torch
    stack is told in seconds), then the rest together, so they cost the slowest one."""

    def __init__(self) -> None:
        self._lmudata = tempfile.TemporaryDirectory(prefix="forgetkit-doctor-")
        self._env = dict(os.environ, LMUData=self._lmudata.name, PYTHONUNBUFFERED="1")
        cli = Path(sys.executable).with_name("llamafactory-cli")
        self._waiting = {
            "llamafactory": [sys.executable, "-c", "import llamafactory.train.tuner"],
            "llamafactory-cli": [str(cli) if cli.exists() else "llamafactory-cli", "version"],
            "vlmeval": [sys.executable, "-c", "import vlmeval"],
            "open_clip": [sys.executable, "-c", "import open_clip"],
        }
        self._running: dict[str, subprocess.Popen | _Result] = {}
        self._start("torch", [sys.executable, "-c", _TORCH_PROBE])

    def _start(self, name: str, args: list[str]) -> None:
        try:
            self._running[name] = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self._env
            )
        except OSError as err:
            self._running[name] = _Result(127, "", f"OSError: {err}")

    def result(self, name: str) -> _Result:
        if name not in self._running:
            for waiting, args in self._waiting.items():
                self._start(waiting, args)
            self._waiting = {}
        found = self._running[name]
        if isinstance(found, subprocess.Popen):
            try:
                stdout, stderr = found.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                found.kill()
                stdout, stderr = found.communicate()
                stderr += "\nTimeoutError: no answer in 600 s"
            found = self._running[name] = _Result(found.returncode, stdout, stderr)
        return found

    def __enter__(self) -> _Probes:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self._running.values():
            if isinstance(process, subprocess.Popen) and process.poll() is None:
                process.kill()
                process.wait()
        self._lmudata.cleanup()


def _pin_fix(packages: list[str], reinstall: bool = False) -> str:
    """`pip install` of these packages at forgetkit's pins, under the lock when there is one."""
    wanted = pins()
    args = " ".join(f"'{name}{wanted.get(_normalise(name), '')}'" for name in packages)
    lock = lock_path()
    constraint = f"-c {lock} " if lock else ""
    return f"pip install {'--force-reinstall ' if reinstall else ''}{constraint}{args}"


def _off_pin(packages: tuple[str, ...]) -> list[str]:
    """Of `packages`, those whose installed version is outside forgetkit's requirement."""
    wanted = pins()
    return [
        name
        for name in packages
        if (pin := wanted.get(_normalise(name))) is not None
        and ((version := installed_version(name)) is None or not pin.contains(version, prereleases=True))
    ]


def _describe_off_pin(packages: list[str]) -> str:
    """'torchaudio 2.11.1 (forgetkit needs ==2.11.0)' for each."""
    wanted = pins()
    return "; ".join(
        f"{name} {installed_version(name) or 'missing'} (forgetkit needs {wanted[_normalise(name)]})"
        for name in packages
    )


def _fix_for(package: str, *others: str) -> str:
    """Reinstall `package` at its pin, unless these or the torch trio are off their pins: then those."""
    return _pin_fix(_off_pin((package, *others, *TORCH_STACK)) or [package])


def _torch_stack(result: _Result) -> Check:
    versions = ", ".join(f"{name} {installed_version(name) or 'missing'}" for name in TORCH_STACK)
    off = _off_pin(TORCH_STACK)
    fix = _pin_fix(off) if off else _pin_fix(list(TORCH_STACK), reinstall=True)
    if result.returncode != 0:
        blame = f"{_describe_off_pin(off)}: " if off else ""
        return Check("torch stack", False, f"{blame}{versions} do not import together ({result.error})", fix)
    if off:
        return Check("torch stack", False, f"{_describe_off_pin(off)} imports, but it is not the tested build", fix)
    return Check("torch stack", True, f"{versions} import together")


def _llamafactory(trainer: _Result, cli: _Result) -> Check:
    """LF's trainer module (what train and predict import: torch, transformers, peft, torchaudio) and its CLI."""
    version = installed_version("llamafactory")
    off = _off_pin(("llamafactory", "transformers"))
    fix = _fix_for("llamafactory", "transformers")
    if version is None:
        return Check("LLaMA-Factory", False, "not installed", fix)
    if trainer.returncode != 0:
        return Check("LLaMA-Factory", False, f"llamafactory {version} does not import: {trainer.error}", fix)
    if cli.returncode != 0:
        return Check("LLaMA-Factory", False, f"`llamafactory-cli version` failed: {cli.error}", fix)
    if off:
        return Check("LLaMA-Factory", False, _describe_off_pin(off), fix)
    return Check("LLaMA-Factory", True, f"llamafactory {version} imports and llamafactory-cli runs")


def _tool(label: str, package: str, result: _Result) -> Check:
    version = installed_version(package)
    fix = _fix_for(package)
    if version is None:
        return Check(label, False, f"{package} not installed", fix)
    if result.returncode != 0:
        return Check(label, False, f"{package} {version} does not import: {result.error}", fix)
    if _off_pin((package,)):
        return Check(label, False, _describe_off_pin([package]), fix)
    return Check(label, True, f"{package} {version} imports")


def _cuda(result: _Result, required: bool) -> Check:
    if result.returncode != 0:
        return Check("CUDA", False, "unknown: torch does not import", "see the torch stack check", required)
    info = json.loads(result.stdout.strip().splitlines()[-1])
    if not info["cuda"]:
        fix = "run on a GPU machine, or set hardware.device: cpu in the spec"
        return Check("CUDA", False, f"no CUDA device (torch built for CUDA {info['cuda_version']})", fix, required)
    devices = ", ".join(f"{name} x{info['devices'].count(name)}" for name in dict.fromkeys(info["devices"]))
    bf16 = "bf16 yes" if info["bf16"] else "bf16 no (set hardware.bf16: false)"
    return Check("CUDA", True, f"CUDA {info['cuda_version']}, {devices}; {bf16}", required=required)


def _optional_package(label: str, package: str, without: str) -> Check:
    version = installed_version(package)
    if version is None:
        fix = f"pip install -c {lock_path() or LOCK} {package} (GPU machines; the lock keeps pip from replacing torch)"
        return Check(label, False, f"not installed ({without})", fix, False)
    return Check(label, True, f"{package} {version}", required=False)


def lock_check(lock: Path | None) -> Check:
    """Do the installed packages have the versions `lock` records? (A wheel install may ship none.)"""
    if lock is None:
        return Check("lock", False, f"no {LOCK} shipped beside forgetkit", "install from a checkout", False)
    locked = read_lock(lock)
    differ, missing = [], 0
    for name, version in locked.items():
        have = installed_version(name)
        if have is None:
            missing += 1
        elif have != version:
            differ.append(f"{name} {have} (lock {version})")
    absent = f"; {_count(missing, 'locked package')} not installed" if missing else ""
    if differ:
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        fix = f"pip install -c {lock} -e '.[test]' in a new venv (README, Set up)"
        return Check(
            "lock",
            False,
            f"{lock.name} differs on {_count(len(differ), 'installed package')}: {shown}{absent}",
            fix,
            False,
        )
    return Check(
        "lock", True, f"{_count(len(locked) - missing, 'installed package')} match {lock.name}{absent}", required=False
    )


def _lmudata() -> Check:
    value = os.environ.get("LMUData")
    if value is None:
        detail = "not set: forgetkit sets it per VLMEvalKit stage from eval.lmudata (VLMEvalKit alone makes ~/LMUData)"
        return Check("$LMUData", True, detail, required=False)
    if not Path(value).is_dir():
        return Check("$LMUData", False, f"{value} is not a folder", f"mkdir -p {value}, or unset LMUData", False)
    return Check("$LMUData", True, value, required=False)


def _hf_cache() -> Check:
    from forgetkit.models import hub_cache, hub_offline

    cache = hub_cache()
    offline = "offline" if hub_offline() else "online (set HF_HUB_OFFLINE=1 where there is no network)"
    existing = next(folder for folder in (cache, *cache.parents) if folder.exists())
    free = shutil.disk_usage(existing).free / 2**30
    detail = f"{cache}, {offline}, {free:.0f} GiB free"
    if free < MIN_FREE_GIB:
        return Check(
            "HF cache", False, detail, f"free space, or point HF_HOME at a larger disk (>= {MIN_FREE_GIB} GiB)", False
        )
    return Check("HF cache", True, detail, required=False)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
