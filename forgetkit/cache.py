"""Where forgetkit keeps what it can rebuild (CLIP embeddings, the tiny model, the doctor's passes)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$FORGETKIT_CACHE`, else `$XDG_CACHE_HOME/forgetkit`, else `~/.cache/forgetkit`."""
    if os.environ.get("FORGETKIT_CACHE"):
        return Path(os.environ["FORGETKIT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "forgetkit"
