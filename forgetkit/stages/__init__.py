"""One module per stage kind: how it plans its `Stage` (`<kind>_stage`, keyed by `stage.identity`) and how it runs
its real tool into the run directory, as a subprocess except `logits` and `probe`, which call LF's data and
model code in-process. Planning imports none of the tools (nor torch or pandas), so `launch --dry-run` is fast."""
