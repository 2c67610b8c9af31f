"""One module per real tool a study drives; each runs it as a subprocess into the run directory."""
