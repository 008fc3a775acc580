"""Every metric that ranks positions follows the one documented order (``seqexplain.ranking``: +inf, finite
descending, -inf, NaN last; ties to the lowest position), checked on random vectors drawn from ±inf, NaN, ±0.0 and
tied values against references that do not use the code under test: a sort key written here, scipy's
``kendalltau`` / ``spearmanr`` and scikit-learn's ``average_precision_score`` on finite stand-ins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import average_precision_score

from seqexplain.metrics import auprc, kendall_tau, spearman, top_k_match, top_k_overlap, top_k_rationale
from seqexplain.metrics.token_labelling import mean_average_precision
from seqexplain.metrics.training_dynamics import kendall_tau_score

VALUES = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, 1.0, 2.0, -1.0])


def _key(s: np.ndarray, j: int) -> tuple[int, float, int]:
    v = float(s[j])
    kind = 0 if v == math.inf else 2 if v == -math.inf else 3 if math.isnan(v) else 1
    return kind, (-v if kind == 1 else 0.0), j


def _top(s: np.ndarray, candidates, k: int) -> set[int]:
    return set(sorted(candidates, key=lambda j: _key(s, j))[:k])


def _stand_in(s: np.ndarray) -> np.ndarray:
    """Finite values with the same order and ties (the drawn finite values lie in [-1, 2])."""
    return np.where(s == np.inf, 100.0, np.where(s == -np.inf, -100.0, s))


def _cases(n_cases: int = 400):
    rng = np.random.default_rng(0)
    for _ in range(n_cases):
        n = int(rng.integers(1, 9))
        yield rng.choice(VALUES, n), rng.choice(VALUES, n), [j for j in range(n) if rng.random() < 0.4]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_rank_correlations_against_scipy():
    for a, b, _ in _cases():
        idx = np.nonzero(~np.isnan(a) & ~np.isnan(b))[0]
        x, y = _stand_in(a[idx]), _stand_in(b[idx])
        if len(idx) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            assert math.isnan(kendall_tau(a, b)) and math.isnan(spearman(a, b))
            continue
        assert kendall_tau(a, b) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)
        assert spearman(a, b) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
        if not (np.isnan(a).any() or np.isnan(b).any()):
            assert kendall_tau_score(a, b) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)


def test_top_k_sets_against_a_sort_key():
    for a, b, _ in _cases():
        idx = [int(j) for j in np.nonzero(~np.isnan(a) & ~np.isnan(b))[0]]
        scored = [j for j in range(len(a)) if not math.isnan(a[j])]
        for k in range(0, len(a) + 2):
            assert top_k_rationale(a, k) == sorted(_top(a, scored, k))
        if not idx:
            continue
        for k in range(1, 10):
            kk = min(k, len(idx))
            assert top_k_overlap(a, b, k) == len(_top(a, idx, kk) & _top(b, idx, kk)) / kk
        for pct in (5, 20, 50, 100):
            kk = max(1, -(-pct * len(idx) // 100))
            assert top_k_match(a, b, pct) == len(_top(a, idx, kk) & _top(b, idx, kk)) / kk


def test_average_precision_against_sklearn():
    for a, _, gold in _cases():
        scored = [j for j in range(len(a)) if not math.isnan(a[j])]
        y = np.array([int(j in gold) for j in scored])
        if y.sum() == 0:
            continue
        assert auprc(a, gold) == pytest.approx(average_precision_score(y, _stand_in(a[scored])))
        # token labelling ranks NaN last (below -inf) instead of leaving it out
        labels = [int(j in gold) for j in range(len(a))]
        ranked = np.where(np.isnan(a), -1000.0, _stand_in(a))
        assert mean_average_precision([labels], [a]) == pytest.approx(average_precision_score(labels, ranked))
