"""Plausibility: how well a rationale or a score vector matches human (gold) annotations.

Token-set metrics, for a predicted set ``R`` and a gold set ``G`` of input positions:

* ``token_iou``: ``|R ∩ G| / |R ∪ G|`` (1.0 when both are empty);
* ``token_prf``: precision ``|R ∩ G| / |R|``, recall ``|R ∩ G| / |G|``, ``F1 = 2PR / (P + R)`` (0 when undefined,
  as scikit-learn's ``zero_division=0``);
* ``rationale_length``: ``|R|``.

``token_prf_corpus`` (ERASER's token-level scores of hard rationales over instances ``n``): ``"micro"`` pools the
tokens of every instance, ``P = Σ_n |R_n ∩ G_n| / Σ_n |R_n|``, ``R = Σ_n |R_n ∩ G_n| / Σ_n |G_n|``, ``F1 = 2PR/(P+R)``;
``"macro"`` averages the per-instance ``P_n``, ``R_n`` and ``F1_n`` (each 0 where undefined) over the instances with
a predicted or a gold position (``empty="skip"``, ERASER's rule: an instance with neither is in none of its keyed
sets); ``empty="zero"`` counts such instances too, with ``P_n = R_n = F1_n = 0`` (this library's rule before
2026-12-05, for comparing with results computed so).

``iou_f1`` (DeYoung et al., 2020, ERASER "IOU F1"): rationales are sets of spans; a predicted span is a true
positive when its best token IOU with a gold span of the same instance is ``≥ threshold`` (0.5); ``TP_n`` counts
them in instance ``n``. ``average="micro"``: precision ``Σ TP_n / Σ #predicted spans``, recall
``Σ TP_n / Σ #gold spans``, F1 their harmonic mean. ``average="macro"`` (ERASER's macro): precision = the mean of
``TP_n / #predicted_n`` over the instances with at least one predicted span, recall = the mean of
``TP_n / #gold_n`` over the instances with at least one gold span, F1 = the harmonic mean of those two.

Discretising soft scores (NaN = not visible, never selected): ``top_k_rationale`` takes the ``k`` positions ranked
first by :func:`seqexplain.ranking.rank_positions` (``k`` given, or ``k = |G|``, the gold rationale's length);
``threshold_rationale`` takes every position with score ``≥ threshold``.

``auprc``: area under the precision-recall curve of soft scores against gold positions, computed as average
precision ``AP = Σ_k (R_k − R_{k−1}) P_k`` over the distinct score thresholds in decreasing order (the step-wise
definition of scikit-learn's ``average_precision_score``). NaN scores (positions not visible) are ignored.

``plausibility`` computes AUPRC, token P/R/F1 and IOU F1 (micro over the one instance) of one score vector
against a gold mask, after discretising by top-k or threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

import numpy as np

from seqexplain.attribution import Attribution
from seqexplain.errors import InputError
from seqexplain.ranking import rank_positions


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


def token_prf_corpus(predicted: Sequence[Iterable[int]], gold: Sequence[Iterable[int]],
                     average: Literal["micro", "macro"] = "micro", *,
                     empty: Literal["skip", "zero"] = "skip") -> PRF:
    """ERASER's token-level precision, recall and F1 of hard rationales over instances; ``empty`` says whether the
    macro average leaves out (``"skip"``, ERASER) or counts as 0 (``"zero"``) an instance with neither predicted nor
    gold positions (module docstring)."""
    if len(predicted) != len(gold):
        raise InputError(f"{len(predicted)} predicted instances but {len(gold)} gold instances")
    if average not in ("micro", "macro"):
        raise InputError(f"unknown average {average!r}; use 'micro' or 'macro'")
    if empty not in ("skip", "zero"):
        raise InputError(f"unknown empty={empty!r}; use 'skip' (ERASER) or 'zero'")
    pairs = [(set(r), set(g)) for r, g in zip(predicted, gold, strict=True)]
    if average == "macro":
        per = [token_prf(r, g) for r, g in pairs if r or g or empty == "zero"]
        if not per:
            return PRF(0.0, 0.0, 0.0)
        return PRF(float(np.mean([x.precision for x in per])), float(np.mean([x.recall for x in per])),
                   float(np.mean([x.f1 for x in per])))
    tp = sum(len(r & g) for r, g in pairs)
    n_r, n_g = sum(len(r) for r, _ in pairs), sum(len(g) for _, g in pairs)
    p = tp / n_r if n_r else 0.0
    rec = tp / n_g if n_g else 0.0
    return PRF(p, rec, _f1(p, rec))


def _span_sets(instances: Sequence[Sequence[tuple[int, int]]], side: str) -> list[list[tuple[int, int]]]:
    """Each instance's distinct spans, sorted (ERASER keys spans in sets: a span listed twice is one span)."""
    out = []
    for n, spans in enumerate(instances):
        distinct: set[tuple[int, int]] = set()
        for span in spans:
            if len(span) != 2 or not 0 <= span[0] < span[1]:
                raise InputError(f"{side} span {tuple(span)} of instance {n} is not a half-open token span "
                                 "(start, end) with 0 <= start < end; build spans with spans_from_positions")
            distinct.add((int(span[0]), int(span[1])))
        out.append(sorted(distinct))
    return out


