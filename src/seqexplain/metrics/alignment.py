"""Rationales of translation models against gold word alignments.

Alignment error rate (Och & Ney, 2003) of predicted links ``A`` against sure links ``S`` and possible links
``P ⊇ S``::

    AER = 1 − (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

``variant="vafa"`` computes what Vafa et al.'s evaluation script (``analysis/evaluate_alignment_rationales.py`` of
keyonvafa/sequential-rationales) computes per target word: there the "possible" set holds the ``P`` lines of the
RWTH file only, i.e. ``P \\ S``, and a ``1e-6`` is added to the denominator::

    AER_vafa = 1 − (|A ∩ (P \\ S)| + |A ∩ S|) / (|S| + |A| + 1e-6)

so a predicted sure link counts once in the numerator instead of twice (the standard formula counts it in both
``A ∩ S`` and ``A ∩ P``); a perfect prediction of the sure links has standard AER 0 but Vafa-AER ≈ 0.5.

Rationale-level scores (:func:`score_rationale_alignments`), for every target word ``t`` that has at least one gold
link (sure or possible), with ``R_t`` the source words of its rationale and ``G_t = S_t ∪ P_t``:

* IOU ``|R_t ∩ G_t| / |R_t ∪ G_t|`` (mean over target words);
* F1: micro F1 of the indicators ``[j ∈ R_t]`` against ``[j ∈ G_t]`` over all target words and all source words
  ``j`` (scikit-learn's ``f1_score`` on the flattened indicators, as in the paper's script);
* AER per target word (mean), standard or Vafa variant;
* Top1: whether the first-added source word of the rationale is in ``G_t`` (mean);
* length: ``|R_t|`` (mean).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from seqexplain.errors import InputError

T = TypeVar("T")
AERVariant = Literal["standard", "vafa"]


def aer(predicted: Iterable[T], sure: Iterable[T], possible: Iterable[T], variant: AERVariant = "standard") -> float:
    """Alignment error rate of ``predicted`` links (or, per target word, source positions) — see the module
    docstring. ``possible`` may or may not include ``sure``; it is completed to ``P ∪ S`` (standard) or reduced to
    ``P \\ S`` (vafa)."""
    a, s, p = set(predicted), set(sure), set(possible)
    if variant == "standard":
        p |= s
        denom = len(a) + len(s)
        return 0.0 if denom == 0 else 1.0 - (len(a & s) + len(a & p)) / denom
    if variant == "vafa":
        p -= s
        return 1.0 - (len(a & p) + len(a & s)) / (len(s) + len(a) + 1e-6)
    raise InputError(f"unknown AER variant {variant!r}; use standard or vafa")


@dataclass(frozen=True)
class AlignmentScores:
    aer: float
    iou: float
    f1: float
    top1: float
    length: float
    n_words: int


def score_rationale_alignments(
    rationales: Sequence[Sequence[int]],
    sure: Sequence[Iterable[int]],
    possible: Sequence[Iterable[int]],
    n_source: int,
    aer_variant: AERVariant = "standard",
) -> AlignmentScores:
    """Score one sentence's (or, concatenated, a corpus's) rationales against gold alignments.

    ``rationales[t]``: the source words of target word ``t``'s rationale in the order they were added (decoder
    positions and special tokens already removed); ``sure[t]`` / ``possible[t]``: its gold source words;
    ``n_source``: the number of source words (the F1 indicator range). Target words without any gold link are
    skipped, as in the paper's script."""
    return score_corpus_alignments([(list(rationales), list(sure), list(possible), n_source)], aer_variant)


def score_corpus_alignments(
    sentences: Sequence[tuple[Sequence[Sequence[int]], Sequence[Iterable[int]], Sequence[Iterable[int]], int]],
    aer_variant: AERVariant = "standard",
) -> AlignmentScores:
    """:func:`score_rationale_alignments` over sentences ``(rationales, sure, possible, n_source)``: means over
    all scored target words, micro F1 over all their indicators."""
    aers, ious, top1, lengths = [], [], [], []
    gold_ind: list[int] = []
    pred_ind: list[int] = []
    for n, (rationales, sure, possible, n_source) in enumerate(sentences):
        if not (len(rationales) == len(sure) == len(possible)):
            raise InputError(f"sentence {n}: {len(rationales)} rationales but {len(sure)} sure and {len(possible)} "
                             "possible sets; give one of each per target word")
        for rat, s_t, p_t in zip(rationales, sure, possible, strict=True):
            s_set, p_set = set(s_t), set(p_t)
            gold = s_set | p_set
            if not gold:
                continue
            r_set = set(rat)
            if any(not 0 <= j < n_source for j in r_set | gold):
                raise InputError(f"source word index out of range 0..{n_source - 1}")
            union = r_set | gold
            ious.append(len(r_set & gold) / len(union))
            aers.append(aer(r_set, s_set, p_set, aer_variant))
            top1.append(float(bool(rat) and rat[0] in gold))
            lengths.append(len(r_set))
            gold_ind.extend(int(j in gold) for j in range(n_source))
            pred_ind.extend(int(j in r_set) for j in range(n_source))
    if not ious:
        raise InputError("no target word has a gold alignment link")
    g, p = np.array(gold_ind), np.array(pred_ind)
    tp = int(np.sum(g & p))
    prec = tp / p.sum() if p.sum() else 0.0
    rec = tp / g.sum() if g.sum() else 0.0
    f1 = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return AlignmentScores(float(np.mean(aers)), float(np.mean(ious)), float(f1), float(np.mean(top1)),
                           float(np.mean(lengths)), len(ious))


def source_words_of_rationale(rationale: Sequence[int], word_of: Sequence[int | None]) -> list[int]:
    """Map a token-level rationale (input-axis positions in the order added) to source words in order of first
    appearance; ``word_of[j]`` is the source word of position ``j``, or None for positions that are not source
    words (decoder positions, special tokens such as ``</s>``), which are dropped; a position outside ``word_of``
    is an :class:`InputError`."""
    out: list[int] = []
    for j in rationale:
        if not 0 <= j < len(word_of):
            raise InputError(f"rationale position {j} is outside 0..{len(word_of) - 1}; give word_of one entry per "
                             "input position (None for decoder positions and special tokens)")
        w = word_of[j]
        if w is not None and w not in out:
            out.append(w)
    return out

