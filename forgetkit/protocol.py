"""The paper's fixed shapes (PROTOCOL.md), read by the spec, scoring, the report and the plots alike."""

QUADRANTS = ("ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I")
"""The 2x2 matrix of PROTOCOL.md §2: in/out-of-distribution text x image."""
