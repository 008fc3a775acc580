"""Edge cases of the token-labelling and training-dynamics metrics (non-finite scores, NaN, bad labels, undefined
checkpoints) against scikit-learn / scipy on finite stand-ins and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import finite_stand_in
from sklearn.metrics import average_precision_score

from seqexplain.errors import InputError

INF = np.inf



# --------------------------------------------------------------------------- training-dynamics agreement
@pytest.mark.parametrize("a,b", [
    ([INF, INF, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]),
    ([1.0, -INF, -INF, 0.5], [0.0, 1.0, 2.0, 3.0]),
    ([INF, -INF, 0.0, INF], [INF, 1.0, -INF, 2.0]),
])
def test_kendall_tau_score_with_infinite_values_matches_scipy(a, b):
    from scipy.stats import kendalltau

    from seqexplain.metrics.training_dynamics import kendall_tau_score

    expected = kendalltau(finite_stand_in(a), finite_stand_in(b)).statistic
    assert kendall_tau_score(a, b) == pytest.approx(expected)


def test_kendall_tau_score_nan_is_undefined():
    from seqexplain.metrics.training_dynamics import kendall_tau_score

    assert np.isnan(kendall_tau_score([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))


@pytest.mark.parametrize("a,b", [([np.nan, 1.0, 2.0], [1.0, 2.0, 3.0]), ([3.0, 1.0, 2.0], [np.nan, 2.0, 3.0])])
def test_top_percent_match_nan_is_undefined_not_a_match(a, b):
    from seqexplain.metrics.training_dynamics import mean_agreement, top_percent_match

    # np.argmax picked the NaN as the reference's maximum, and a NaN in b counted as "not greater": 0 or 1 silently
    assert np.isnan(top_percent_match(a, b, 50.0))
    got = mean_agreement([np.asarray(a), np.array([1.0, 2.0])], [np.asarray(b), np.array([1.0, 2.0])],
                         lambda x, y: top_percent_match(x, y, 50.0))
    assert (got.mean, got.undefined, got.total) == (1.0, 1, 2)


# --------------------------------------------------------------------------- token labelling
def test_mean_average_precision_ranks_nan_below_minus_inf():
    from seqexplain.metrics.token_labelling import mean_average_precision

    # rank_positions' order: 0.0, then -inf, then NaN (a word cut by truncation) last; NaN became -1e30 (> -inf)
    gold, scores = [0, 1, 0], [np.nan, -INF, 0.0]
    expected = average_precision_score(gold, [-3.0, -2.0, 0.0])
    assert mean_average_precision([gold], [scores]) == pytest.approx(expected) == pytest.approx(0.5)


def test_infinite_word_scores_keep_their_value():
    from seqexplain.metrics.token_labelling import predict_tokens, tune_threshold

    # np.nan_to_num also turned ±inf into ±1.8e308, so an inf score missed threshold=inf and the tuned
    # threshold was reported as 1.7976931348623157e+308
    assert predict_tokens([INF, 1.0, np.nan], threshold=INF).tolist() == [1, 0, 0]
    assert tune_threshold([[1, 0, 0]], [[INF, 1.0, np.nan]]) == (INF, 1.0)
    assert tune_threshold([[1, 0, 0]], [[INF, 1.0, np.nan]], top_count=1) == (INF, 1.0)


def test_word_scores_of_a_multi_target_matrix_is_an_input_error():
    from seqexplain.metrics.token_labelling import word_scores

    # a [T, L] matrix with T == L passed the length check and crashed with numpy's "truth value is ambiguous"
    with pytest.raises(InputError, match="one score per token"):
        word_scores(np.ones((3, 3)), [None, (0, 2), (3, 5)], "ab cd", [(0, 2), (3, 5)])


@pytest.mark.parametrize("gold", [[[2, 1, 0]], [[1, -1, 0]]])
def test_token_labels_other_than_0_1_are_input_errors(gold):
    from seqexplain.metrics.token_labelling import evaluate_scores, mean_average_precision, token_prf

    # a label 2 was neither positive nor negative in token_prf (P = R = 1 here) and crashed sklearn in MAP
    with pytest.raises(InputError, match="0 or 1"):
        token_prf(gold, [[1, 1, 0]])
    with pytest.raises(InputError, match="0 or 1"):
        mean_average_precision(gold, [[0.9, 0.8, 0.1]])
    with pytest.raises(InputError, match="0 or 1"):
        evaluate_scores(gold, [[0.9, 0.8, 0.1]])


def test_sentence_labels_other_than_0_1_are_input_errors():
    from seqexplain.metrics.token_labelling import sentence_prf

    with pytest.raises(InputError, match="0 or 1"):
        sentence_prf([2, 1], [1, 1])


@pytest.mark.parametrize("top_count", [-1, 1.5])
def test_predict_tokens_top_count_must_be_a_count(top_count):
    from seqexplain.metrics.token_labelling import predict_tokens

    with pytest.raises(InputError, match="top_count"):
        predict_tokens([0.9, 0.8, 0.7], 0.5, top_count)


def test_dynamics_table_best_checkpoint_ignores_nan_performance():
    from seqexplain.metrics.training_dynamics import RunCurves, dynamics_table, kendall_tau_score

    up, down = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])
    steps = [0, 1]
    # checkpoint 0 diverged (perf NaN): np.argmax picked it as "best" and every agreement used its α
    gold = RunCurves(steps, [[down], [up]], [[up], [up]], [[up], [up]], [float("nan"), 0.7])
    run_b = RunCurves(steps, [[up], [up]], [[up], [up]], [[up], [up]], [0.6, 0.8])
    row = dynamics_table(gold, [run_b], run_b, [up], kendall_tau_score)
    assert (row.best_step, row.best_perf) == (1, 0.7)
    assert row.agreement_curve == [1.0, 1.0]
    never = RunCurves(steps, [[up], [up]], [[up], [up]], [[up], [up]], [float("nan")] * 2)
    with pytest.raises(InputError, match="performance"):
        dynamics_table(never, [run_b], run_b, [up], kendall_tau_score)


def test_dynamics_table_best_over_uniform_ignores_undefined_checkpoints_in_any_order():
    from seqexplain.metrics.training_dynamics import RunCurves, dynamics_table, kendall_tau_score

    up, down, flat = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])
    steps = [0, 1]
    gold = RunCurves(steps, [[up], [up]], [[up], [up]], [[up], [up]], [0.5, 0.7])
    # the uniform run's β is constant at one checkpoint (τ undefined there) and `down` (τ = -1) at the other:
    # the best over checkpoints is -1 whichever comes first; Python's max() gave NaN when the NaN came first
    for betas in ([[flat], [down]], [[down], [flat]]):
        uniform = RunCurves(steps, [[up], [up]], betas, [[up], [up]], [0.5, 0.5])
        with pytest.warns(RuntimeWarning, match="undefined"):
            row = dynamics_table(gold, [gold], uniform, [up], kendall_tau_score)
        assert row.agr_unif == -1.0 and row.agr_px == -1.0 and row.agr_grad == -1.0


def test_pearson_with_an_infinite_score_is_nan_with_a_named_warning():
    from seqexplain.metrics.token_labelling import pearson

    # numpy's "invalid value encountered in subtract" was the only hint of why r was NaN
    with pytest.warns(RuntimeWarning, match="infinite"):
        assert np.isnan(pearson([[1, 0, 0]], [[INF, 1.0, 0.0]]))
