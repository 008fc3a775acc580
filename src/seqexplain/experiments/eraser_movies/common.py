"""What the ERASER movies recipes share: the label ids, the truncation rule and the model's home under ``--out``.

Truncation: a document keeps its longest prefix of whole ERASER tokens whose word pieces fit in ``max_length``
pieces including the tokenizer's special tokens (``[CLS]``/``[SEP]``), so the classifier sees exactly the text
``doc.text[:cut]`` in training and in evaluation, and a human rationale token is either wholly visible or wholly
cut (counted as "beyond the truncation").
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqexplain.data.eraser import EraserDocument, evidence_token_set
from seqexplain.errors import InputError
from seqexplain.models.loading import quiet_transformers

LABELS = ("NEG", "POS")
DEFAULT_MAX_LENGTH = 256


def label_id(doc: EraserDocument) -> int:
    if doc.label not in LABELS:
        raise InputError(f"{doc.annotation_id}: label {doc.label!r} is not one of {', '.join(LABELS)}")
    return LABELS.index(doc.label)


def model_dir(out: Path | str) -> Path:
    return Path(out) / "model"


@dataclass(frozen=True)
class Truncated:
    """``text`` = ``doc.text[: token_offsets[n_tokens - 1][1]]`` (the first ``n_tokens`` ERASER tokens)."""

    text: str
    n_tokens: int
    evidence_kept: int
    evidence_cut: int


def truncate(tokenizer: Any, doc: EraserDocument, max_length: int) -> Truncated:
    """The document cut to whole ERASER tokens that fit in ``max_length`` word pieces (module docstring)."""
    n_special = len(tokenizer("")["input_ids"])
    budget = max_length - n_special
    if budget < 1:
        raise InputError(f"--max-length {max_length} leaves no room for text after {n_special} special tokens")
    with quiet_transformers():  # the whole document is longer than the model: only its offsets are read here
        enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= budget:
        n_tokens = len(doc.tokens)
    else:
        first_cut_char = offsets[budget][0]  # the first piece that does not fit starts here
        starts = [a for a, _ in doc.token_offsets]
        # the ERASER token holding that piece is cut whole (a token longer than the budget is kept alone)
        n_tokens = max(1, bisect.bisect_right(starts, first_cut_char) - 1)
    text = doc.text[: doc.token_offsets[n_tokens - 1][1]] if doc.tokens else ""
    gold = evidence_token_set(doc)
    kept = sum(1 for i in gold if i < n_tokens)
    return Truncated(text=text, n_tokens=n_tokens, evidence_kept=kept, evidence_cut=len(gold) - kept)
