"""Greedy continuations of many prompts in shared forwards, equal to one prompt at a time.

Each step computes the next-token logits of every unfinished sequence in shared forwards; a sequence whose two best
logits are too close for a shared forward to decide (:func:`~seqexplain.models.batching.near_tie`) takes that step's
decision from a forward of its own (the adapter's one-prompt step), so every continuation is the one the one-prompt
loop makes. Stopping rule, as that loop's: at most ``max(1, limit)`` tokens; end-of-sequence ends a continuation
and is kept only as its first token.

Two drivers: :func:`greedy_many` reruns each sequence whole at every step (sequences sorted by length and cut at a
token limit, :func:`~seqexplain.models.batching.length_groups`); :func:`greedy_cached` keeps a group's key/value
cache and feeds one token per sequence and step, for adapters that offer it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seqexplain.models.batching import length_groups, near_tie
from seqexplain.progress import add_total, advance

NextOne = Callable[[int, list[int]], torch.Tensor]
"""``next_one(k, seq)``: ``[V]`` next-token logits of sequence ``k`` (currently ``seq``) in a forward of its own."""


@dataclass(frozen=True)
class DecodingRules:
    """Token rules of a model's generation config that greedy decoding applies, as ``model.generate`` does:
    ``forced_first`` is the first new token whatever the logits (mBART-50's and NLLB's target-language token),
    ``banned`` are never chosen (``suppress_tokens``, one-token ``bad_words_ids`` such as Marian's pad),
    ``banned_first`` are not chosen as the first new token (``begin_suppress_tokens``)."""

    forced_first: int | None = None
    banned: tuple[int, ...] = ()
    banned_first: tuple[int, ...] = ()

    def masked(self, logits: torch.Tensor, first: bool) -> torch.Tensor:
        """``logits [V]`` with what the rules exclude at this step set to −inf (ids outside the vocabulary are
        ignored)."""
        n = logits.shape[-1]
        if first and self.forced_first is not None and 0 <= self.forced_first < n:
            out = torch.full_like(logits, float("-inf"))
            out[self.forced_first] = 0.0
            return out
        ban = [t for t in (*self.banned, *(self.banned_first if first else ())) if 0 <= t < n]
        if not ban:
            return logits
        out = logits.clone()
        out[ban] = float("-inf")
        return out


class _Decoding:
    """The sequences, their continuations so far and which are finished."""

    def __init__(self, prompts: Sequence[Sequence[int]], limits: Sequence[int], eos: int | None,
                 rules: DecodingRules) -> None:
        self.rules = rules
        self.seqs = [list(p) for p in prompts]
        self.new: list[list[int]] = [[] for _ in prompts]
        self.done = [False] * len(self.seqs)
        self.limits = [max(1, n) for n in limits]
        self.eos = eos
        add_total(sum(self.limits))  # progress in tokens; a continuation that ends early reports the rest at once

    def active(self) -> list[int]:
        return [k for k in range(len(self.seqs)) if not self.done[k] and len(self.new[k]) < self.limits[k]]

    def choose(self, k: int, shared: torch.Tensor | None, next_one: NextOne, margin: float) -> int:
        """Sequence ``k``'s next token from the shared forward's row (or its own forward when there is none, or the
        row is a near tie or not finite; both under the decoding rules); appended unless it is a later
        end-of-sequence. Returns the token."""
        first = not self.new[k]
        if (shared is None or not bool(torch.isfinite(shared).all())
                or near_tie(self.rules.masked(shared.float(), first), margin)):
            shared = next_one(k, self.seqs[k])
        nxt = int(self.rules.masked(shared.float(), first).argmax())
        if nxt == self.eos and self.new[k]:
            self.done[k] = True
            advance(self.limits[k] - len(self.new[k]))
            return nxt
        self.new[k].append(nxt)
        self.seqs[k].append(nxt)
        self.done[k] = nxt == self.eos or len(self.new[k]) >= self.limits[k]
        advance(self.limits[k] - len(self.new[k]) + 1 if self.done[k] else 1)
        return nxt


def greedy_many(prompts: Sequence[Sequence[int]], limits: Sequence[int], eos: int | None,
                next_many: Callable[[list[int], list[list[int]]], torch.Tensor], next_one: NextOne,
                pack_tokens: int, margin: float, context: Sequence[int] | None = None,
                rules: DecodingRules = DecodingRules()) -> list[list[int]]:
    """The greedy continuation of each prompt, every step rerunning the sequences whole (module docstring).
    ``next_many(ks, seqs)`` gives ``[B, V]`` next-token logits of sequences ``ks`` in one forward, ``next_one(k,
    seq)`` ``[V]`` those of one sequence alone (the one-prompt loop's own step). ``context[k]``: tokens sequence
    ``k`` brings besides its own (an encoder-decoder's source), counted when grouping."""
    dec = _Decoding(prompts, limits, eos, rules)
    extra = list(context) if context is not None else [0] * len(dec.seqs)
    while active := dec.active():
        for group in length_groups([extra[k] + len(dec.seqs[k]) for k in active], pack_tokens):
            members = [active[g] for g in group]
            rows = next_many(members, [dec.seqs[k] for k in members]) if len(members) > 1 else None
            for r, k in enumerate(members):
                dec.choose(k, None if rows is None else rows[r], next_one, margin)
    return dec.new


def greedy_cached(prompts: Sequence[Sequence[int]], limits: Sequence[int], eos: int | None,
                  start: Callable[[list[int], list[list[int]]], tuple[Any, torch.Tensor]],
                  step: Callable[[Any, torch.Tensor], tuple[Any, torch.Tensor]], next_one: NextOne,
                  pack_tokens: int, margin: float, rules: DecodingRules = DecodingRules()) -> list[list[int]]:
    """The greedy continuation of each prompt, groups of prompts decoded with a key/value cache (module
    docstring). ``start(ks, prompts)`` runs a group's prompts and gives its state and ``[B, V]`` next-token logits;
    ``step(state, tokens[B])`` feeds one token per sequence (a finished sequence is fed its last token again and
    its row ignored) and gives the next state and logits."""
    dec = _Decoding(prompts, limits, eos, rules)
    limit = max(1, pack_tokens)
    for group in length_groups([len(p) + dec.limits[k] for k, p in enumerate(dec.seqs)], limit):
        if len(group) == 1:
            k = group[0]
            while not dec.done[k]:
                dec.choose(k, None, next_one, margin)
            continue
        state, rows = start(group, [dec.seqs[k] for k in group])
        while True:
            fed = []
            for r, k in enumerate(group):
                if not dec.done[k]:
                    dec.choose(k, rows[r], next_one, margin)
                fed.append(dec.seqs[k][-1])
            if all(dec.done[k] for k in group):
                break
            state, rows = step(state, torch.tensor(fed, dtype=torch.long))
    return dec.new
