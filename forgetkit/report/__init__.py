"""A run's report: every accuracy and change vs zero-shot with a 95 % interval, the paper's tables and figures.

One way through, each module importing only those before it:
- `terminal`: the score tables `forgetkit score`, `launch` and `demo` print, and the plain-text table every
  terminal table is drawn with;
- `stats`: bootstrap replicates and intervals (how each kind of quantity is resampled), continual metrics;
- `inputs`: what is read from the run (item credit under scores.json's matchers, the spec, drift probes);
- `tables`: the paper's tables and figures' numbers from the statistics;
- `numbers`: `build_report`, numbers.json's content: those tables, the per-file and quadrant rows, the drift
  probes and the verdict per recipe;
- `text`: report.md's sections and the terminal summary;
- `render`: the files: report.md, numbers.json, the CSVs and figures, Table 2 merged over runs.

The names below load their module on first use, so `forgetkit.report.terminal` comes without numpy and matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forgetkit.report.numbers import build_report
    from forgetkit.report.render import render_report, write_merged_table2, write_report
    from forgetkit.report.text import summary

_HOMES = {
    "build_report": "numbers",
    "render_report": "render",
    "summary": "text",
    "write_merged_table2": "render",
    "write_report": "render",
}

__all__ = ["build_report", "render_report", "summary", "write_merged_table2", "write_report"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
