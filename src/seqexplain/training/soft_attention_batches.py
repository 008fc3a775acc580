"""Batches of :class:`~seqexplain.data.token_labels.LabelledSentence` for the soft-attention models.

:class:`EncoderBatcher` (a Hugging Face encoder): the text is the words joined by spaces, tokenised with offsets
and truncated to ``max_length`` keeping the final special token (each truncated sentence is kept in
``truncated``, for the caller's warning; ``on_long="error"`` raises :class:`InputError` instead); the token target
of a word is placed on its first sub-token (found through the offsets), the other sub-tokens are unsupervised; word
masking replaces non-special tokens by the tokenizer's mask token (or ``[UNK]``) with probability ``mask_prob``.

:class:`WordBatcher` (the BiLSTM): one position per word; word masking replaces words by ``<unk>``.

Both give :meth:`forward` → ``(logits [N, C], a [N, L], â [N, L], attend [N, L])`` and the gold
``token_targets`` / ``token_mask`` on the same axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.data.tokenizers import word_index_of_tokens
from seqexplain.errors import InputError


def word_spans_of(words: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of ``words`` in ``" ".join(words)`` (a word may itself hold spaces)."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return spans


@dataclass
class EncoderBatcher:
    tokenizer: Any
    max_length: int = 128
    on_long: str = "truncate"
    mask_prob: float = 0.0
    truncated: set[tuple[str, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.on_long not in ("truncate", "error"):
            raise InputError(f"on_long is 'truncate' or 'error', not {self.on_long!r}")

    def make(self, sents: Sequence[LabelledSentence], train: bool = False,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        texts = [s.text for s in sents]
        enc = self.tokenizer(texts, truncation=False, return_offsets_mapping=True, return_special_tokens_mask=True)
        rows_ids, rows_special, rows_target, rows_mask = [], [], [], []
        for s, text, ids, offs, spec in zip(sents, texts, enc["input_ids"], enc["offset_mapping"],
                                            enc["special_tokens_mask"], strict=True):
            if len(ids) > self.max_length:
                if self.on_long == "error":
                    raise InputError(f"a sentence of {len(ids)} tokens exceeds max_seq_length={self.max_length} "
                                     f"({text[:60]!r}…); raise max_seq_length or allow truncation")
                self.truncated.add(s.words)  # the caller warns with the count
                keep = self.max_length - 1
                ids, offs, spec = ids[:keep] + ids[-1:], offs[:keep] + offs[-1:], spec[:keep] + spec[-1:]
            offsets = [None if sp else (int(a), int(b)) for (a, b), sp in zip(offs, spec, strict=True)]
            word_of = word_index_of_tokens(offsets, text, word_spans_of(s.words))
            gold = s.gold
            target, mask, seen = [], [], set()
            for w in word_of:
                first = w is not None and w not in seen
                target.append(gold[w] if first and w is not None else 0)
                mask.append(first)
                if w is not None:
                    seen.add(w)
            rows_ids.append(ids)
            rows_special.append(spec)
            rows_target.append(target)
            rows_mask.append(mask)
        n = max(len(r) for r in rows_ids)
        pad = self.tokenizer.pad_token_id or 0

        def padded(rows: list[list[Any]], value: Any, dtype: torch.dtype) -> Tensor:
            return torch.tensor([list(r) + [value] * (n - len(r)) for r in rows], dtype=dtype)

        ids_t = padded(rows_ids, pad, torch.long)
        attn = padded([[1] * len(r) for r in rows_ids], 0, torch.long)
        special = padded(rows_special, 1, torch.long)
        if train and self.mask_prob > 0:
            mask_id = self.tokenizer.mask_token_id
            if mask_id is None:
                mask_id = self.tokenizer.unk_token_id
            hit = (torch.rand(ids_t.shape, generator=generator) < self.mask_prob) & (special == 0) & (attn == 1)
            ids_t = torch.where(hit, torch.full_like(ids_t, int(mask_id)), ids_t)
        return {"input_ids": ids_t, "attention_mask": attn, "special_tokens_mask": special,
                "labels": torch.tensor([s.label for s in sents], dtype=torch.long),
                "token_targets": padded(rows_target, 0, torch.long), "token_mask": padded(rows_mask, False, torch.bool)}

    def forward(self, model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    special_tokens_mask=batch["special_tokens_mask"])
        return out.logits, out.token_scores, out.weights, out.attend


@dataclass
class WordBatcher:
    tokenizer: Any  # NormalisingWordTokenizer
    mask_prob: float = 0.0
    truncated: set[tuple[str, ...]] = field(default_factory=set)

    def make(self, sents: Sequence[LabelledSentence], train: bool = False,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        n = max(len(s.words) for s in sents)
        unk = self.tokenizer.unk_token_id
        ids = torch.full((len(sents), n), unk, dtype=torch.long)
        targets = torch.zeros(len(sents), n, dtype=torch.long)
        for r, s in enumerate(sents):
            ids[r, : len(s.words)] = torch.tensor(self.tokenizer.encode_words(s.words))
            targets[r, : len(s.words)] = torch.tensor(s.gold)
        lengths = torch.tensor([len(s.words) for s in sents])
        mask = torch.arange(n).view(1, -1) < lengths.view(-1, 1)
        if train and self.mask_prob > 0:
            hit = (torch.rand(ids.shape, generator=generator) < self.mask_prob) & mask
            ids = torch.where(hit, torch.full_like(ids, unk), ids)
        return {"input_ids": ids, "lengths": lengths, "labels": torch.tensor([s.label for s in sents]),
                "token_targets": targets, "token_mask": mask}

    def forward(self, model: torch.nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return model(batch["input_ids"], batch["lengths"], return_scores=True)
