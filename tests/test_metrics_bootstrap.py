"""The paired bootstrap interval against a brute-force percentile bootstrap written here, and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqexplain.errors import InputError
from seqexplain.metrics.bootstrap import paired_difference_ci


def _brute_force(a: np.ndarray, b: np.ndarray, n: int, level: float, seed: int) -> tuple[float, float]:
    """Resample documents with replacement ``n`` times; the (1 ± level)/2 percentiles of the mean difference."""
    rng = np.random.default_rng(seed)
    d = a - b
    means = np.empty(n)
    for k in range(n):
        idx = rng.integers(0, len(d), len(d))
        means[k] = d[idx].mean()
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def test_interval_matches_a_brute_force_bootstrap():
    rng = np.random.default_rng(3)
    a = rng.normal(0.3, 0.5, 60)
    b = a - rng.normal(0.1, 0.2, 60) + rng.normal(0, 0.05, 60)  # paired: b tracks a
    got = paired_difference_ci(list(a), list(b), n_resamples=20000, seed=1)
    low, high = _brute_force(a, b, 20000, 0.95, 7)
    se = (a - b).std(ddof=1) / math.sqrt(len(a))
    assert got.mean == pytest.approx(float((a - b).mean()), abs=1e-12) and got.n == 60 and got.dropped == 0
    assert abs(got.low - low) < 0.05 * se and abs(got.high - high) < 0.05 * se
    # the paired interval is far narrower than one that ignored the pairing (independent resampling of a and b)
    assert got.high - got.low < 0.5 * 2 * 1.96 * math.sqrt(a.var(ddof=1) / 60 + b.var(ddof=1) / 60)


def test_hand_cases_undefined_pairs_and_errors():
    same = paired_difference_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert (same.mean, same.low, same.high) == (0.5, 0.5, 0.5)  # a constant difference has no spread
    dropped = paired_difference_ci([1.0, None, float("nan"), 2.0], [0.0, 1.0, 1.0, 0.0], n_resamples=500)
    assert dropped.n == 2 and dropped.dropped == 2 and dropped.mean == 1.5 and 1.0 <= dropped.low <= dropped.high <= 2.0
    one = paired_difference_ci([1.0], [0.0])
    assert one.mean == 1.0 and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(InputError, match="one value per document"):
        paired_difference_ci([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="confidence level"):
        paired_difference_ci([1.0, 2.0], [1.0, 0.0], level=95)
