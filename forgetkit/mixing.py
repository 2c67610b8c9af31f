"""Data-hybrid training (paper §4, Fig. 4): how a base dataset and mixing ratios become LF's mixing keys.

LF mixes with `mix_strategy: interleave_over` and `interleave_probs`: rows are drawn with those
probabilities until every dataset is used once, oversampling the smaller ones, as the paper's
hybrid configs do. `build-data mix` and `render-config --mix-ratio` share this one rule.
"""

from __future__ import annotations

from decimal import Decimal

from forgetkit.errors import ForgetkitError

STRATEGY = "interleave_over"


def mix_plan(base: str, pairs: list[tuple[str, Decimal]]) -> tuple[list[str], list[Decimal], list[str]]:
    """Datasets and their sampling probabilities [1 - sum(r), r1, r2, ...], plus the datasets left out at ratio 0.

    A ratio-0 dataset is left out rather than given probability 0: HF's all_exhausted loop would wait
    for it to be exhausted forever.
    """
    if not pairs:
        raise ForgetkitError("a mix needs at least one other dataset with a ratio, e.g. llava_665k:0.5")
    names = [base] + [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ForgetkitError(f"a dataset appears twice in the mix: {', '.join(names)}")
    for name, ratio in pairs:
        if not 0 <= ratio < 1:
            raise ForgetkitError(f"mixing ratio {ratio} for {name}: it must be at least 0 and below 1")
    total = sum(ratio for _, ratio in pairs)
    if total >= 1:
        raise ForgetkitError(f"the mixing ratios add up to {total}; they must stay below 1 to leave rows for {base}")
    kept = [(name, ratio) for name, ratio in pairs if ratio > 0]
    dropped = [name for name, ratio in pairs if ratio == 0]
    return [base] + [name for name, _ in kept], [1 - total] + [ratio for _, ratio in kept], dropped


def number(value: Decimal) -> str:
    """A ratio as LF reads it: `0.5`, never `5E-1` or `0.50`."""
    return format(value.normalize(), "f")


def lf_settings(names: list[str], probs: list[Decimal]) -> dict[str, str]:
    """The LF training-config keys that make this mix; one dataset needs no mixing keys."""
    settings = {"dataset": ",".join(names)}
    if len(names) > 1:
        settings |= {"mix_strategy": STRATEGY, "interleave_probs": ",".join(number(p) for p in probs)}
    return settings
