"""The keep-mask rule: what a model sees when some input positions are dropped. One module, used by every adapter,
the native models and word-dropout training.

A keep-mask ``keep[B, L]`` (bool) marks the visible positions of each row of a forward. The rule:

1. **Drop j = delete token j.** A dropped position is invisible to every other position (removed from attention,
   or from an RNN's input); the kept positions keep their original position ids.
2. **Every position sees itself.** In self-attention, query ``q`` attends to key ``k`` iff the architecture allows
   it (``k <= q`` for causal attention) and (``keep[k]`` or ``k == q``). A dropped position's output is therefore
   defined (it sees itself and the kept positions it may see), though no other position sees it.
3. **Reading position.** Target ``i`` at position ``p_i`` is read from ``r_i``, the last *kept* position before
   ``p_i`` on the target's side of the input axis (the position that would predict the next token if the dropped
   tokens were deleted).
4. **Nothing visible on the target's side.** When no position of the target's side before ``p_i`` is kept, the
   target is read from ``p_i − 1`` **with ``p_i − 1`` visible**: "nothing kept" equals "only the predicting token
   kept". Adapters make that position visible for that target only: a row in which it would become visible to
   another target is evaluated one target at a time (:func:`fallback_targets` tells which rows).
   A classifier (no target position) with nothing kept reads from its head position, made visible the same way
   (:func:`head_visible_when_empty`; a model that pools every position, with no head position, uses position 0).
   A token labeller reads target ``i`` at its own position ``p_i``, which it always sees (rule 2), so rules 3–4
   do not apply there: a row with nothing kept reads target ``i`` from token ``i`` alone
   (:func:`labeller_sequences`, used by :mod:`seqexplain.models.native_tagger` and
   :mod:`seqexplain.models.hf_labeller`).
5. **Nothing visible on the source side** (encoder-decoders). When no source position is kept, cross-attention
   has no key: its weighted sum of values is zero (the output projection still applies), i.e. the decoder gets no
   source information, rather than an average over masked positions.

Every adapter honours the rule, Hugging Face ones included: tests compare each with deleting tokens by hand on
GPT-2, Llama, BART, T5 and BERT (``tests/test_keep_rule.py``) and on tiny models of 70 transformers model types in
77 configurations (``tests/test_hf_family_sweep.py``; the table in docs/methods.md says what each gets). Models that
cannot keep rule 1's original positions say so in a warning on every result of a method that drops tokens (the
example's ``keep_warnings``): a causal model that counts positions over its attention mask (Bloom's and Falcon's
ALiBi), and a classifier without position ids it honours or with a relative attention by index (DeBERTa, XLNet,
Funnel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from seqexplain.errors import InputError


def check_keep(keep: Tensor) -> None:
    if keep.dim() != 2:
        raise InputError(f"a keep mask must be [B, L], got shape {tuple(keep.shape)}")


def self_attention_allowed(keep: Tensor, causal: bool) -> Tensor:
    """Boolean ``[B, 1, L, L]`` (True = may attend) of self-attention under ``keep[B, L]`` (rules 1–2)."""
    check_keep(keep)
    n_l = keep.shape[1]
    eye = torch.eye(n_l, dtype=torch.bool, device=keep.device)
    allowed = keep.to(torch.bool)[:, None, :] | eye
    if causal:
        allowed = allowed & torch.ones(n_l, n_l, dtype=torch.bool, device=keep.device).tril()
    return allowed.unsqueeze(1)


def cross_attention_allowed(src_keep: Tensor, n_target: int) -> Tensor:
    """Boolean ``[B, 1, T, S]``: every decoder position sees the kept source positions. A row with no kept source
    allows no key; attention modules then output zero for it (rule 5, :func:`source_empty`)."""
    check_keep(src_keep)
    return src_keep.to(torch.bool)[:, None, None, :].expand(src_keep.shape[0], 1, n_target, src_keep.shape[1])


def source_empty(src_keep: Tensor) -> Tensor:
    """``[B]`` True where a row keeps no source position (rule 5)."""
    return ~src_keep.to(torch.bool).any(1)


def additive(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask as an additive float mask (0 where allowed, the dtype's minimum elsewhere)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed,
                                                                                     torch.finfo(dtype).min)


def head_visible_when_empty(keep: Tensor, head: int) -> Tensor:
    """Boolean ``keep[B, L]`` with position ``head`` alone visible in each row that keeps nothing (rule 4 for a
    model read at one head position: a classifier)."""
    check_keep(keep)
    keep = keep.to(torch.bool)
    head_only = torch.zeros_like(keep)
    head_only[:, head] = True
    return torch.where(keep.any(1, keepdim=True), keep, head_only)


def labeller_sequences(keep: np.ndarray, positions: Sequence[int], rows_target: Sequence[int] | None = None
                       ) -> tuple[list[tuple[int, np.ndarray]], list[list[tuple[int, int]]]]:
    """Rule 2 for a token labeller (targets read at their own positions): for row ``r`` of ``keep[B, L]`` and each
    target ``t`` at ``p = positions[t]`` (only ``rows_target[r]`` where given), the positions it is read from are the
    row's kept ones when the row keeps ``p`` (one sequence shared by those targets of the row), else those plus ``p``
    (a sequence of its own). Returns the sequences as ``(row, mask [L])`` and, per row and target, ``(sequence index,
    index of p among the sequence's positions)``."""
    before = keep.cumsum(1) - keep  # kept positions before each position: p's index in either sequence
    sequences: list[tuple[int, np.ndarray]] = []
    cells: list[list[tuple[int, int]]] = []
    for r in range(keep.shape[0]):
        wanted = range(len(positions)) if rows_target is None else [int(rows_target[r])]
        shared = -1
        row_cells = []
        for t in wanted:
            p = int(positions[t])
            if keep[r, p]:
                if shared < 0:
                    shared = len(sequences)
                    sequences.append((r, keep[r]))
                s = shared
            else:
                own = keep[r].copy()
                own[p] = True
                s = len(sequences)
                sequences.append((r, own))
            row_cells.append((s, int(before[r, p])))
        cells.append(row_cells)
    return sequences, cells


def reading_positions(keep: Tensor, positions: Tensor, floor: Tensor | int = 0) -> Tensor:
    """``[B, T]`` reading position of each target (rule 3, with rule 4's fallback ``p_i − 1``).

    ``positions`` is ``[T]`` or ``[B, T]`` (target positions ``p_i``, padded targets may hold any value ≥ 1);
    ``floor`` (int or ``[B]``) is the first position of the targets' side (0 for a causal LM, the decoder start
    ``S`` for an encoder-decoder)."""
    n_b, n_l = keep.shape
    p = positions.to(keep.device).long()
    if p.dim() == 1:
        p = p.expand(n_b, -1)
    fl = torch.as_tensor(floor, device=keep.device).long().view(-1, 1) if not isinstance(floor, int) else floor
    idx = torch.arange(n_l, device=keep.device).expand(n_b, n_l)
    marked = torch.where(keep.bool() & (idx >= fl), idx, torch.full_like(idx, -1))
    last_kept = torch.cummax(marked, dim=1).values  # [B, L]: last kept index at or before each position
    r = last_kept.gather(1, (p - 1).clamp(min=0))
    return torch.where(r >= 0, r, p - 1)


def fallback_targets(keep: Tensor, positions: Tensor, floor: Tensor | int = 0) -> Tensor:
    """``[B, T]`` True where a target has nothing kept on its side before ``p_i`` (rule 4)."""
    r = reading_positions(keep, positions, floor)
    return ~keep.bool().gather(1, r)


def force_visible(keep: Tensor, reads: Tensor, where: Tensor) -> Tensor:
    """``keep`` with ``reads[b, t]`` made visible wherever ``where[b, t]`` (rule 4's fallback positions)."""
    rows, cols = torch.nonzero(where, as_tuple=True)
    out = keep.clone().bool()
    out[rows, reads[rows, cols]] = True
    return out


def needs_split(keep: Tensor, positions: Tensor, floor: Tensor | int = 0) -> bool:
    """Whether making a fallback reading position visible (rule 4) would expose it to another target of the same
    row, so the rows must be evaluated one target at a time: a row with a fallback target ``i`` and another
    target ``t`` with ``p_i − 1 < p_t`` reading from a position after ``p_i − 1``."""
    n_b = keep.shape[0]
    p = positions.to(keep.device).long()
    if p.dim() == 1:
        p = p.expand(n_b, -1)
    if p.shape[1] < 2:
        return False
    fb = fallback_targets(keep, p, floor)
    if not bool(fb.any()):
        return False
    r = reading_positions(keep, p, floor)
    first_fb = torch.where(fb, p - 1, torch.full_like(p, 1 << 40)).min(1).values  # [B]
    later = (r > first_fb.view(-1, 1)) & ~fb
    return bool(later.any()) or bool((fb.sum(1) > 1).any())
