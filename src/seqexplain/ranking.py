"""One ranking of input positions by score, shared by ``Attribution.top_k``, rationale orders and metrics.

The order (highest first) is total and deterministic, so every caller ranks the same scores the same way:

1. ``+inf``;
2. finite values, descending (``-0.0`` ties with ``0.0``);
3. ``-inf``;
4. NaN, last.

Ties (equal values, or two non-finite values of the same kind) go to the lowest position.

This module imports nothing from the package except :mod:`seqexplain.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from seqexplain.errors import InputError

__all__ = ["rank_positions", "top_k_positions"]


def _candidates(n: int, positions: Iterable[int] | None) -> np.ndarray:
    if positions is None:
        return np.arange(n, dtype=np.int64)
    out: list[int] = []
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise InputError(f"positions must be integers, got {p!r}; pass input positions 0..{n - 1}")
        out.append(int(p))
    cand = np.array(out, dtype=np.int64)
    if cand.size and (cand.min() < 0 or cand.max() >= n):
        bad = int(cand[(cand < 0) | (cand >= n)][0])
        raise InputError(f"position {bad} is outside 0..{n - 1}; pass positions of the score vector")
    if np.unique(cand).size != cand.size:
        raise InputError("positions lists a position more than once; pass each candidate position once")
    return cand


def rank_positions(scores: np.ndarray, positions: Iterable[int] | None = None) -> list[int]:
    """Positions ordered by decreasing score (see the module docstring for non-finite values and ties).

    Args:
        scores: a 1-D array indexed by position (any real dtype).
        positions: the candidate positions to rank (each at most once, each in ``0..len(scores)-1``), in any
            order; default: every position.

    Returns:
        The candidates, best first, as Python ints. An empty candidate set gives ``[]``.

    Raises:
        InputError: ``scores`` is not 1-D or not real, or ``positions`` holds a non-integer, a duplicate or a
            position outside the vector.
    """
    arr = np.asarray(scores)
    if arr.ndim != 1:
        raise InputError(f"scores must be a 1-D vector indexed by position, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise InputError(f"scores must be real numbers, got dtype {arr.dtype}")
    cand = _candidates(arr.shape[0], positions)
    values = arr[cand].astype(np.float64)
    kind = np.full(values.shape, 1, dtype=np.int8)  # 0: +inf, 1: finite, 2: -inf, 3: NaN
    kind[values == np.inf] = 0
    kind[values == -np.inf] = 2
    kind[np.isnan(values)] = 3
    neg = np.where(kind == 1, -values, 0.0)
    order = np.lexsort((cand, neg, kind))  # last key is the primary one
    return [int(p) for p in cand[order]]


def top_k_positions(scores: np.ndarray, k: int, positions: Iterable[int] | None = None) -> list[int]:
    """The first ``k`` positions of :func:`rank_positions` (all of them when fewer than ``k`` are candidates).

    NaN positions are ranked last but not removed: pass ``positions`` without them when NaN means "not
    visible".

    Raises:
        InputError: ``k`` is not a non-negative integer, or as :func:`rank_positions`.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InputError(f"k must be a non-negative integer, got {k!r}")
    return rank_positions(scores, positions)[: int(k)]
