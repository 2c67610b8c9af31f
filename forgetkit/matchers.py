"""Answer matchers: how much credit one model output earns for its labelled answer.

A matcher is `match(predict, label, row) -> credit`: the model's output, the ground truth, and the whole
prediction row (plus its sidecar's fields, see `forgetkit.scoring`) for the matchers that need more than
the label. Credit is True/False except on `mllmcl-sci`'s "Which states" questions, which earn a fraction.

- `letter`: the paper's Listing 1 (App. D.2), quirks included: only the text after the *last* ':' is
  kept, comparison is upper-cased, and "B. tabby cat" counts for label "B".
- `mllmcl-rs`, `mllmcl-ad`, `mllmcl-med`, `mllmcl-sci`, `mllmcl-fin`: the authors' released scorers
  (MLLM-Forgetting `evaluators/CL-evaluators/eval_{ai2d,pvqa,sci,finvis}.py`, adapted from MLLM-CL's
  `ETrain/Eval/LLaVA/CoIN/`), which the paper prints as Listings 2-5 (App. D.4). RS, AD, Med and Fin
  equal the listings; Sci is stricter than Listing 4, which stays as `mllmcl-sci-listing4`. Except in Fin,
  a prediction containing "Unanswerable" earns nothing but stays in the denominator, as in the scripts.
- `classlabel-mischoice`: whether the model chose the class-name option planted in ImageWikiQA with
  class-label distractors (paper §4.2, Fig. 3); over a file, the mischoice rate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from forgetkit.errors import ForgetkitError
from forgetkit.protocol import is_mllm_cl_test, mllm_cl_task

Row = Mapping[str, Any]
Matcher = Callable[[str, str, Row], float]
NO_ROW: Row = MappingProxyType({})
AUTO = "auto"
"""Not a matcher: 'each dataset's own', resolved by `matcher_for` from the dataset's name."""
UNANSWERABLE = "Unanswerable"
QUESTION_KEYS = ("text", "question", "prompt")
"""Where a row holds its question: MLLM-CL's meta sidecar, VLMEvalKit's items, LF's templated prompt."""


class MissingField(ValueError):
    """A matcher needs a field its row lacks; the reader turns it into an error naming the file and line."""


def letter(predict: str, label: str, row: Row = NO_ROW) -> bool:
    predict = str(predict).strip()
    if ":" in predict:
        predict = predict.rpartition(":")[2].strip()
    predict = predict.upper()
    label = str(label).strip().upper()
    return predict == label or predict.startswith(label + ".")


def _ground_truth(label: str) -> str:
    """MLLM-CL's answer as its scripts see it: LF's label is the answer plus the chat template's turn end,
    which current LF versions leave as a trailing newline (ChatML templates) after dropping special tokens."""
    return str(label).rstrip("\n")


def mllmcl_rs_ad(predict: str, label: str, row: Row = NO_ROW) -> bool:
    """Listing 2 (RS and AD). A one-word truth must stand as a word in a several-word prediction; dots
    are deleted from it as MLLM-CL's eval_ai2d.py does (the listing prints them replaced by spaces)."""
    predict = str(predict)
    if UNANSWERABLE in predict:
        return False
    pred = predict.lower()
    gt = _ground_truth(label).lower()
    if " " in gt:
        return gt in pred
    gt = gt.replace(".", "")
    if " " in pred:
        return f" {gt}" in pred or f"{gt} " in pred or f"{gt}." in pred or f"{gt}," in pred
    return gt in pred


def mllmcl_med(predict: str, label: str, row: Row = NO_ROW) -> bool:
    """Listing 3 (Med): the truth appears anywhere in the prediction."""
    predict = str(predict)
    if UNANSWERABLE in predict:
        return False
    return _ground_truth(label).lower() in predict.lower()


