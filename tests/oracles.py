"""Pieces of hand-written oracles that several test files share (written from the rules in the docs, never from
the code under test)."""

from __future__ import annotations

import torch


def seq2seq_read(logits: torch.Tensor, ex, keep_row: torch.Tensor) -> torch.Tensor:
    """Per target of an encoder-decoder example, ``log p(target)`` read from decoder ``logits[T, V]`` at the last
    kept decoder position before it, or at ``p_i − 1`` when none is kept (rules 3–4 of models/keep.py)."""
    s = ex.n_source
    out = []
    for i in range(ex.n_targets):
        p = s + 1 + i
        r = next((j for j in range(p - 1, s - 1, -1) if keep_row[j]), p - 1)
        out.append(torch.log_softmax(logits[r - s], -1)[ex.target_ids[i]])
    return torch.stack(out)