def iou_f1(predicted: Sequence[Sequence[tuple[int, int]]], gold: Sequence[Sequence[tuple[int, int]]],
           threshold: float = 0.5, average: Literal["micro", "macro"] = "micro") -> PRF:
    """ERASER IOU F1 over instances; ``predicted[n]`` / ``gold[n]`` are the half-open token spans
    ``(start, end)``, ``0 ≤ start < end``, of instance ``n`` (a span listed twice counts once, as in ERASER);
    ``threshold`` in ``[0, 1]``; ``average`` is ``"micro"`` or ERASER's ``"macro"`` (module docstring)."""
    if len(predicted) != len(gold):
        raise InputError(f"{len(predicted)} predicted instances but {len(gold)} gold instances")
    if average not in ("micro", "macro"):
        raise InputError(f"unknown average {average!r}; use 'micro' or 'macro'")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0.0 <= threshold <= 1.0:
        raise InputError(f"the IOU threshold must be a number in [0, 1], got {threshold!r}")
    predicted, gold = _span_sets(predicted, "predicted"), _span_sets(gold, "gold")
    tps: list[int] = []
    for pred_spans, gold_spans in zip(predicted, gold, strict=True):
        gold_sets = [set(range(a, b)) for a, b in gold_spans]
        tp = 0
        for a, b in pred_spans:
            ps = set(range(a, b))
            best = max((token_iou(ps, gs) for gs in gold_sets), default=0.0)
            tp += int(best >= threshold)
        tps.append(tp)
    n_pred = [len(x) for x in predicted]
    n_gold = [len(x) for x in gold]
    if average == "macro":
        ps_ = [t / n for t, n in zip(tps, n_pred, strict=True) if n > 0]
        rs_ = [t / n for t, n in zip(tps, n_gold, strict=True) if n > 0]
        p = float(np.mean(ps_)) if ps_ else 0.0
        r = float(np.mean(rs_)) if rs_ else 0.0
        return PRF(p, r, _f1(p, r))
    p = sum(tps) / sum(n_pred) if sum(n_pred) else 0.0
    r = sum(tps) / sum(n_gold) if sum(n_gold) else 0.0
    return PRF(p, r, _f1(p, r))


def _scored(scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, list[int]]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InputError(f"scores must be one value per position (1-D), got shape {s.shape}; pick one target")
    return s, [int(j) for j in np.nonzero(~np.isnan(s))[0]]


def _gold_positions(gold: Iterable[int], n: int) -> set[int]:
    """The gold positions as a set, each an integer in ``0..n-1`` (a boolean mask is refused, not read as {0, 1})."""
    out: set[int] = set()
    for j in gold:
        if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
            raise InputError(f"gold holds {j!r}: give gold positions (integers), not a mask; for a mask use "
                             "np.nonzero(mask)[0] or plausibility(scores, gold_mask)")
        if not 0 <= j < n:
            raise InputError(f"gold position {j} is outside 0..{n - 1}; give gold positions of the score vector")
        out.add(int(j))
    return out


def top_k_rationale(scores: Sequence[float] | np.ndarray, k: int | None = None,
                    gold: Iterable[int] | None = None) -> list[int]:
    """The ``k`` scored positions ranked first (``k = |gold|`` when ``k`` is None), in position order."""
    s, cand = _scored(scores)
    if k is None:
        if gold is None:
            raise InputError("top_k_rationale needs k, or the gold positions to take k = their number")
        k = len(_gold_positions(gold, s.shape[0]))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise InputError(f"k must be a non-negative number of tokens, got {k!r}")
    return sorted(rank_positions(s, cand)[: int(k)])


