"""Edge cases of the metrics (non-finite scores, ties, rounding, bad input) against independent references:
scikit-learn / scipy on finite stand-ins, brute-force loops and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import finite_stand_in
from sklearn.metrics import average_precision_score

from seqexplain.errors import InputError
from seqexplain.metrics import auprc

INF = np.inf



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
    expected = average_precision_score(y, finite_stand_in(scores))
    assert auprc(scores, gold) == pytest.approx(expected)


def test_auprc_hand_computed_inf_tie():
    # the two +inf positions form one threshold: P = 1/2, R = 1 there, so AP = 1/2 whichever of them is gold
    assert auprc([INF, INF, 0.0], [0]) == pytest.approx(0.5)
    assert auprc([INF, INF, 0.0], [1]) == pytest.approx(0.5)


@pytest.mark.parametrize("gold", [[0, 5], [-1, 0], [3]])
def test_auprc_gold_outside_the_vector_is_an_error(gold):
    with pytest.raises(InputError, match="outside"):
        auprc([1.0, 0.5, 0.2], gold)


# --------------------------------------------------------------------------- k % of n positions (rounding)
def test_percent_counts_are_exact_against_integer_arithmetic():
    from seqexplain.metrics.percent import percent_count

    for k in range(1, 101):
        for n in range(0, 301):
            assert percent_count(k, n, "ceil") == -(-k * n // 100), (k, n)
            assert percent_count(k, n, "floor") == k * n // 100, (k, n)
    assert percent_count(2.5, 40, "ceil") == 1 and percent_count(0.1, 1000, "floor") == 1


def test_ferret_rationale_70_percent_of_90_is_63():
    from seqexplain.metrics.faithfulness import ferret_rationale

    # 0.7 * 90 = 62.99999999999999 in floating point: floor gave 62
    assert len(ferret_rationale(np.ones(90), list(range(90)), 70.0)) == 63


def test_eraser_top_positions_7_percent_of_100_is_7():
    from seqexplain.metrics.faithfulness import top_positions

    # 0.07 * 100 = 7.000000000000001: ceil gave 8
    assert top_positions(-np.arange(100.0), list(range(100)), 7.0) == list(range(7))


def test_top_k_match_7_percent_of_100_counts_7_positions():
    from seqexplain.metrics import top_k_match

    a = -np.arange(100.0)
    b = a.copy()
    b[7] = -1000.0  # the 8th of a is last in b; the top 7 agree
    assert top_k_match(a, b, 7.0) == 1.0


def test_top_percent_match_7_percent_of_100():
    from seqexplain.metrics.training_dynamics import top_percent_match

    a = np.zeros(100)
    a[0] = 1.0
    b = -np.arange(100.0)
    b[0] = -7.5  # exactly 7 entries of b are strictly greater than b[0]: rank 8, outside the top 7
    assert top_percent_match(a, b, 7.0) == 0.0
    b[0] = -6.5  # rank 7: inside
    assert top_percent_match(a, b, 7.0) == 1.0


# --------------------------------------------------------------------------- alignment
def test_score_corpus_alignments_mismatched_sentence_is_an_input_error():
    from seqexplain.metrics import score_corpus_alignments

    with pytest.raises(InputError, match="sentence 1"):
        score_corpus_alignments([([[0]], [{0}], [set()], 2), ([[0], [1]], [{0}], [set(), set()], 2)])


# --------------------------------------------------------------------------- plausibility input checks
@pytest.mark.parametrize("spans", [[(3, 3)], [(5, 2)], [(-1, 2)]])
def test_iou_f1_rejects_empty_or_reversed_spans(spans):
    from seqexplain.metrics import iou_f1

    # an empty predicted span against an empty gold span scored IOU 1 (a true positive; ERASER's script gives 0)
    with pytest.raises(InputError, match="span"):
        iou_f1([spans], [[(0, 4)]])
    with pytest.raises(InputError, match="span"):
        iou_f1([[(0, 4)]], [spans])


@pytest.mark.parametrize("threshold", [float("nan"), -0.1, 1.5])
def test_iou_f1_threshold_outside_0_1_is_an_error(threshold):
    from seqexplain.metrics import iou_f1

    with pytest.raises(InputError, match="threshold"):
        iou_f1([[(0, 2)]], [[(0, 4)]], threshold=threshold)


def test_plausibility_without_gold_is_an_error_not_zero():
    from seqexplain.metrics import plausibility

    # an all-False mask gave AUPRC NaN but token and IOU F1 of 0.0, a plausible-looking score for an example
    # that has no gold rationale to agree with
    with pytest.raises(InputError, match="no gold position"):
        plausibility([0.1, 0.2, 0.3], [False, False, False])


@pytest.mark.parametrize("mask", [[0.0, 0.7, 0.2], [0, 2, 1], [-1, 0, 1]])
def test_plausibility_mask_must_be_boolean(mask):
    from seqexplain.metrics import plausibility

    # a soft mask (e.g. annotator agreement) was read as "non-zero = gold"
    with pytest.raises(InputError, match="gold_mask"):
        plausibility([0.1, 0.2, 0.3], mask)


def test_plausibility_accepts_0_1_masks():
    from seqexplain.metrics import plausibility

    a = plausibility([0.1, 0.2, 0.3], [0, 0, 1])
    b = plausibility([0.1, 0.2, 0.3], np.array([False, False, True]))
    assert a == b and a.auprc == 1.0 and a.rationale == [2]


# --------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("n_resamples", [0, -3, 2.5, True])
def test_paired_difference_ci_bad_resample_count_is_an_input_error(n_resamples):
    from seqexplain.metrics.bootstrap import paired_difference_ci

    # scipy raised a bare ValueError (0, -3) or a TypeError deep inside (2.5)
    with pytest.raises(InputError, match="n_resamples"):
        paired_difference_ci([1.0, 2.0, 4.0], [0.5, 0.1, 0.2], n_resamples=n_resamples)


def test_paired_difference_ci_non_numeric_value_is_an_input_error():
    from seqexplain.metrics.bootstrap import paired_difference_ci

    with pytest.raises(InputError, match="document 1"):
        paired_difference_ci([1.0, "0.3x"], [0.5, 0.1])


# --------------------------------------------------------------------------- analogies
def test_analogy_scores_zero_exhaustive_length_is_an_error_not_missing():
    from seqexplain.metrics.analogies import analogy_scores

    # `if e` treated 0 like None ("no exhaustive rationale") and left the example out of Ratio silently
    with pytest.raises(InputError, match="exhaustive"):
        analogy_scores([[1, 2]], [[1]], [[3]], [0])
    got = analogy_scores([[1, 2], [0]], [[1], [0]], [[3], [2]], [None, 1])
    assert (got["ratio"], got["n_ratio"]) == (1.0, 1.0)


# --------------------------------------------------------------------------- token P/R/F1 over a corpus
def _eraser_macro(predicted: list[list[int]], gold: list[list[int]]) -> tuple[float, float, float]:
    """ERASER's instance macro, written from its definition: per instance present in the predictions or the gold
    (an instance with neither is absent from both keyed sets), P, R and F1 with 0 where undefined; their means."""
    rows = []
    for r, g in zip(predicted, gold, strict=True):
        r_set, g_set = set(r), set(g)
        if not r_set and not g_set:
            continue
        p = len(r_set & g_set) / len(r_set) if r_set else 0.0
        rec = len(r_set & g_set) / len(g_set) if g_set else 0.0
        rows.append((p, rec, 0.0 if p == 0 or rec == 0 else 2 * p * rec / (p + rec)))
    return tuple(float(np.mean(col)) for col in zip(*rows, strict=True))  # type: ignore[return-value]


def test_token_prf_corpus_macro_leaves_out_instances_with_neither_prediction_nor_gold():
    from seqexplain.metrics import token_prf_corpus

    pred, gold = [[1, 2], [], [0], []], [[2, 3], [], [0, 1], [4]]
    got = token_prf_corpus(pred, gold, "macro")
    assert (got.precision, got.recall, got.f1) == pytest.approx(_eraser_macro(pred, gold))
    # the earlier rule (every instance counts, an empty one with P = R = F1 = 0) stays available by name
    old = token_prf_corpus(pred, gold, "macro", empty="zero")
    assert old.f1 == pytest.approx((0.5 + 0 + 2 / 3 + 0) / 4)
    with pytest.raises(InputError, match="empty"):
        token_prf_corpus(pred, gold, "macro", empty="drop")


@pytest.mark.parametrize("position", [6, -1])
def test_source_words_of_rationale_position_outside_word_of_is_an_error(position):
    from seqexplain.metrics import source_words_of_rationale

    # dropped silently like a decoder position: a rationale of another tokenisation lost words unnoticed
    with pytest.raises(InputError, match="outside"):
        source_words_of_rationale([2, position, 0], [0, 0, 1, None, None, None])


@pytest.mark.parametrize("gold", [[True, True, True, False], np.array([True, True, True, False]), [0, 9]])
def test_top_k_rationale_gold_must_be_positions_of_the_vector(gold):
    from seqexplain.metrics import top_k_rationale

    # a boolean mask given as gold was read as the set {False, True} = {0, 1}: k = 2 instead of 3
    with pytest.raises(InputError, match="gold"):
        top_k_rationale([0.4, 0.3, 0.2, 0.1], gold=gold)


def test_auprc_gold_given_as_a_mask_is_an_error():
    with pytest.raises(InputError, match="mask"):
        auprc([0.4, 0.3, 0.2, 0.1], [True, False, True, False])


# --------------------------------------------------------------------------- agreement
def _attr(tokens: list[str], targets: list[str], scores) -> object:
    from seqexplain.attribution import Attribution

    return Attribution(tokens=tokens, scores=np.asarray(scores, dtype=float), target_tokens=targets,
                       target_positions=[None] * len(targets))


def test_agreement_of_attributions_of_different_inputs_is_an_error():
    from seqexplain.metrics import agreement_matrix, attribution_agreement

    a = _attr(["the", "cat", "sat"], ["pos"], [[0.1, 0.9, 0.3]])
    b = _attr(["a", "dog", "ran"], ["pos"], [[0.2, 0.8, 0.1]])  # same shape, another sentence
    c = _attr(["the", "cat", "sat"], ["neg"], [[0.2, 0.8, 0.1]])  # same input, another target
    for other in (b, c):
        with pytest.raises(InputError, match="same"):
            attribution_agreement(a, other)
        with pytest.raises(InputError, match="same"):
            agreement_matrix({"a": a, "b": other})
    same = _attr(["the", "cat", "sat"], ["pos"], [[0.2, 0.8, 0.1]])
    assert attribution_agreement(a, same)[1] == pytest.approx(1 / 3)


def test_iou_f1_counts_a_repeated_span_once_as_erasers_span_sets():
    from seqexplain.metrics import iou_f1

    # ERASER keys spans in sets, so a span listed twice is one span; here it was two true positives (P = R = 2/1)
    got = iou_f1([[(0, 2), (0, 2)]], [[(0, 2), (0, 2), (5, 7)]])
    assert (got.precision, got.recall) == (1.0, 0.5)
    macro = iou_f1([[(0, 2), (0, 2)], [(3, 4)]], [[(0, 2)], [(5, 7)]], average="macro")
    assert (macro.precision, macro.recall) == (0.5, 0.5)


def _eraser_iou(pred: list[list[tuple[int, int]]], gold: list[list[tuple[int, int]]], t: float) -> tuple[float, ...]:
    """ERASER's partial-match scores written from its definition: spans keyed in sets per instance; a predicted span
    is a TP when its best IOU (0 for an empty union) with a gold span is ≥ t; micro P/R over all spans; macro P over
    the instances with predictions, macro R over those with gold; each F1 = 0 when P or R is 0."""
    tps, n_p, n_g = [], [], []
    for p_spans, g_spans in zip(pred, gold, strict=True):
        ps, gs = set(p_spans), set(g_spans)
        tp = 0
        for a, b in ps:
            ious = [len(set(range(a, b)) & set(range(c, d))) / len(set(range(a, b)) | set(range(c, d)))
                    for c, d in gs]
            tp += int(max(ious, default=0.0) >= t)
        tps.append(tp)
        n_p.append(len(ps))
        n_g.append(len(gs))

    def f1(p: float, r: float) -> float:
        return 0.0 if p == 0 or r == 0 else 2 * p * r / (p + r)

    mp = sum(tps) / sum(n_p) if sum(n_p) else 0.0
    mr = sum(tps) / sum(n_g) if sum(n_g) else 0.0
    ps_ = [tp / n for tp, n in zip(tps, n_p, strict=True) if n]
    rs_ = [tp / n for tp, n in zip(tps, n_g, strict=True) if n]
    ap = float(np.mean(ps_)) if ps_ else 0.0
    ar = float(np.mean(rs_)) if rs_ else 0.0
    return mp, mr, f1(mp, mr), ap, ar, f1(ap, ar)


def test_iou_f1_against_erasers_definition_on_random_spans():
    from seqexplain.metrics import iou_f1

    rng = np.random.default_rng(0)

    def spans() -> list[tuple[int, int]]:
        out = []
        for _ in range(int(rng.integers(0, 4))):
            a = int(rng.integers(0, 10))
            out.append((a, a + int(rng.integers(1, 5))))
        return out

    for _ in range(200):
        n = int(rng.integers(1, 5))
        pred, gold = [spans() for _ in range(n)], [spans() for _ in range(n)]
        for t in (0.0, 0.5, 1.0):
            micro, macro = iou_f1(pred, gold, t, "micro"), iou_f1(pred, gold, t, "macro")
            got = (micro.precision, micro.recall, micro.f1, macro.precision, macro.recall, macro.f1)
            assert got == pytest.approx(_eraser_iou(pred, gold, t))
