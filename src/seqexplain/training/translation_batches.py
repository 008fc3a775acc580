"""Batches of a translation training run: encoded pairs, token-budget batches, padded tensors, special token ids
and the keep masks of compatibility word dropout.

* a source is encoded with ``</s>``; decoder inputs are ``<s> y_1 … y_n``, labels ``y_1 … y_n </s>`` (``-100`` at
  padding);
* batches hold at most ``batch_tokens`` padded source + target tokens and are built from length-sorted pairs (with a
  seeded random tie-break), then shuffled;
* **compatibility word dropout** (``kind`` = ``"uniform_length"`` / ``"inverse_length"`` / None): for one side of a
  batch (source or decoder inputs, drawn separately), with probability ``mixture`` the batch gets keep masks drawn
  by :class:`seqexplain.training.word_dropout.WordDropout`, else its padding mask.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seqexplain.data.multi30k import ParallelCorpus
from seqexplain.errors import InputError


@dataclass
class EncodedPair:
    """Token ids of one pair: ``src`` with ``</s>``, ``tgt`` without special tokens."""

    src: list[int]
    tgt: list[int]  # without specials


def encode_pairs(tokenizer: Any, corpus: ParallelCorpus) -> list[EncodedPair]:
    """Token ids of every pair: the source with ``</s>``, the target without special tokens."""
    src = tokenizer(corpus.source, add_special_tokens=True)["input_ids"]
    tgt = tokenizer(corpus.target, add_special_tokens=False)["input_ids"]
    return [EncodedPair(list(s), list(t)) for s, t in zip(src, tgt, strict=True)]


def make_batches(pairs: Sequence[EncodedPair], batch_tokens: int, seed: int) -> list[list[int]]:
    """Indices of ``pairs`` grouped into batches of at most ``batch_tokens`` padded tokens (source + target + 1),
    from a length-sorted order with a seeded random tie-break; the batch order is shuffled with the same seed."""
    rng = random.Random(seed)
    keys = [(len(p.src), len(p.tgt), rng.random(), i) for i, p in enumerate(pairs)]
    keys.sort()
    batches: list[list[int]] = []
    cur: list[int] = []
    max_s = max_t = 0
    for s_len, t_len, _, i in keys:
        ns, nt = max(max_s, s_len), max(max_t, t_len + 1)
        if cur and (len(cur) + 1) * (ns + nt) > batch_tokens:
            batches.append(cur)
            cur, ns, nt = [], s_len, t_len + 1
        cur.append(i)
        max_s, max_t = ns, nt
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(pairs: Sequence[EncodedPair], idx: Sequence[int], ids: dict[str, int]) -> dict[str, torch.Tensor]:
    """Padded tensors of a batch: ``input_ids``/``src_valid`` ``[B, S]``, ``decoder_input_ids``/``tgt_valid``/
    ``labels`` ``[B, T]`` (labels ``-100`` at padding)."""
    rows = [pairs[i] for i in idx]
    n_s = max(len(r.src) for r in rows)
    n_t = max(len(r.tgt) for r in rows) + 1
    b = len(rows)
    x = torch.full((b, n_s), ids["pad"], dtype=torch.long)
    dec = torch.full((b, n_t), ids["pad"], dtype=torch.long)
    lab = torch.full((b, n_t), -100, dtype=torch.long)
    for r, p in enumerate(rows):
        x[r, : len(p.src)] = torch.tensor(p.src)
        dec[r, : len(p.tgt) + 1] = torch.tensor([ids["bos"], *p.tgt])
        lab[r, : len(p.tgt) + 1] = torch.tensor([*p.tgt, ids["eos"]])
    return {"input_ids": x, "src_valid": x != ids["pad"], "decoder_input_ids": dec, "tgt_valid": lab != -100,
            "labels": lab}


def special_ids(tokenizer: Any) -> dict[str, int]:
    """The ``pad``, ``bos``, ``eos`` and ``unk`` ids of ``tokenizer``; :class:`InputError` when one is missing."""
    ids = {"pad": tokenizer.pad_token_id, "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
           "unk": tokenizer.unk_token_id}
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise InputError(f"the tokenizer has no {', '.join(missing)} token; train it with train_bpe_tokenizer")
    return {k: int(v) for k, v in ids.items()}


def sample_keep(valid: torch.Tensor, kind: str | None, mixture: float,
                generator: torch.Generator) -> tuple[torch.Tensor, bool]:
    """Keep mask ``[B, L]`` for one side of a batch (see the module docstring); ``(valid, False)`` when no word
    dropout is drawn. Uses :class:`seqexplain.training.word_dropout.WordDropout`."""
    if kind is None or mixture <= 0.0:
        return valid.clone(), False
    from seqexplain.training.word_dropout import WordDropout

    return WordDropout(kind=kind, mixture=mixture).sample(valid, generator)