def threshold_rationale(scores: Sequence[float] | np.ndarray, threshold: float) -> list[int]:
    """The scored positions with score ``≥ threshold``, in position order."""
    if not isinstance(threshold, (int, float, np.floating)) or math.isnan(threshold):
        raise InputError(f"threshold must be a number, got {threshold!r}")
    s, cand = _scored(scores)
    return [j for j in cand if s[j] >= threshold]


def auprc(scores: Sequence[float] | np.ndarray, gold: Iterable[int]) -> float:
    """Average precision of ``scores`` (one per position; NaN = ignored) against the gold positions (each in
    ``0..len(scores)-1``, else :class:`InputError`)."""
    s, _ = _scored(scores)
    gold_set = _gold_positions(gold, s.shape[0])
    idx = np.nonzero(~np.isnan(s))[0]
    y = np.array([1 if int(j) in gold_set else 0 for j in idx])
    if y.sum() == 0:
        raise InputError("AUPRC needs at least one gold position among the scored ones")
    order = np.searchsorted(idx, rank_positions(s, idx))  # ranks within idx, best first
    vals, y = s[idx][order], y[order]
    tps = np.cumsum(y)
    # the last index of each run of equal scores is one threshold (``!=``, not a difference: inf − inf is NaN)
    last = np.r_[np.nonzero(vals[1:] != vals[:-1])[0], len(vals) - 1]
    tp, n = tps[last], last + 1
    precision = tp / n
    recall = tp / y.sum()
    prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev) * precision))


@dataclass(frozen=True)
class Plausibility:
    """Plausibility of one score vector against a gold mask: ``auprc`` (NaN when the gold rationale has no scored
    position), token ``token`` P/R/F1 and span ``iou`` P/R/F1 of the discretised ``rationale``."""

    auprc: float
    token: PRF
    iou: PRF
    rationale: list[int]


def plausibility(attribution_or_scores: Attribution | Sequence[float] | np.ndarray,
                 gold_mask: Sequence[bool] | np.ndarray, *, target: int = 0, k: int | None = None,
                 threshold: float | None = None, iou_threshold: float = 0.5) -> Plausibility:
    """AUPRC, token P/R/F1 and IOU F1 of one target's scores against ``gold_mask`` (one bool per position).

    The soft scores are discretised by ``threshold`` (score ``≥ threshold``) when given, else by top-``k``
    (``k`` tokens; default ``k`` = the number of gold positions). A mask with no gold position is an
    :class:`InputError` (every score would be 0 or undefined)."""
    if isinstance(attribution_or_scores, Attribution):
        if not 0 <= target < attribution_or_scores.scores.shape[0]:
            raise InputError(f"target {target} is out of range; the attribution has "
                             f"{attribution_or_scores.scores.shape[0]} targets")
        s = np.asarray(attribution_or_scores.scores[target], dtype=np.float64)
    else:
        s = np.asarray(attribution_or_scores, dtype=np.float64)
    mask = np.asarray(gold_mask)
    if mask.ndim != 1 or mask.shape[0] != s.shape[-1]:
        raise InputError(f"gold_mask has shape {mask.shape} but there are {s.shape[-1]} positions; give one bool "
                         "per position")
    if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
        raise InputError("gold_mask must hold booleans or 0/1 per position, got other values; threshold a soft "
                         "annotation into a mask first")
    gold = [int(j) for j in np.nonzero(mask.astype(bool))[0]]
    if not gold:
        raise InputError("gold_mask marks no gold position; plausibility is undefined without a gold rationale "
                         "(leave such examples out, as the corpus runs do, with a warning)")
    if threshold is not None and k is not None:
        raise InputError("give k or threshold, not both")
    pred = threshold_rationale(s, threshold) if threshold is not None else top_k_rationale(s, k, gold)
    scored_gold = [j for j in gold if not np.isnan(s[j])]
    ap = auprc(s, gold) if scored_gold else float("nan")
    return Plausibility(ap, token_prf(pred, gold),
                        iou_f1([spans_from_positions(pred)], [spans_from_positions(gold)], iou_threshold), pred)
