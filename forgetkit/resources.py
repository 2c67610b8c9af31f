"""Files shipped beside the package (`templates/`, `runs/`), found in a checkout or inside a wheel."""

from __future__ import annotations

from pathlib import Path

from forgetkit.errors import ForgetkitError

PACKAGE_DIR = Path(__file__).resolve().parent


def bundled(name: str) -> Path:
    """`name` bundled inside the package (wheel), else beside it (checkout / editable install)."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.exists():
            return candidate
    raise ForgetkitError(f"{name} not found next to {PACKAGE_DIR}; reinstall forgetkit")
