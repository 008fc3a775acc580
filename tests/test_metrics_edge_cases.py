"""Edge cases of the metrics (non-finite scores, ties, rounding, bad input) against independent references:
scikit-learn / scipy on finite stand-ins, brute-force loops and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from seqexplain.errors import InputError
from seqexplain.metrics import auprc

INF = np.inf


def _finite_stand_in(scores: list[float]) -> np.ndarray:
    """The same order and ties with finite values: +inf above every finite score, -inf below (NaN dropped)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    top = (finite.max() if finite.size else 0.0) + 10.0
    low = (finite.min() if finite.size else 0.0) - 10.0
    return np.where(s == INF, top, np.where(s == -INF, low, s))


# --------------------------------------------------------------------------- auprc
@pytest.mark.parametrize("scores,gold", [
    ([INF, INF, 0.0], [0]),          # +inf tie: one threshold, precision 1/2 there
    ([1.0, -INF, -INF], [1]),        # -inf tie at the bottom
    ([INF, 2.0, INF, -INF, -INF, 2.0], [2, 4, 5]),
    ([-0.0, 0.0, 1.0], [0]),         # -0.0 ties with 0.0
])
def test_auprc_infinite_ties_are_one_threshold(scores, gold):
    y = np.zeros(len(scores), dtype=int)
    y[gold] = 1
    expected = average_precision_score(y, _finite_stand_in(scores))
    assert auprc(scores, gold) == pytest.approx(expected)


def test_auprc_hand_computed_inf_tie():
    # the two +inf positions form one threshold: P = 1/2, R = 1 there, so AP = 1/2 whichever of them is gold
    assert auprc([INF, INF, 0.0], [0]) == pytest.approx(0.5)
    assert auprc([INF, INF, 0.0], [1]) == pytest.approx(0.5)


@pytest.mark.parametrize("gold", [[0, 5], [-1, 0], [3]])
def test_auprc_gold_outside_the_vector_is_an_error(gold):
    with pytest.raises(InputError, match="outside"):
        auprc([1.0, 0.5, 0.2], gold)
