"""One module per stage kind: how it plans its `Step` (`<kind>_step`, keyed by `step.identity`) and how it runs
its real tool into the run directory, as a subprocess except `logits` and `probe`, which call LF's data and
model code in-process. Planning imports none of the tools (nor torch or pandas), so `launch --dry-run` is fast."""
