"""Token-labelling evaluation of word scores against gold word labels (Rei & Søgaard 2018; Bujel et al. 2021).

Inputs are per sentence: ``gold[W]`` (0/1) and ``scores[W]`` (one score per word).

* :func:`predict_tokens`: word ``i`` is positive when ``scores_i ≥ threshold`` **and** it is among the
  ``top_count`` highest scores of its sentence (``0`` = no limit; ties broken by position).
* :func:`token_prf`: micro precision, recall, F1 and F0.5 over every word of every sentence
  (``F_β = (1 + β²)·P·R / (β²·P + R)``; 0 where undefined).
* :func:`mean_average_precision`: the mean, over sentences with at least one gold positive, of scikit-learn's
  ``average_precision_score(gold, scores)``.
* :func:`pearson`: Pearson's ``r`` between all scores and all gold labels (scipy; words without a score left out),
  NaN when either is constant or a score is infinite (with a warning).
* :func:`sentence_prf`: P/R/F1 of the positive sentence class.
* :func:`tune_threshold`: the threshold among the observed scores that maximises token F1 (on development data).
* :func:`evaluate_scores`: all of the above for one score source; with ``dev`` data the F1 at the dev-tuned
  threshold as well.

Word scores from sub-token scores: :func:`word_scores` (max over a word's sub-tokens by default; ``"mean"``,
``"sum"``, ``"first"`` by option), through the tokenizer's character offsets
(:func:`~seqexplain.data.tokenizers.word_index_of_tokens`), never through special-token ids. NaN token scores are
left out of the reduction (``"first"`` is then the first *scored* sub-token, ``"sum"`` the sum of the scored ones);
a word without any scored token (cut by truncation) gets NaN; :func:`evaluate_scores` treats NaN as the lowest
score and counts such words.
Every order of words is :func:`seqexplain.ranking.rank_positions`' (``+inf``, finite descending, ``-inf``, NaN last;
ties by position); ``±inf`` keep their value (``inf ≥ inf``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score

from seqexplain.data.tokenizers import word_index_of_tokens
from seqexplain.errors import InputError
from seqexplain.ranking import rank_positions

REDUCTIONS = ("max", "mean", "sum", "first")


def word_scores(token_scores: Sequence[float] | np.ndarray, offsets: Sequence[tuple[int, int] | None], text: str,
                spans: Sequence[tuple[int, int]], reduce: str = "max") -> np.ndarray:
    """``[W]`` scores of the words at character ``spans`` of ``text`` from per-token scores and offsets (module
    docstring); special tokens (``None`` offsets) are ignored."""
    if reduce not in REDUCTIONS:
        raise InputError(f"reduce is one of {', '.join(REDUCTIONS)}, not {reduce!r}")
    vals = np.asarray(token_scores, dtype=float)
    if vals.ndim != 1:
        raise InputError(f"word_scores needs one score per token (1-D), got shape {vals.shape}; pick one target's row")
    if vals.shape[0] != len(offsets):
        raise InputError(f"{vals.shape[0]} token scores for {len(offsets)} tokens")
    owner = word_index_of_tokens(list(offsets), text, list(spans))
    groups: list[list[float]] = [[] for _ in spans]
    for v, w in zip(vals, owner, strict=True):
        if w is not None and not np.isnan(v):
            groups[w].append(float(v))
    out = np.full(len(spans), np.nan)
    for i, g in enumerate(groups):
        if g:
            out[i] = {"max": max, "sum": sum, "first": lambda x: x[0],
                      "mean": lambda x: sum(x) / len(x)}[reduce](g)
    return out


def _binary(labels: Sequence[int] | np.ndarray, what: str) -> None:
    values = np.asarray(labels)
    if values.size and not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))].flat[0]
        raise InputError(f"{what} must be 0 or 1, got {bad!r}; map the labels to 0 (negative) / 1 (positive) first")


def _check(gold: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> None:
    if len(gold) != len(scores):
        raise InputError(f"{len(gold)} gold sentences but {len(scores)} score rows")
    for i, (g, s) in enumerate(zip(gold, scores, strict=True)):
        if len(g) != len(s):
            raise InputError(f"sentence {i}: {len(g)} gold labels but {len(s)} scores")
        _binary(g, f"sentence {i}: gold labels")


def _order_values(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Finite stand-ins with the order and ties of :func:`~seqexplain.ranking.rank_positions` (NaN last, tied)."""
    s = np.asarray(scores, dtype=float)
    out = np.zeros(s.shape[0])
    group, prev = 0, None
    for j in rank_positions(s):
        key = "nan" if np.isnan(s[j]) else float(s[j])
        if prev is not None and key != prev:
            group += 1
        out[j], prev = -group, key
    return out


def predict_tokens(scores: Sequence[float] | np.ndarray, threshold: float = 0.5, top_count: int = 0) -> np.ndarray:
    """0/1 per word (module docstring); NaN scores are never positive."""
    if isinstance(top_count, bool) or not isinstance(top_count, (int, np.integer)) or top_count < 0:
        raise InputError(f"top_count must be a non-negative number of words (0 = no limit), got {top_count!r}")
    s = np.asarray(scores, dtype=float)
    pred = ~np.isnan(s) & (s >= threshold)
    if top_count > 0 and s.size > top_count:
        allowed = np.zeros(s.size, dtype=bool)
        allowed[rank_positions(s)[:top_count]] = True
        pred &= allowed
    return pred.astype(int)


