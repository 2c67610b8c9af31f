"""Matchers: the paper's Listing 1 (letter) and Listings 2-5 (MLLM-CL), quirks included, and the class-name
mischoice of ImageWikiQA with class-label distractors."""

import pytest

from forgetkit.errors import ForgetkitError
from forgetkit.matchers import (
    MissingField,
    classlabel_mischoice,
    get_matcher,
    letter,
    matcher_for,
    mllmcl_fin,
    mllmcl_med,
    mllmcl_rs_ad,
    mllmcl_sci,
    resolve,
)


@pytest.mark.parametrize(
    ("predict", "label", "correct"),
    [
        ("B", "B", True),
        ("  b ", "B\n", True),  # both stripped, compared upper-cased; LF labels end in a newline
        ("B. tabby cat", "B", True),  # "starts with label + '.'"
        ("The answer is: C", "C", True),  # text after the last ':' is kept
        ("Answer: A. Note: C", "C", True),  # ...the *last* ':', even when an earlier one held the answer
        ("Answer: A. Note: C", "A", False),
        ("Answer:", "A", False),
        ("B tabby cat", "B", False),  # no '.' after the letter: not a match
        ("BC", "B", False),
        ("(B)", "B", False),
        ("", "A", False),
        ("a.", "A", True),
    ],
)
def test_letter_matcher_follows_listing_1(predict: str, label: str, correct: bool) -> None:
    assert letter(predict, label) is correct
    assert get_matcher("letter")(predict, label, {"prompt": "ignored"}) is correct


@pytest.mark.parametrize(
    ("predict", "label", "correct"),
    [
        ("yes", "yes\n", True),  # LF's label carries the ChatML turn's newline; MLLM-CL's answer does not
        ("Yes", "yes", True),
        ("The area is rural land.", "rural land", True),  # a truth with a space: substring
        ("The area is rural", "rural land", False),
        ("no, it is not", "no", True),  # a one-word truth must stand as a word: ' no', 'no ', 'no.' or 'no,'
        ("The answer is no", "no", True),
        ("There are none", "no", True),  # ...but ' no' is also the start of ' none'
        ("nothing", "no", True),  # a one-word prediction only needs to contain it
        ("There are 3 buildings", "2", False),
        ("There are 12 buildings", "2", True),  # ...and '2 ' is the end of '12 '
        ("12", "2", True),
        ("about 0 5 km", "0.5", False),  # dots leave the truth ("05"), they do not become spaces
        ("about 05 km", "0.5", True),
        ("Unanswerable", "Unanswerable", False),  # a prediction saying "Unanswerable" earns nothing
        ("unanswerable", "unanswerable", True),  # ...MLLM-CL's test is case-sensitive
    ],
)
def test_rs_and_ad_follow_listing_2(predict: str, label: str, correct: bool) -> None:
    assert mllmcl_rs_ad(predict, label) is correct
    assert get_matcher("mllmcl-rs") is get_matcher("mllmcl-ad") is mllmcl_rs_ad


@pytest.mark.parametrize(
    ("predict", "label", "correct"),
    [
        ("Adenocarcinoma of the colon", "adenocarcinoma\n", True),
        ("yes", "no", False),
        ("nope", "no", True),  # any substring counts
        ("no. Unanswerable", "no", False),
    ],
)
def test_med_follows_listing_3(predict: str, label: str, correct: bool) -> None:
    assert mllmcl_med(predict, label) is correct


QUESTION = {"prompt": "<|im_start|>user\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n"}
STATES = {"text": "Which states have the highest value in the USA?"}


@pytest.mark.parametrize(
    ("predict", "label", "row", "credit"),
    [
        ("a", "A\n", {}, 1),  # a truth among a-d needs no question: equal once lower-cased
        ("A.", "A", {}, 0),
        ("A ", "A", {}, 0),  # ...and the prediction is not stripped
        ("B", "A", {}, 0),
        ("E", "E", QUESTION, 1),  # 'e' is no multiple-choice truth: substring
        ("Texas,Ohio", "Texas,Ohio\n", STATES, 1),  # "Which states": share of the truth's items said
        ("Texas,Nevada", "Texas,Ohio", STATES, 0.5),
        ("Texas, Ohio", "Texas,Ohio", STATES, 0.5),  # ...split on ',' without stripping: ' ohio' != 'ohio'
        ("Texas, Ohio", "Texas, Ohio", QUESTION, 1),  # not a "Which states" question: substring
        ("It is lower than average.", "lower than average", QUESTION, 1),
        ("lower", "Lower than average", QUESTION, 0),  # the truth must be in the prediction, not the reverse
        ("", "Lower than average", QUESTION, 0),  # an empty answer earns nothing on a free answer
        ("l", "Lower than average", QUESTION, 0),
        ("neither", "no", QUESTION, 0),  # no 'neither' -> 'no' rewrite
        ("no. Unanswerable", "no", QUESTION, 0),
    ],
)
def test_sci_follows_the_authors_eval_sci(predict: str, label: str, row: dict, credit: float) -> None:
    assert mllmcl_sci(predict, label, row) == credit


