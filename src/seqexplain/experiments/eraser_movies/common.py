"""What the ERASER movies recipes share: the label ids, the truncation rule and the model's home under ``--out``.

Truncation: a document keeps its longest prefix of whole ERASER tokens whose word pieces fit in ``max_length``
pieces including the tokenizer's special tokens (``[CLS]``/``[SEP]``), so the classifier sees exactly the text
``doc.text[:cut]`` in training and in evaluation, and a human rationale token is either wholly visible or wholly
cut (counted as "beyond the truncation"). A document whose first ERASER token alone needs more word pieces than
that budget has no such prefix: it is skipped (:func:`fit_documents`), counted and named in a warning that the
recipes show on the console and store in their results (``documents_skipped``, ``warnings``), never kept whole
beyond ``max_length`` nor cut inside the token.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence
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


def truncate(tokenizer: Any, doc: EraserDocument, max_length: int) -> Truncated | None:
    """The document cut to whole ERASER tokens that fit in ``max_length`` word pieces (module docstring), or
    ``None`` when not even its first token fits."""
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
        n_tokens = bisect.bisect_right(starts, first_cut_char) - 1  # the ERASER token holding that piece is cut
        if n_tokens < 1:
            return None
    text = doc.text[: doc.token_offsets[n_tokens - 1][1]] if doc.tokens else ""
    gold = evidence_token_set(doc)
    kept = sum(1 for i in gold if i < n_tokens)
    return Truncated(text=text, n_tokens=n_tokens, evidence_kept=kept, evidence_cut=len(gold) - kept)


@dataclass(frozen=True)
class Fitted:
    """The documents that fit (``docs``, with their ``cut``), the ``skipped`` ones' docids and the warning (if
    any)."""

    docs: list[EraserDocument]
    cut: list[Truncated]
    skipped: list[str]
    warnings: list[str]


def fit_documents(tokenizer: Any, docs: Sequence[EraserDocument], max_length: int, what: str) -> Fitted:
    """:func:`truncate` every document; those whose first token alone does not fit are skipped with a
    ``RuntimeWarning`` naming them (``what``: which documents, e.g. ``"test"``), also returned for the results."""
    kept, cut, skipped = [], [], []
    for doc in docs:
        t = truncate(tokenizer, doc, max_length)
        if t is None:
            skipped.append(doc.docid)
        else:
            kept.append(doc)
            cut.append(t)
    notes = []
    if skipped:
        names = ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else "")
        notes.append(f"{what}: {len(skipped)} of {len(docs)} document(s) skipped: the first ERASER token alone "
                     f"needs more word pieces than --max-length {max_length} leaves ({names})")
        warnings.warn(notes[-1], RuntimeWarning, stacklevel=2)
    return Fitted(kept, cut, skipped, notes)
