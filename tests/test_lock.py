"""The committed lock (constraints.txt) is an environment pyproject.toml allows, with the exact pins it names."""

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from forgetkit.doctor import LOCK, read_lock

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    texts = [*project["dependencies"], *(text for extra in project["optional-dependencies"].values() for text in extra)]
    return [Requirement(text) for text in texts]


def normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def locked() -> dict[str, str]:
    return read_lock(ROOT / LOCK)


def test_every_requirement_is_locked_at_a_version_it_allows(locked: dict[str, str]) -> None:
    for requirement in requirements():
        version = locked.get(normalised(requirement.name))
        assert version is not None, f"{requirement.name} is not in {LOCK}; refresh it (bash .ci/refresh-lock)"
        assert requirement.specifier.contains(version), f"{LOCK} has {requirement.name}=={version}, not {requirement}"


def test_binaries_and_read_formats_are_pinned_exactly_and_locked_at_those_pins(locked: dict[str, str]) -> None:
    exact = {
        normalised(r.name): str(r.specifier) for r in requirements() if any(s.operator == "==" for s in r.specifier)
    }
    assert exact == {
        "torch": "==2.11.0",
        "torchvision": "==0.26.0",
        "torchaudio": "==2.11.0",
        "llamafactory": "==0.9.5",
        "ms-vlmeval": "==0.0.20",
        "open-clip-torch": "==3.3.0",
    }
    for name, pin in exact.items():
        assert locked[name] == pin.removeprefix("==")


def test_transformers_is_held_to_llamafactory_0_9_5s_own_range() -> None:
    ours = next(r.specifier for r in requirements() if r.name == "transformers")
    llamafactory = next(
        Requirement(text).specifier
        for text in importlib.metadata.requires("llamafactory")
        if Requirement(text).name == "transformers"
    )
    for version in ("4.49.0", "4.52.0", "4.54.1", "4.55.0", "4.56.2", "4.57.0", "4.57.1", "5.6.0", "5.6.1", "6.0"):
        assert ours.contains(version) == llamafactory.contains(version), version
