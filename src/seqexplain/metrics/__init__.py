"""Metrics over attributions and rationales: plausibility, agreement, faithfulness, alignment."""

from seqexplain.metrics.agreement import attribution_agreement, kendall_tau, top_k_match
from seqexplain.metrics.alignment import (
    AlignmentScores,
    aer,
    score_corpus_alignments,
    score_rationale_alignments,
    source_words_of_rationale,
)
from seqexplain.metrics.faithfulness import Faithfulness, faithfulness
from seqexplain.metrics.plausibility import (
    PRF,
    auprc,
    iou_f1,
    rationale_length,
    spans_from_positions,
    token_f1,
    token_iou,
    token_prf,
)

__all__ = [
    "PRF",
    "AlignmentScores",
    "Faithfulness",
    "aer",
    "attribution_agreement",
    "auprc",
    "faithfulness",
    "iou_f1",
    "kendall_tau",
    "rationale_length",
    "score_corpus_alignments",
    "score_rationale_alignments",
    "source_words_of_rationale",
    "spans_from_positions",
    "token_f1",
    "token_iou",
    "token_prf",
    "top_k_match",
]
