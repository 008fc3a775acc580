"""Plausibility: how well a rationale or a score vector matches human (gold) annotations.

Token-set metrics, for a predicted set ``R`` and a gold set ``G`` of input positions:

* ``token_iou``: ``|R ∩ G| / |R ∪ G|`` (1.0 when both are empty);
* ``token_prf``: precision ``|R ∩ G| / |R|``, recall ``|R ∩ G| / |G|``, ``F1 = 2PR / (P + R)`` (0 when undefined,
  as scikit-learn's ``zero_division=0``);
* ``rationale_length``: ``|R|``.

``iou_f1`` (DeYoung et al., 2020, ERASER "IOU F1"): rationales are sets of spans; a predicted span is a true
positive when its best token IOU with a gold span of the same instance is ``≥ threshold`` (0.5). Over all
instances, micro precision ``TP / #predicted spans``, micro recall ``TP / #gold spans``, F1 their harmonic mean.

``auprc``: area under the precision-recall curve of soft scores against gold positions, computed as average
precision ``AP = Σ_k (R_k − R_{k−1}) P_k`` over the distinct score thresholds in decreasing order (the step-wise
definition of scikit-learn's ``average_precision_score``). NaN scores (positions not visible) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seqexplain.errors import InputError


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def token_iou(predicted: Iterable[int], gold: Iterable[int]) -> float:
    """``|R ∩ G| / |R ∪ G|``; 1.0 when both sets are empty."""
    r, g = set(predicted), set(gold)
    union = r | g
    return 1.0 if not union else len(r & g) / len(union)


def token_prf(predicted: Iterable[int], gold: Iterable[int]) -> PRF:
    """Token-level precision, recall and F1 of ``predicted`` against ``gold`` (0 where undefined)."""
    r, g = set(predicted), set(gold)
    tp = len(r & g)
    p = tp / len(r) if r else 0.0
    rec = tp / len(g) if g else 0.0
    return PRF(p, rec, _f1(p, rec))


def token_f1(predicted: Iterable[int], gold: Iterable[int]) -> float:
    """Token-level F1 (see :func:`token_prf`)."""
    return token_prf(predicted, gold).f1


def rationale_length(predicted: Iterable[int]) -> int:
    """Number of distinct positions in the rationale."""
    return len(set(predicted))


def spans_from_positions(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive positions as half-open spans ``(start, end)``, in order."""
    spans: list[tuple[int, int]] = []
    for j in sorted(set(positions)):
        if spans and spans[-1][1] == j:
            spans[-1] = (spans[-1][0], j + 1)
        else:
            spans.append((j, j + 1))
    return spans


def iou_f1(predicted: Sequence[Sequence[tuple[int, int]]], gold: Sequence[Sequence[tuple[int, int]]],
           threshold: float = 0.5) -> PRF:
    """ERASER IOU F1 over instances; ``predicted[n]`` / ``gold[n]`` are the half-open token spans of instance
    ``n`` (see the module docstring)."""
    if len(predicted) != len(gold):
        raise InputError(f"{len(predicted)} predicted instances but {len(gold)} gold instances")
    tp = n_pred = n_gold = 0
    for pred_spans, gold_spans in zip(predicted, gold, strict=True):
        n_pred += len(pred_spans)
        n_gold += len(gold_spans)
        gold_sets = [set(range(a, b)) for a, b in gold_spans]
        for a, b in pred_spans:
            ps = set(range(a, b))
            best = max((token_iou(ps, gs) for gs in gold_sets), default=0.0)
            tp += int(best >= threshold)
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return PRF(p, r, _f1(p, r))


def auprc(scores: Sequence[float] | np.ndarray, gold: Iterable[int]) -> float:
    """Average precision of ``scores`` (one per position; NaN = ignored) against the gold positions."""
    s = np.asarray(scores, dtype=np.float64)
    gold_set = set(gold)
    idx = np.nonzero(~np.isnan(s))[0]
    y = np.array([1 if int(j) in gold_set else 0 for j in idx])
    if y.sum() == 0:
        raise InputError("AUPRC needs at least one gold position among the scored ones")
    vals = s[idx]
    order = np.argsort(-vals, kind="stable")
    vals, y = vals[order], y[order]
    tps = np.cumsum(y)
    # the last index of each run of equal scores is one threshold
    last = np.r_[np.nonzero(np.diff(vals))[0], len(vals) - 1]
    tp, n = tps[last], last + 1
    precision = tp / n
    recall = tp / y.sum()
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))
