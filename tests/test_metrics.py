"""Metrics against hand-computed examples and scikit-learn / scipy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from sklearn.metrics import average_precision_score, f1_score

from seqexplain import load_model
from seqexplain.errors import InputError
from seqexplain.metrics import (
    aer,
    attribution_agreement,
    auprc,
    faithfulness,
    iou_f1,
    kendall_tau,
    rationale_length,
    score_corpus_alignments,
    score_rationale_alignments,
    source_words_of_rationale,
    spans_from_positions,
    token_f1,
    token_iou,
    token_prf,
    top_k_match,
)
from seqexplain.metrics.faithfulness import top_positions


# --------------------------------------------------------------------------- plausibility
def test_token_set_metrics_hand_computed():
    pred, gold = [1, 2, 3, 7], [2, 3, 4]
    assert token_iou(pred, gold) == pytest.approx(2 / 5)
    prf = token_prf(pred, gold)
    assert (prf.precision, prf.recall) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert token_f1(pred, gold) == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert rationale_length([3, 1, 3]) == 2
    assert token_iou([], []) == 1.0
    assert token_f1([], [1]) == 0.0


def test_token_f1_matches_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y, p = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        ref = f1_score(y, p, zero_division=0)
        assert token_f1(np.nonzero(p)[0], np.nonzero(y)[0]) == pytest.approx(ref)


def test_iou_f1_eraser_hand_computed():
    assert spans_from_positions([5, 1, 2, 3, 7, 8]) == [(1, 4), (5, 6), (7, 9)]
    # instance 1: pred (0,4) vs gold (1,4): IOU 3/4 -> TP; pred (6,8) vs gold (7,10): IOU 1/4 -> no
    # instance 2: pred (0,2) vs gold (0,4): IOU 1/2 -> TP (threshold inclusive); gold (5,6) unmatched
    prf = iou_f1([[(0, 4), (6, 8)], [(0, 2)]], [[(1, 4), (7, 10)], [(0, 4), (5, 6)]])
    assert prf.precision == pytest.approx(2 / 3)
    assert prf.recall == pytest.approx(2 / 4)
    assert prf.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    with pytest.raises(InputError):
        iou_f1([[]], [])


def test_auprc_matches_sklearn_with_ties_and_nan():
    rng = np.random.default_rng(0)
    for trial in range(30):
        s = np.round(rng.normal(size=12), 1 if trial % 2 else 3)  # rounding creates ties
        y = rng.integers(0, 2, 12)
        y[0] = 1
        full = np.r_[s, np.nan, np.nan]
        assert auprc(full, np.nonzero(y)[0]) == pytest.approx(average_precision_score(y, s))
    # hand computed: scores 0.9(g) 0.8 0.7(g) -> AP = 1*0.5 + (2/3)*0.5
    assert auprc([0.9, 0.8, 0.7], [0, 2]) == pytest.approx(0.5 + 1 / 3)
    with pytest.raises(InputError):
        auprc([0.1, 0.2], [])


# --------------------------------------------------------------------------- agreement
def test_kendall_tau_matches_scipy():
    rng = np.random.default_rng(0)
    for trial in range(20):
        a = np.round(rng.normal(size=10), 0 if trial % 3 == 0 else 2)
        b = np.round(rng.normal(size=10), 0 if trial % 2 == 0 else 2)
        assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b).statistic)
    assert kendall_tau([1, 2, 3, np.nan], [1, 2, 3, 9]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_top_k_match_hand_computed():
    a = [0.9, 0.1, 0.8, 0.3, 0.7, 0.0, 0.2, 0.4, 0.5, 0.6]
    b = [0.9, 0.8, 0.1, 0.3, 0.7, 0.0, 0.2, 0.4, 0.5, 0.6]
    assert top_k_match(a, b, 20) == pytest.approx(0.5)  # top-2: {0,2} vs {0,1}
    assert top_k_match(a, b, 30) == pytest.approx(2 / 3)  # top-3: {0,2,4} vs {0,1,4}
    assert top_k_match(a, a, 50) == 1.0
    assert top_k_match([1, 1, 1], [1, 1, 1], 34) == 1.0  # ties go to the lowest positions in both
    with pytest.raises(InputError):
        top_k_match(a, b, 0)


def test_attribution_agreement(gpt2):
    from seqexplain import explain

    wrapped = load_model(*gpt2)
    a = explain(wrapped, "The cat sat", " on the", method="grad_x_input")
    b = explain(wrapped, "The cat sat", " on the", method="occlusion")
    vals, mean = attribution_agreement(a, b)
    for i, v in enumerate(vals):
        vis = ~np.isnan(a.scores[i])
        assert v == pytest.approx(kendalltau(a.scores[i][vis], b.scores[i][vis]).statistic)
    assert mean == pytest.approx(np.mean(vals))
    _, same = attribution_agreement(a, a, metric="top_k", k_percent=50)
    assert same == 1.0


# --------------------------------------------------------------------------- faithfulness
def test_top_positions():
    s = np.array([0.1, 0.5, np.nan, 0.5, 0.2])
    assert top_positions(s, [0, 1, 2, 3, 4], 40) == [1, 3]
    assert top_positions(s, [0, 1, 2, 3, 4], 1) == [1]


@torch.no_grad()
def test_faithfulness_against_direct_keep_scores(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode("The quick brown fox jumps over", " the lazy dog")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(ex.n_targets, ex.length))
    bins = [10.0, 50.0]
    res = faithfulness(wrapped, ex, scores, bins=bins)
    full = wrapped.score(ex)[0].double().numpy()
    assert res.full_logprob == pytest.approx(full, abs=1e-5)
    for i, p in enumerate(ex.target_positions):
        vis = list(range(p))
        for b, k in enumerate(bins):
            n_k = max(1, math.ceil(k / 100 * len(vis)))
            top = sorted(sorted(vis, key=lambda j, i=i: (-scores[i, j], j))[:n_k])
            keep_wo = torch.ones(1, ex.length, dtype=torch.bool)
            keep_wo[0, top] = False
            keep_only = torch.zeros(1, ex.length, dtype=torch.bool)
            keep_only[0, top] = True
            keep_only[0, p:] = True  # positions at or after p_i do not affect target i
            comp = full[i] - wrapped.score(ex, keep=keep_wo)[0, i].item()
            suff = full[i] - wrapped.score(ex, keep=keep_only)[0, i].item()
            assert res.comprehensiveness[i, b] == pytest.approx(comp, abs=1e-5)
            assert res.sufficiency[i, b] == pytest.approx(suff, abs=1e-5)
    assert res.aopc_comprehensiveness == pytest.approx(res.comprehensiveness.mean(1))
    assert set(res.summary()) == {"aopc_comprehensiveness", "aopc_sufficiency"}
    with pytest.raises(InputError):
        faithfulness(wrapped, ex, scores[:, :3])
    with pytest.raises(InputError):
        faithfulness(wrapped, ex, scores, bins=[0])


# --------------------------------------------------------------------------- alignment
def test_aer_standard_hand_computed():
    sure = {(0, 0), (1, 1)}
    possible = {(2, 1)}  # completed to P ∪ S
    pred = {(0, 0), (2, 1), (3, 3)}
    # |A∩S| = 1, |A∩P| = 2, |A| = 3, |S| = 2 -> 1 - 3/5
    assert aer(pred, sure, possible) == pytest.approx(0.4)
    assert aer(sure, sure, possible) == 0.0
    assert aer(set(), set(), set()) == 0.0


def test_aer_vafa_variant_hand_computed():
    # Vafa et al.'s script: possible = P lines only (P \ S), denominator + 1e-6
    sure, possible = {0, 1}, {2}
    pred = {0, 2, 3}
    assert aer(pred, sure, possible, variant="vafa") == pytest.approx(1 - 2 / (2 + 3 + 1e-6))
    assert aer(sure, sure, sure | possible, variant="vafa") == pytest.approx(1 - 2 / (4 + 1e-6))
    with pytest.raises(InputError):
        aer(pred, sure, possible, variant="nope")


def test_rationale_alignment_scores_hand_computed():
    rationales = [[1, 0], [2], [0, 3], [1]]
    sure = [{0}, {1}, set(), set()]
    possible = [{0, 2}, {1}, {3}, set()]  # target word 3 has no link: skipped
    got = score_rationale_alignments(rationales, sure, possible, n_source=4)
    ious = [1 / 3, 0.0, 1 / 2]
    assert got.n_words == 3
    assert got.iou == pytest.approx(np.mean(ious))
    assert got.top1 == pytest.approx(np.mean([0.0, 0.0, 0.0]))
    assert got.length == pytest.approx(np.mean([2, 1, 2]))
    gold_ind = [1, 0, 1, 0] + [0, 1, 0, 0] + [0, 0, 0, 1]
    pred_ind = [1, 1, 0, 0] + [0, 0, 1, 0] + [1, 0, 0, 1]
    assert got.f1 == pytest.approx(f1_score(gold_ind, pred_ind))
    aers = [aer({0, 1}, {0}, {0, 2}), aer({2}, {1}, {1}), aer({0, 3}, set(), {3})]
    assert got.aer == pytest.approx(np.mean(aers))
    top = score_rationale_alignments([[0, 1]], [{0}], [{0}], n_source=2)
    assert top.top1 == 1.0
    corpus = score_corpus_alignments([(rationales, sure, possible, 4), ([[0, 1]], [{0}], [{0}], 2)])
    assert corpus.n_words == 4
    with pytest.raises(InputError):
        score_rationale_alignments([[9]], [{0}], [{0}], n_source=2)


def test_source_words_of_rationale():
    word_of = [0, 0, 1, None, None, None]  # two source words (3 tokens), </s>, decoder positions
    assert source_words_of_rationale([4, 2, 3, 1, 0], word_of) == [1, 0]