def mllmcl_sci(predict: str, label: str, row: Row = NO_ROW) -> float:
    """The authors' eval_sci.py (Sci), which scored the paper's numbers: a truth among a-d (multiple choice)
    must equal the lower-cased prediction; a "Which states" question (MapQA) earns the share of the truth's
    comma-separated items found among the prediction's comma-separated items; anything else is right when
    the truth appears in the prediction. Listing 4's looser rule is `mllmcl-sci-listing4`."""
    predict = str(predict)
    if UNANSWERABLE in predict:
        return False
    pred, gt = predict.lower(), _ground_truth(label).lower()
    if gt in ("a", "b", "c", "d"):
        return gt == pred
    if "Which states" in question(row):
        truths = gt.split(",")
        return sum(truth in pred.split(",") for truth in truths) / len(truths)
    return gt in pred


def _listing4_form(text: str) -> str:
    return text.strip().lower().replace(".", " ").replace(",", " ").replace("neither", "no")


def mllmcl_sci_listing4(predict: str, label: str, row: Row = NO_ROW) -> float:
    """Listing 4 as the paper prints it: a one-character truth (the paper's stand-in for MLLM-CL's
    "AI2D/TQA/VQA/SciVerse image" test) must equal the prediction; "Which states" as `mllmcl-sci`;
    anything else is right when either contains the other, so an empty prediction scores on any free
    answer. The listing's normal form (dots and commas to spaces, 'neither' to 'no') would leave no
    comma to split on, so the fraction is taken on the lower-cased texts."""
    predict = str(predict)
    if UNANSWERABLE in predict:
        return False
    pred = _listing4_form(predict)
    gt = _listing4_form(_ground_truth(label))
    if len(gt) == 1:
        return gt == pred
    if "Which states" in question(row):
        truths = _ground_truth(label).lower().split(",")
        said = predict.lower().split(",")
        return sum(truth in said for truth in truths) / len(truths)
    return gt in pred or pred in gt


def mllmcl_fin(predict: str, label: str, row: Row = NO_ROW) -> bool:
    """The authors' eval_finvis.py (Fin), as Listing 5: yes/no or a letter, equal once spaces and dots leave
    the prediction. Unlike the other domains it has no "Unanswerable" rule: the comparison alone decides."""
    return str(predict).lower().replace(" ", "").replace(".", "") == _ground_truth(label).lower()


def classlabel_mischoice(predict: str, label: str, row: Row = NO_ROW) -> bool:
    """Listing 1 against the planted class-name option's letter (`class_option`) instead of the label."""
    option = row.get("class_option")
    if not isinstance(option, str) or not option:
        raise MissingField(
            "'class_option', the planted class-name option's letter: give the data's "
            "imagewikiqa_classlabel.records.jsonl as sidecar"
        )
    return letter(predict, option)


def question(row: Row) -> str:
    """The row's question text, for matchers whose rule depends on what was asked."""
    for key in QUESTION_KEYS:
        if isinstance(row.get(key), str):
            return row[key]
    keys = ", ".join(repr(key) for key in QUESTION_KEYS)
    raise MissingField(
        f"the question text ({keys}); LF's predictions carry 'prompt', else give the data's meta sidecar"
    )


MATCHERS: dict[str, Matcher] = {
    "letter": letter,
    "mllmcl-rs": mllmcl_rs_ad,
    "mllmcl-ad": mllmcl_rs_ad,
    "mllmcl-med": mllmcl_med,
    "mllmcl-sci": mllmcl_sci,
    "mllmcl-sci-listing4": mllmcl_sci_listing4,
    "mllmcl-fin": mllmcl_fin,
    "classlabel-mischoice": classlabel_mischoice,
}


def get_matcher(name: str) -> Matcher:
    try:
        return MATCHERS[name]
    except KeyError:
        choices = ", ".join([*sorted(MATCHERS), AUTO])
        raise ForgetkitError(f"unknown matcher {name!r}; choose one of: {choices}") from None


def matcher_for(dataset: str) -> str:
    """The matcher a dataset is scored with by default: its domain's for MLLM-CL's `mllmcl_<domain>_test`
    sets (built by datasets_builders/mllm_cl.py), the letter matcher for every MCQ set."""
    return f"mllmcl-{mllm_cl_task(dataset)}" if is_mllm_cl_test(dataset) else "letter"


def resolve(name: str, dataset: str) -> str:
    """`name`, or the dataset's own matcher when `name` is `auto`; an unknown name is an error."""
    name = matcher_for(dataset) if name == AUTO else name
    get_matcher(name)
    return name
