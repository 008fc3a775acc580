"""Confidence intervals for corpus-level comparisons of explanation methods.

:func:`paired_difference_ci`: the mean over documents of ``a_d − b_d`` (two methods' values on the same documents,
e.g. a method's AOPC and the random baseline's) with a percentile-bootstrap confidence interval over documents,
computed by :func:`scipy.stats.bootstrap` (``paired=True``: documents are resampled, each keeping its pair). Pairs in
which either value is undefined (``None`` or non-finite) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqexplain.errors import InputError

__all__ = ["PairedDifference", "paired_difference_ci"]


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of ``a − b`` over ``n`` documents with both values defined, its ``[low, high]`` interval at
    ``level``, and how many pairs were ``dropped`` as undefined."""

    mean: float
    low: float
    high: float
    n: int
    dropped: int
    level: float


def _values(values: Sequence[float | None], side: str) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for d, v in enumerate(values):
        if v is None:
            continue
        try:
            out[d] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"{side}: the value of document {d} is {v!r}, not a number (or None)") from None
    return out


def paired_difference_ci(a: Sequence[float | None], b: Sequence[float | None], *, level: float = 0.95,
                         n_resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Mean of ``a_d − b_d`` with a percentile-bootstrap interval (module docstring). With fewer than two defined
    pairs the interval is undefined (NaN)."""
    if len(a) != len(b):
        raise InputError(f"a paired difference needs one value per document on both sides, got {len(a)} and {len(b)}")
    if not 0.0 < level < 1.0:
        raise InputError(f"the confidence level must lie in (0, 1), got {level}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise InputError(f"n_resamples must be a positive number of bootstrap resamples, got {n_resamples!r}")
    x, y = _values(a, "a"), _values(b, "b")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    dropped = int((~keep).sum())
    if d.size == 0:
        return PairedDifference(float("nan"), float("nan"), float("nan"), 0, dropped, level)
    if d.size < 2 or np.all(d == d[0]):  # no spread: the interval is the point itself (or undefined for one pair)
        low = high = float(d[0]) if d.size >= 2 else float("nan")
        return PairedDifference(float(d.mean()), low, high, int(d.size), dropped, level)
    from scipy.stats import bootstrap

    res = bootstrap((x[keep], y[keep]), lambda u, v, axis: np.mean(u - v, axis=axis), paired=True, vectorized=True,
                    confidence_level=level, n_resamples=n_resamples, method="percentile",
                    rng=np.random.default_rng(seed))
    return PairedDifference(float(d.mean()), float(res.confidence_interval.low),
                            float(res.confidence_interval.high), int(d.size), dropped, level)
