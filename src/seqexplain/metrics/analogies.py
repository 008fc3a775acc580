"""Scores of rationales on the analogies task (Vafa et al. 2021): ``Length``, ``Ratio`` to the exhaustive
rationale, ``Ante`` (the antecedent is included) and ``No D`` (no distractor token is included)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from seqexplain.errors import InputError


def contains_antecedent(rationale: Iterable[int], antecedent: Iterable[int]) -> bool:
    """``Ante``: every antecedent position is in the rationale (False when there is no antecedent position)."""
    ante = set(antecedent)
    return bool(ante) and ante <= set(rationale)


def no_distractor(rationale: Iterable[int], distractor: Iterable[int]) -> bool:
    """``No D``: the rationale holds no distractor position."""
    return not (set(rationale) & set(distractor))


def approximation_ratio(length: int, exhaustive_length: int) -> float:
    """``Ratio``: rationale length over the exhaustive (minimal) rationale's length."""
    if exhaustive_length < 1:
        raise InputError("the exhaustive rationale must be non-empty")
    return length / exhaustive_length


def analogy_scores(rationales: Sequence[Sequence[int]], antecedents: Sequence[Sequence[int]],
                   distractors: Sequence[Sequence[int]],
                   exhaustive_lengths: Sequence[int | None] | None = None) -> dict[str, float]:
    """Mean ``Length``, ``Ratio`` (over examples with an exhaustive length; None = none found, a length below 1 is an
    :class:`InputError`), ``Ante`` and ``No D`` of one method, plus the counts ``n`` and ``n_ratio``. Means of empty
    sets are NaN."""
    n = len(rationales)
    if not (len(antecedents) == len(distractors) == n):
        raise InputError("rationales, antecedents and distractors must have the same length")
    ex = list(exhaustive_lengths) if exhaustive_lengths is not None else [None] * n
    if len(ex) != n:
        raise InputError("exhaustive_lengths must have one entry per rationale")
    nan = float("nan")
    ratios = [approximation_ratio(len(r), int(e)) for r, e in zip(rationales, ex, strict=True)
              if e is not None]
    return {
        "n": float(n),
        "length": sum(len(r) for r in rationales) / n if n else nan,
        "ratio": sum(ratios) / len(ratios) if ratios else nan,
        "n_ratio": float(len(ratios)),
        "ante": sum(contains_antecedent(r, a) for r, a in zip(rationales, antecedents, strict=True)) / n if n else nan,
        "no_d": sum(no_distractor(r, d) for r, d in zip(rationales, distractors, strict=True)) / n if n else nan,
    }
