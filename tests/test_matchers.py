"""The letter matcher is the paper's Listing 1, quirks included."""

import pytest

from forgetkit.errors import ForgetkitError
from forgetkit.matchers import get_matcher, letter


@pytest.mark.parametrize(
    ("predict", "label", "correct"),
    [
        ("B", "B", True),
        ("  b ", "B\n", True),  # both stripped, compared upper-cased; LF labels end in a newline
        ("B. tabby cat", "B", True),  # "starts with label + '.'"
        ("The answer is: C", "C", True),  # text after the last ':' is kept
        ("Answer: A. Note: C", "C", True),  # ...the *last* ':', even when an earlier one held the answer
        ("Answer: A. Note: C", "A", False),
        ("B tabby cat", "B", False),  # no '.' after the letter: not a match
        ("BC", "B", False),
        ("(B)", "B", False),
        ("", "A", False),
        ("a.", "A", True),
    ],
)
def test_letter_matcher_follows_listing_1(predict: str, label: str, correct: bool) -> None:
    assert letter(predict, label) is correct


def test_unknown_matcher_names_the_choices() -> None:
    with pytest.raises(ForgetkitError, match="unknown matcher 'fuzzy'.*letter"):
        get_matcher("fuzzy")