@pytest.mark.parametrize(
    ("predict", "label", "row", "credit"),
    [
        ("A", "A\n", {}, 1),  # a one-character truth needs no question: exact match
        ("a", "A", {}, 1),
        ("A.", "A", {}, 0),  # the listing turns '.' into a space and does not strip again
        ("Texas, Nevada", "Texas, Ohio", STATES, 0.5),
        ("Ohio, Texas", "Texas, Ohio", STATES, 0),
        ("lower", "Lower than average", QUESTION, 1),  # either way
        ("neither", "no", QUESTION, 1),  # 'neither' reads as 'no'
        ("", "Lower than average", QUESTION, 1),  # an empty answer is "contained" in any truth
        ("higher", "Lower than average", QUESTION, 0),
        ("Unanswerable", "Unanswerable", QUESTION, 0),
    ],
)
def test_sci_listing4_is_the_papers_looser_variant(predict: str, label: str, row: dict, credit: float) -> None:
    assert get_matcher("mllmcl-sci-listing4")(predict, label, row) == credit


def test_sci_asks_for_the_question_only_when_its_rule_depends_on_it() -> None:
    assert mllmcl_sci("c", "C") == 1
    with pytest.raises(MissingField, match="question text"):
        mllmcl_sci("Texas", "Texas,Ohio")
    assert mllmcl_sci("Texas", "Texas,Ohio", {"question": "Which states border Canada?"}) == 0.5


@pytest.mark.parametrize(
    ("predict", "label", "correct"),
    [
        ("Yes", "Yes\n", True),
        ("yes.", "Yes", True),  # spaces and dots leave the prediction
        ("Y es", "Yes", True),
        ("B", "B", True),
        ("B. down", "B", False),  # then it must equal the truth
        ("Yes, it rose", "Yes", False),
        ("Unanswerable", "Unanswerable", True),  # eval_finvis.py has no "Unanswerable" rule
        ("Unanswerable", "No", False),
    ],
)
def test_fin_follows_the_authors_eval_finvis(predict: str, label: str, correct: bool) -> None:
    assert mllmcl_fin(predict, label) is correct


def test_mischoice_is_the_letter_matcher_against_the_planted_class_option() -> None:
    row = {"class_option": "C"}
    assert classlabel_mischoice("C", "A", row) and classlabel_mischoice("Answer: C. goldfish", "A", row)
    assert not classlabel_mischoice("A", "A", row)
    with pytest.raises(MissingField, match="class_option"):
        classlabel_mischoice("C", "A", {})


def test_mllmcl_test_sets_default_to_their_domains_matcher() -> None:
    assert [matcher_for(f"mllmcl_{d}_test") for d in ("rs", "med", "ad", "sci", "fin")] == [
        "mllmcl-rs",
        "mllmcl-med",
        "mllmcl-ad",
        "mllmcl-sci",
        "mllmcl-fin",
    ]
    assert matcher_for("mllmcl_rs_train") == matcher_for("imagenet_vqa_val") == matcher_for("vlmeval:MMMU") == "letter"
    assert resolve("auto", "mllmcl_fin_test") == "mllmcl-fin"
    assert resolve("letter", "mllmcl_fin_test") == "letter"


def test_unknown_matcher_names_the_choices() -> None:
    with pytest.raises(ForgetkitError, match="unknown matcher 'fuzzy'.*letter.*mllmcl-sci.*auto"):
        get_matcher("fuzzy")
    with pytest.raises(ForgetkitError, match="unknown matcher 'fuzzy'"):
        resolve("fuzzy", "imagenet_vqa_val")
