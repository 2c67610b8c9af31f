"""One module per real tool a study drives; each runs it as a subprocess into the run directory, except
`logits`, which calls LF's data and model code in-process to score MCQs without generation."""