def f_beta(p: float, r: float, beta: float) -> float:
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r) if p + r > 0 else 0.0


def prf_counts(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": f_beta(p, r, 1.0), "f05": f_beta(p, r, 0.5)}


def token_prf(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]]) -> dict[str, float]:
    """Micro P/R/F1/F0.5 over all words (labels and predictions 0 or 1)."""
    _check(gold, pred)
    for i, p in enumerate(pred):
        _binary(p, f"sentence {i}: predictions")
    g = np.concatenate([np.asarray(x, dtype=int) for x in gold]) if gold else np.zeros(0, int)
    p = np.concatenate([np.asarray(x, dtype=int) for x in pred]) if pred else np.zeros(0, int)
    return prf_counts(int(((g == 1) & (p == 1)).sum()), int(((g == 0) & (p == 1)).sum()),
                      int(((g == 1) & (p == 0)).sum()))


def mean_average_precision(gold: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> float:
    """Mean of per-sentence average precision over sentences with a gold positive (NaN: none)."""
    _check(gold, scores)
    aps = [float(average_precision_score(np.asarray(g), _order_values(s)))
           for g, s in zip(gold, scores, strict=True) if int(np.sum(g)) > 0]
    return float(np.mean(aps)) if aps else float("nan")


def pearson(gold: Sequence[Sequence[int]], scores: Sequence[Sequence[float]]) -> float:
    """Pearson's r over the words with a score (NaN words left out); NaN when fewer than two remain, either side is
    constant, or a score is infinite (then with a ``RuntimeWarning`` saying so)."""
    _check(gold, scores)
    g = np.concatenate([np.asarray(x, float) for x in gold])
    s = np.concatenate([np.asarray(x, float) for x in scores])
    ok = ~np.isnan(s)
    if np.isinf(s[ok]).any():
        warnings.warn(f"pearson: {int(np.isinf(s[ok]).sum())} infinite word score(s); Pearson's r is undefined (NaN)",
                      RuntimeWarning, stacklevel=2)
        return float("nan")
    if ok.sum() < 2 or np.ptp(g[ok]) == 0 or np.ptp(s[ok]) == 0:
        return float("nan")
    return float(pearsonr(s[ok], g[ok])[0])


def sentence_prf(gold: Sequence[int], pred: Sequence[int]) -> dict[str, float]:
    g, p = np.asarray(gold, int), np.asarray(pred, int)
    if g.shape != p.shape:
        raise InputError(f"{g.size} gold sentence labels but {p.size} predictions")
    _binary(g, "gold sentence labels")
    _binary(p, "sentence predictions")
    return prf_counts(int(((g == 1) & (p == 1)).sum()), int(((g == 0) & (p == 1)).sum()),
                      int(((g == 1) & (p == 0)).sum()))


def tune_threshold(gold: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], top_count: int = 0
                   ) -> tuple[float, float]:
    """``(threshold, F1)``: the observed score that, used as the threshold, gives the highest token F1 (ties: the
    highest threshold). With ``top_count = 0`` every candidate is scored in one sorted pass."""
    _check(gold, scores)
    g = np.concatenate([np.asarray(x, int) for x in gold])
    s = np.concatenate([np.asarray(x, float) for x in scores])
    observed = np.unique(s[~np.isnan(s)])
    if observed.size == 0:
        return float("nan"), 0.0
    if top_count > 0:
        best = max(((token_prf(gold, [predict_tokens(x, t, top_count) for x in scores])["f1"], t)
                    for t in observed[::-1]), key=lambda ft: ft[0])
        return float(best[1]), float(best[0])
    order = np.asarray(rank_positions(s), dtype=np.int64)  # NaN last: never inside a thresholded prefix
    ss, gg = s[order], g[order]
    tp = np.cumsum(gg)
    n_pred = np.arange(1, gg.size + 1)
    last = np.r_[ss[1:] != ss[:-1], True] & ~np.isnan(ss)  # the last index of each distinct score
    p = tp / n_pred
    r = tp / max(1, int(g.sum()))
    f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    f1 = np.where(last, f1, -1.0)
    i = int(np.argmax(f1))
    return float(ss[i]), float(max(f1[i], 0.0))


def evaluate_scores(gold: Sequence[Sequence[int]], scores: Sequence[Sequence[float]], *, threshold: float | None = 0.5,
                    top_count: int = 0, dev_gold: Sequence[Sequence[int]] | None = None,
                    dev_scores: Sequence[Sequence[float]] | None = None) -> dict[str, Any]:
    """Token metrics of one score source (module docstring): ``at_threshold`` (None when ``threshold`` is None),
    ``map``, ``pearson``, ``tuned`` (threshold from ``dev_*``, P/R/F1/F0.5 on these data), ``missing_words``."""
    _check(gold, scores)
    out: dict[str, Any] = {"map": mean_average_precision(gold, scores), "pearson": pearson(gold, scores),
                           "missing_words": int(sum(int(np.isnan(np.asarray(s, float)).sum()) for s in scores)),
                           "words": int(sum(len(g) for g in gold))}
    if threshold is not None:
        out["at_threshold"] = {"threshold": threshold, **token_prf(
            gold, [predict_tokens(s, threshold, top_count) for s in scores])}
    if dev_gold is not None and dev_scores is not None:
        t, dev_f1 = tune_threshold(dev_gold, dev_scores, top_count)
        out["tuned"] = {"threshold": t, "dev_f1": dev_f1,
                        **token_prf(gold, [predict_tokens(s, t, top_count) for s in scores])}
    return out
