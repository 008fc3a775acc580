"""Top-k% match (the original's tie rule), Kendall τ, the seeded shuffle baseline and the A/ξ table on a synthetic
set of dumps whose answer is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from seqexplain.errors import InputError
from seqexplain.metrics.training_dynamics import (
    Agreement,
    RunCurves,
    dynamics_table,
    format_table,
    kendall_tau_score,
    mean_agreement,
    metric_by_name,
    top_percent_match,
)


def test_top_percent_match_hand_cases():
    assert top_percent_match([0, 1, 0], [3, 3, 1]) == 1.0  # tie with b[argmax a] counts in its favour
    assert top_percent_match([0, 1, 0], [4, 3, 1]) == 0.0  # one strictly greater, k = ceil(0.05·3) = 1
    assert top_percent_match([0, 1, 0], [4, 3, 1], k_percent=50) == 1.0  # k = 2
    assert top_percent_match([5, 5, 0], [0, 1, 2]) == 0.0  # argmax a: first maximum (position 0)
    b = np.arange(40.0)  # n = 40: k = ceil(2) = 2 → position 38 (one above it) matches, 37 does not
    assert top_percent_match(np.eye(40)[38], b) == 1.0 and top_percent_match(np.eye(40)[37], b) == 0.0
    with pytest.raises(InputError):
        top_percent_match([1, 2], [1, 2, 3])


def test_kendall_tau_hand_and_scipy():
    assert kendall_tau_score([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # C = 2, D = 1
    rng = np.random.default_rng(0)
    for n in (2, 5, 12, 40):
        a, b = rng.normal(size=n), rng.normal(size=n)
        assert kendall_tau_score(a, b) == pytest.approx(kendalltau(a, b).statistic)
        ta, tb = rng.integers(0, 3, n).astype(float), rng.integers(0, 4, n).astype(float)  # ties on both sides
        if len(set(ta)) > 1 and len(set(tb)) > 1:
            assert kendall_tau_score(ta, tb) == pytest.approx(kendalltau(ta, tb).statistic)
    assert math.isnan(kendall_tau_score([1, 1, 1], [1, 2, 3]))


def test_mean_agreement_skips_nan_and_baseline_is_seeded():
    ref = [np.array([1.0, 2, 3]), np.array([1.0, 1, 1]), np.array([3.0, 2, 1])]
    other = [np.array([1.0, 2, 3]), np.array([1.0, 2, 3]), np.array([1.0, 2, 3])]
    mean, base, undefined, total = mean_agreement(ref, other, kendall_tau_score, seed=4)
    assert mean == pytest.approx(0.0)  # (1 + (−1)) / 2, the constant one skipped
    assert (undefined, total) == (1, 3)  # ... and counted
    assert mean_agreement(ref, other, kendall_tau_score, seed=4)[1] == base
    # the baseline is the metric against a permutation drawn by default_rng(seed), brute force
    rng = np.random.default_rng(4)
    want = np.mean([kendall_tau_score(ref[i], rng.permutation(other[i])) for i in (0, 2)])
    assert base == pytest.approx(want)
    with pytest.raises(InputError, match="one vector per example"):
        mean_agreement(ref, other[:2], kendall_tau_score)


def onehots(positions: list[int], n: int = 4) -> list[np.ndarray]:
    """Per example, a vector whose strict maximum is at the given position (others distinct and lower)."""
    out = []
    for p in positions:
        v = np.arange(n, dtype=float) * 0.01
        v[p] = 1.0
        out.append(v)
    return out


def test_table_on_synthetic_dumps():
    steps = [0, 10, 20]
    gold_pos = [0, 1]  # run A's attention at its best checkpoint points at these positions
    wrong = [2, 3]
    gold = RunCurves(steps, [onehots(wrong), onehots(gold_pos), onehots(wrong)], [onehots(wrong)] * 3,
                     [onehots(wrong), onehots([3, 2]), onehots(wrong)], [0.5, 0.9, 0.8])
    # run B agrees 0, 0, 1; run C agrees 0, 0.5, 1 → g = [0, 0.25, 1]
    run_b = RunCurves(steps, [onehots(wrong), onehots(wrong), onehots(gold_pos)], [onehots(wrong)] * 3,
                      [onehots(wrong)] * 3, [0.4, 0.6, 0.8])
    run_c = RunCurves(steps, [onehots(wrong), onehots([0, 3]), onehots(gold_pos)], [onehots(wrong)] * 3,
                      [onehots(wrong)] * 3, [0.6, 0.8, 0.9])
    # uniform β: never at gold α's argmax (A_unif = 0); at Δ's argmax [3, 2] for one example at step 10 (A_grad = 0.5)
    uniform = RunCurves(steps, [onehots(wrong)] * 3, [onehots([2, 0]), onehots([3, 0]), onehots([2, 0])],
                        [onehots(wrong)] * 3, [0.5, 0.5, 0.5])
    px = onehots([3, 0])  # matches the uniform β at step 10 for both examples: A_px = 1, never passed
    row = dynamics_table(gold, [run_b, run_c], uniform, px, metric_by_name("top_k"), seed=0,
                         extra={"lr": onehots([2, 3])})  # matches the uniform β at step 0 for one example
    assert (row.agr_unif, row.agr_grad, row.agr_px) == (0.0, 0.5, 1.0)
    assert row.agreement_curve == [0.0, 0.25, 1.0] and row.perf_curve == pytest.approx([0.5, 0.7, 0.85])
    assert row.xi_unif == pytest.approx(0.7)  # first g > 0 at step 10
    assert row.xi_grad == pytest.approx(0.85)  # first g > 0.5 at step 20
    assert row.xi_px is None  # g never exceeds 1
    assert (row.best_perf, row.best_step) == (0.9, 10)
    assert row.extra == {"lr": {"agr": 0.5, "xi": pytest.approx(0.85)}}
    assert 0.0 <= row.baseline <= 1.0
    assert dynamics_table(gold, [run_b, run_c], uniform, px, metric_by_name("top_k"), seed=0).baseline == row.baseline
    md = format_table({"toy": row})
    assert "| toy | 0.000 | 1.000 | 0.500 |" in md and "none" in md
    assert row.n_examples == 2 and row.undefined == {"agreement": 0, "unif": 0, "px": 0, "grad": 0, "lr": 0}


def test_table_counts_and_warns_about_undefined_examples():
    """3 examples, the gold attention of one constant: Kendall τ is NaN there, so every mean against run A's α is
    over the two others (worked by hand) and the row says 1 of 3 undefined, with a warning."""
    up, down, flat = np.array([1.0, 2, 3]), np.array([3.0, 2, 1]), np.array([1.0, 1, 1])
    steps = [0, 1]
    gold = RunCurves(steps, [[up, flat, up]] * 2, [[up, up, up]] * 2, [[up, up, down]] * 2, [0.5, 0.7])
    # run B's α at step 1 agrees with run A's best α on examples 0 and 2 (τ = 1, 1), at step 0 it is reversed
    # on example 0 (τ = −1, 1 → mean 0); example 1 is A's constant one and never counts
    run_b = RunCurves(steps, [[down, up, up], [up, down, up]], [[up, up, up]] * 2, [[up, up, up]] * 2, [0.6, 0.8])
    uniform = RunCurves(steps, [[up, up, up]] * 2, [[up, up, up], [up, up, down]], [[up, up, up]] * 2, [0.5, 0.5])
    px = [up, up, up]
    with pytest.warns(RuntimeWarning, match=r"toy: the agreement metric is undefined .*agreement: up to 1 of 3"):
        row = dynamics_table(gold, [run_b], uniform, px, kendall_tau_score, seed=0, label="toy")
    assert row.agreement_curve == pytest.approx([0.0, 1.0])
    # A(α, β^uf): best over the uniform checkpoints of the mean over examples 0 and 2: step 0 (1 + 1) / 2 = 1
    assert row.agr_unif == pytest.approx(1.0) and row.agr_px == pytest.approx(1.0)
    assert row.agr_grad == pytest.approx(1.0)  # step 1: Δ = (up, up, down) against (up, up, down)
    assert row.n_examples == 3 and row.undefined == {"agreement": 1, "unif": 1, "px": 0, "grad": 0}
    assert row.as_dict()["undefined"]["agreement"] == 1  # saved with the table


def test_table_refuses_mismatched_steps_and_no_comparison():
    c = RunCurves([0, 1], [onehots([0])] * 2, [onehots([0])] * 2, [onehots([0])] * 2, [0.5, 0.6])
    d = RunCurves([0, 2], [onehots([0])] * 2, [onehots([0])] * 2, [onehots([0])] * 2, [0.5, 0.6])
    with pytest.raises(InputError, match="different checkpoint steps"):
        dynamics_table(c, [d], c, onehots([0]), metric_by_name("top_k"))
    with pytest.raises(InputError, match="at least one comparison run"):
        dynamics_table(c, [], c, onehots([0]), metric_by_name("top_k"))
    with pytest.raises(InputError, match="unknown agreement metric"):
        metric_by_name("pearson")


def test_shuffle_baseline_known_cases():
    ref = [np.array([0.1, 0.9, 0.3, 0.2]), np.array([0.5, 0.1, 0.2])]
    ties = [np.ones(4), np.ones(3)]  # every entry ties with the one at argmax: a match, shuffled or not
    assert mean_agreement(ref, ties, metric_by_name("top_k"), seed=3) == (1.0, 1.0, 0, 2)
    # a single position: always its own top-1
    assert mean_agreement([np.array([2.0])], [np.array([5.0])], metric_by_name("top_k")) == (1.0, 1.0, 0, 1)
    # ... but Kendall τ is undefined there: nothing to average, and the one example says so
    got = mean_agreement([np.array([2.0])], [np.array([5.0])], kendall_tau_score)
    assert math.isnan(got.mean) and math.isnan(got.baseline) and (got.undefined, got.total) == (1, 1)
    assert isinstance(got, Agreement)
