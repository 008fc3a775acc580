"""Agreement between two attributions of the same input.

* ``kendall_tau``: Kendall's τ-b between two score vectors over the positions both score (NaN = not scored):
  ``τ_b = (C − D) / sqrt((n₀ − n₁)(n₀ − n₂))`` with ``C``/``D`` the concordant/discordant pairs,
  ``n₀ = n(n−1)/2`` and ``n₁``/``n₂`` the pairs tied in the first/second vector (as ``scipy.stats.kendalltau``).
  NaN when either vector is constant or fewer than two positions remain.
* ``top_k_match``: ``|top_k(a) ∩ top_k(b)| / k`` with ``k = ceil(k_percent/100 · n)`` (at least 1) over the
  ``n`` commonly scored positions; ties in a ranking go to the lowest position.
* ``spearman``: Spearman's ρ over the commonly scored positions, the Pearson correlation of the average ranks
  (ties get their mean rank), as ``scipy.stats.spearmanr``; NaN when either vector is constant or fewer than two
  positions remain.
* ``top_k_overlap``: ``|top_k(a) ∩ top_k(b)| / k`` for a number ``k`` of positions (``k`` capped at ``n``, the
  commonly scored positions), top sets by :func:`seqexplain.ranking.rank_positions`.
* ``attribution_agreement``: one metric per target of two :class:`~seqexplain.attribution.Attribution` results
  with the same shape, tokens and target tokens, and their mean over targets (ignoring NaN).
* ``agreement_matrix``: for methods ``m, n`` the metric per target over the positions both score (NaN = not
  visible, excluded), averaged over the targets where it is defined: ``A[m, n] = mean_i metric(s_m[i], s_n[i])``;
  NaN when no target defines it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy.stats import kendalltau, spearmanr

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError
from seqexplain.metrics.percent import percent_count
from seqexplain.ranking import rank_positions

AgreementMetric = Literal["kendall_tau", "spearman", "top_k", "top_k_overlap"]


def _common(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                          np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"score vectors differ in length: {x.shape} vs {y.shape}")
    idx = np.nonzero(~np.isnan(x) & ~np.isnan(y))[0]
    return x[idx], y[idx], idx


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Kendall's τ-b (``scipy.stats.kendalltau``) over the positions both vectors score (module docstring)."""
    x, y, _ = _common(a, b)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(kendalltau(x, y).statistic)


def _top(x: np.ndarray, k: int) -> set[int]:
    return set(rank_positions(x)[:k])


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman's ρ (``scipy.stats.spearmanr``) over the positions both vectors score (module docstring)."""
    x, y, _ = _common(a, b)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(spearmanr(x, y).statistic)


def top_k_overlap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k: int = 5) -> float:
    """``|top_k(a) ∩ top_k(b)| / k`` over the positions both vectors score (``k`` capped at their number)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive number of positions, got {k!r}")
    x, y, _ = _common(a, b)
    if len(x) == 0:
        return math.nan
    kk = min(int(k), len(x))
    return len(_top(x, kk) & _top(y, kk)) / kk


def top_k_match(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k_percent: float = 20.0) -> float:
    """Fraction of the top ``k_percent``% positions of ``a`` that are also in the top of ``b``."""
    if not 0 < k_percent <= 100:
        raise InputError("k_percent must be in (0, 100]")
    x, y, _ = _common(a, b)
    if len(x) == 0:
        return math.nan
    k = max(1, percent_count(k_percent, len(x), "ceil"))
    return len(_top(x, k) & _top(y, k)) / k


def _metric(name: str, k_percent: float, k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    if name == "kendall_tau":
        return kendall_tau
    if name == "spearman":
        return spearman
    if name == "top_k":
        return lambda x, y: top_k_match(x, y, k_percent)
    if name == "top_k_overlap":
        return lambda x, y: top_k_overlap(x, y, k)
    raise InputError(f"unknown agreement metric {name!r}; use kendall_tau, spearman, top_k or top_k_overlap")


def _mean_finite(vals: list[float]) -> float:
    finite = [v for v in vals if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _check_same_input(a: Attribution, b: Attribution, names: str) -> None:
    if list(a.tokens) != list(b.tokens) or list(a.target_tokens) != list(b.target_tokens):
        raise InputError(f"{names}: the attributions explain different inputs or targets (tokens or target tokens "
                         "differ); compare attributions of the same example and the same targets")


def attribution_agreement(a: Attribution, b: Attribution, metric: AgreementMetric = "kendall_tau",
                          k_percent: float = 20.0, k: int = 5) -> tuple[list[float], float]:
    """Per-target agreement of two attributions and its mean over targets (NaN targets ignored)."""
    if a.scores.shape != b.scores.shape:
        raise InputError(f"attributions differ in shape: {a.scores.shape} vs {b.scores.shape}; compare attributions "
                         "of the same example and the same targets")
    _check_same_input(a, b, "attribution_agreement")
    fn = _metric(metric, k_percent, k)
    vals = [float(fn(a.scores[i], b.scores[i])) for i in range(a.scores.shape[0])]
    return vals, _mean_finite(vals)


def agreement_matrix(attributions: dict[str, Attribution | np.ndarray], metric: AgreementMetric = "kendall_tau",
                     k_percent: float = 20.0, k: int = 5) -> np.ndarray:
    """``[M, M]`` agreement between every pair of methods, rows and columns in the dict's order, each entry the
    mean over targets of ``metric`` (module docstring). Arrays are ``[T, L]`` (or ``[L]``: one target)."""
    if not attributions:
        raise InputError("agreement_matrix needs at least one attribution; pass {method name: Attribution}")
    fn = _metric(metric, k_percent, k)
    given = [(name, v) for name, v in attributions.items() if isinstance(v, Attribution)]
    for name, value in given[1:]:
        _check_same_input(given[0][1], value, f"{given[0][0]} and {name}")
    mats = []
    for name, value in attributions.items():
        arr = value.scores if isinstance(value, Attribution) else np.asarray(value, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InputError(f"{name}: scores must be [targets, positions], got shape {arr.shape}")
        mats.append(arr)
    if len({m.shape for m in mats}) > 1:
        shapes = ", ".join(f"{n}: {m.shape}" for n, m in zip(attributions, mats, strict=True))
        raise InputError(f"attributions differ in shape ({shapes}); explain the same example and targets")
    n = len(mats)
    out = np.full((n, n), np.nan)
    for p in range(n):
        for q in range(p, n):
            out[p, q] = out[q, p] = _mean_finite([float(fn(mats[p][i], mats[q][i]))
                                                  for i in range(mats[p].shape[0])])
    return out
