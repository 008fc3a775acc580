"""Agreement between two attributions of the same input.

* ``kendall_tau``: Kendall's τ-b between two score vectors over the positions both score (NaN = not scored):
  ``τ_b = (C − D) / sqrt((n₀ − n₁)(n₀ − n₂))`` with ``C``/``D`` the concordant/discordant pairs,
  ``n₀ = n(n−1)/2`` and ``n₁``/``n₂`` the pairs tied in the first/second vector (as ``scipy.stats.kendalltau``).
  NaN when either vector is constant or fewer than two positions remain.
* ``top_k_match``: ``|top_k(a) ∩ top_k(b)| / k`` with ``k = ceil(k_percent/100 · n)`` (at least 1) over the
  ``n`` commonly scored positions; ties in a ranking go to the lowest position.
* ``attribution_agreement``: either metric per target of two :class:`~seqexplain.attribution.Attribution` results
  with the same shape, and their mean over targets (ignoring NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError


def _common(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"score vectors differ in length: {x.shape} vs {y.shape}")
    idx = np.nonzero(~np.isnan(x) & ~np.isnan(y))[0]
    return x[idx], y[idx], idx


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b over the positions both vectors score (see the module docstring)."""
    x, y, _ = _common(a, b)
    n = len(x)
    if n < 2:
        return math.nan
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(n, 1)
    sx, sy = dx[iu], dy[iu]
    s = float(np.sum(sx * sy))  # C − D
    n0 = n * (n - 1) / 2
    n1 = float(np.sum(sx == 0))
    n2 = float(np.sum(sy == 0))
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return math.nan if denom == 0 else s / denom


def _top(x: np.ndarray, k: int) -> set[int]:
    order = sorted(range(len(x)), key=lambda j: (-x[j], j))
    return set(order[:k])


def top_k_match(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k_percent: float = 20.0) -> float:
    """Fraction of the top ``k_percent``% positions of ``a`` that are also in the top of ``b``."""
    if not 0 < k_percent <= 100:
        raise InputError("k_percent must be in (0, 100]")
    x, y, _ = _common(a, b)
    if len(x) == 0:
        return math.nan
    k = max(1, math.ceil(k_percent / 100 * len(x)))
    return len(_top(x, k) & _top(y, k)) / k


def attribution_agreement(a: Attribution, b: Attribution, metric: Literal["kendall_tau", "top_k"] = "kendall_tau",
                          k_percent: float = 20.0) -> tuple[list[float], float]:
    """Per-target agreement of two attributions and its mean over targets (NaN targets ignored)."""
    if a.scores.shape != b.scores.shape:
        raise InputError(f"attributions differ in shape: {a.scores.shape} vs {b.scores.shape}")
    vals = []
    for i in range(a.scores.shape[0]):
        if metric == "kendall_tau":
            vals.append(kendall_tau(a.scores[i], b.scores[i]))
        elif metric == "top_k":
            vals.append(top_k_match(a.scores[i], b.scores[i], k_percent))
        else:
            raise InputError(f"unknown agreement metric {metric!r}; use kendall_tau or top_k")
    finite = [v for v in vals if not math.isnan(v)]
    return vals, (float(np.mean(finite)) if finite else math.nan)
