"""The paper's fixed shapes (PROTOCOL.md), read by the spec, builders, scoring, the report and the plots alike."""

from __future__ import annotations

QUADRANTS = ("ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I")
"""The 2x2 matrix of PROTOCOL.md §2: in/out-of-distribution text x image."""
IMAGEWIKIQA = "imagewikiqa"
IMAGEWIKIQA_CLASSLABEL = "imagewikiqa_classlabel"
"""The OOD^T-ID^I set and its variant with a class-label distractor (Fig. 3), as their builders name them."""

MLLM_CL_DOMAINS = ("rs", "med", "ad", "sci", "fin")
"""MLLM-CL's domains (PROTOCOL.md §4) in Table 3's task order: remote sensing, medical, autonomous driving,
science, finance."""
MLLM_CL_TRAIN = "mllmcl_{task}_train"
MLLM_CL_TEST = "mllmcl_{task}_test"
"""How `build-data mllm-cl` names a domain's sets; a replay build adds `_replay<N>` to the training set."""


def mllm_cl_set(task: str, split: str, replay: int | None = None) -> str:
    """`mllmcl_<task>_<split>`, and `_replay<N>` for a training set with `replay` rows of each earlier domain."""
    name = f"mllmcl_{task.lower()}_{split}"
    return f"{name}_replay{replay}" if replay else name


def mllm_cl_task(dataset: str) -> str | None:
    """The task a `mllmcl_<task>_...` set belongs to; None for any other name."""
    prefix, _, rest = dataset.partition("_")
    task, separator, _ = rest.partition("_")
    return task if prefix == "mllmcl" and separator and task else None


def is_mllm_cl_test(dataset: str) -> bool:
    """An MLLM-CL domain's test set, which its domain's released scorer grades."""
    task = mllm_cl_task(dataset)
    return task in MLLM_CL_DOMAINS and dataset == MLLM_CL_TEST.format(task=task)
