"""The shared position ranking: hand-computed orders with ±inf, NaN, ties and candidate subsets."""

from __future__ import annotations

import numpy as np
import pytest

from seqexplain.errors import InputError
from seqexplain.ranking import rank_positions, top_k_positions

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "scores,expected",
    [
        # finite values descending
        ([0.1, 3.0, -2.0, 0.5], [1, 3, 0, 2]),
        # +inf first, -inf after every finite value, NaN last
        ([NAN, -INF, 2.0, INF, -5.0], [3, 2, 4, 1, 0]),
        # ties go to the lowest position, in every class
        ([1.0, 2.0, 1.0, 2.0], [1, 3, 0, 2]),
        ([NAN, INF, NAN, INF, -INF, -INF], [1, 3, 4, 5, 0, 2]),
        # -0.0 ties with 0.0
        ([-0.0, 0.0, -1.0], [0, 1, 2]),
        ([0.0, -0.0], [0, 1]),
        # very large finite values stay below +inf and above -inf
        ([-1e308, INF, 1e308, -INF], [1, 2, 0, 3]),
        ([], []),
    ],
)
def test_rank_positions_hand_computed(scores, expected):
    assert rank_positions(np.array(scores, dtype=np.float64)) == expected


def test_rank_positions_candidates_any_order():
    s = np.array([5.0, NAN, 1.0, INF, 1.0, -INF])
    assert rank_positions(s, [4, 2, 1, 5]) == [2, 4, 5, 1]
    assert rank_positions(s, iter([3, 0])) == [3, 0]
    assert rank_positions(s, np.array([5, 4])) == [4, 5]
    assert rank_positions(s, []) == []


def test_rank_positions_integer_and_float32_scores():
    assert rank_positions(np.array([1, 3, 3, 0])) == [1, 2, 0, 3]
    assert rank_positions(np.array([np.nan, 1.0, np.inf], dtype=np.float32)) == [2, 1, 0]


def test_rank_positions_returns_python_ints():
    out = rank_positions(np.array([0.2, 0.1]), np.array([1, 0], dtype=np.int32))
    assert out == [0, 1] and all(type(p) is int for p in out)


@pytest.mark.parametrize(
    "scores,positions,match",
    [
        (np.zeros((2, 2)), None, "1-D"),
        (np.zeros(3), [0, 3], "outside 0..2"),
        (np.zeros(3), [-1], "outside"),
        (np.zeros(3), [1, 1], "more than once"),
        (np.zeros(3), [1.0], "integers"),
        (np.zeros(3), [True], "integers"),
        (np.array(["a", "b"]), None, "real numbers"),
    ],
)
def test_rank_positions_rejects_bad_input(scores, positions, match):
    with pytest.raises(InputError, match=match):
        rank_positions(scores, positions)


def test_top_k_positions():
    s = np.array([0.5, NAN, 2.0, -INF, 2.0, INF])
    assert top_k_positions(s, 3) == [5, 2, 4]
    assert top_k_positions(s, 0) == []
    assert top_k_positions(s, 10) == [5, 2, 4, 0, 3, 1]  # NaN ranked last, not removed
    assert top_k_positions(s, 2, positions=[0, 1, 3]) == [0, 3]
    for k in (-1, 1.5, True):
        with pytest.raises(InputError, match="non-negative integer"):
            top_k_positions(s, k)  # type: ignore[arg-type]
