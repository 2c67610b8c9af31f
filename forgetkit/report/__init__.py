"""A run's report: every accuracy and change vs zero-shot with a 95 % interval, the paper's tables and figures.

One way through, each module importing only those before it:
- `stats`: bootstrap replicates and intervals (how each kind of quantity is resampled), continual metrics;
- `inputs`: what is read from the run (item credit under scores.json's matchers, the spec, drift probes);
- `tables`: the paper's tables and figures' numbers from the statistics;
- `numbers`: `build_report`, numbers.json's content: those tables, the per-file and quadrant rows, the drift
  probes and the verdict per recipe;
- `text`: report.md's sections and the terminal summary;
- `render`: the files: report.md, numbers.json, the CSVs and figures, Table 2 merged over runs.
"""

from forgetkit.report.numbers import build_report
from forgetkit.report.render import render_report, write_merged_table2, write_report
from forgetkit.report.text import summary

__all__ = ["build_report", "render_report", "summary", "write_merged_table2", "write_report"]
