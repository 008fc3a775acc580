"""Greedy continuations of many prompts in shared forwards, equal to one prompt at a time.

Each step runs the next-token logits of every unfinished sequence in shared forwards (sequences sorted by length and
cut at a token limit, :func:`~seqexplain.models.batching.length_groups`); a sequence whose two best logits are too
close for a shared forward to decide (:func:`~seqexplain.models.batching.near_tie`) runs that step again alone, so
every continuation is the one the adapter's one-prompt loop makes. Stopping rule, as that loop's: at most
``max(1, limit)`` tokens; end-of-sequence ends a continuation and is kept only as its first token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from seqexplain.models.batching import length_groups, near_tie


def greedy_many(prompts: Sequence[Sequence[int]], limits: Sequence[int], eos: int | None,
                next_many: Callable[[list[list[int]]], torch.Tensor], next_one: Callable[[list[int]], torch.Tensor],
                pack_tokens: int, margin: float) -> list[list[int]]:
    """The greedy continuation of each prompt (module docstring). ``next_many(seqs)`` gives ``[B, V]`` next-token
    logits of several sequences in one forward, ``next_one(seq)`` ``[V]`` those of one sequence alone (the
    one-prompt loop's own step)."""
    seqs = [list(p) for p in prompts]
    new: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(seqs)
    for _ in range(max((max(1, n) for n in limits), default=0)):
        active = [k for k in range(len(seqs)) if not done[k] and len(new[k]) < max(1, limits[k])]
        if not active:
            break
        for group in length_groups([len(seqs[k]) for k in active], pack_tokens):
            members = [active[g] for g in group]
            rows = next_many([seqs[k] for k in members]) if len(members) > 1 else None
            for r, k in enumerate(members):
                row = next_one(seqs[k]) if rows is None or near_tie(rows[r], margin) else rows[r]
                nxt = int(row.float().argmax())
                if nxt == eos and new[k]:
                    done[k] = True
                    continue
                new[k].append(nxt)
                seqs[k].append(nxt)
                done[k] = nxt == eos
    return new
