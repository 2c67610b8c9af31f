"""Reading the JSON files users hand us (sources, dataset_info.json) with one-line errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path

from forgetkit.errors import ForgetkitError


def read_json(path: Path, kind: type[list] | type[dict], fix: str) -> list | dict:
    """The JSON list or object in `path`; `fix` ends each error with what the user can do about it."""
    if not path.is_file():
        raise ForgetkitError(f"{path} does not exist; {fix}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ForgetkitError(f"{path} is not valid JSON ({err}); {fix}") from None
    if not isinstance(value, kind):
        expected = "list of rows" if kind is list else "object"
        raise ForgetkitError(f"{path} must hold a JSON {expected}, found a {type(value).__name__}; {fix}")
    return value
