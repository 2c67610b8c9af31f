"""Answer matchers: decide whether one model output counts as the labelled answer.

`letter` is the paper's Listing 1 (App. D.2) verbatim in behaviour, quirks included: only the text
after the *last* ':' is kept, comparison is upper-cased, and "B. tabby cat" counts for label "B".
"""

from __future__ import annotations

from collections.abc import Callable

from forgetkit.errors import ForgetkitError

Matcher = Callable[[str, str], bool]


def letter(predict: str, label: str) -> bool:
    predict = str(predict).strip()
    label = str(label).strip()
    if ":" in predict:
        predict = predict.split(":")[-1].strip()
    predict = predict.upper()
    label = label.upper()
    return predict == label or predict.startswith(f"{label}.")


MATCHERS: dict[str, Matcher] = {"letter": letter}


def get_matcher(name: str) -> Matcher:
    try:
        return MATCHERS[name]
    except KeyError:
        raise ForgetkitError(f"unknown matcher {name!r}; choose one of: {', '.join(sorted(MATCHERS))}") from None
