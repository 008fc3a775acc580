"""Shared-prefix evaluation of many sparse rows of one causal LM (the rows of greedy, exhaustive and occlusion).

A row is the list of its kept tokens ``(position, token id)`` in order, run with their original position ids. In a
causal model the state of a row's ``k``-th token depends only on its first ``k`` tokens, so rows that begin with
the same tokens have the same states there. :func:`plan_sharing` finds, for every row, how many leading tokens it
shares with a lexicographic neighbour (``share``), collects those leading tuples, and keeps only the *maximal*
ones (a tuple that is a prefix of another is served by the longer one: its key/value cache holds the shorter
one's). :func:`shared_prefix_states` then

1. runs every maximal prefix once, with a key/value cache;
2. runs each row's remaining tokens on the first ``share`` cached entries of its prefix (the rest masked out),
   with rows bucketed by remaining length to limit padding;
3. reads the last hidden state at each requested row index, from the prefix run or the suffix run.

The result equals running each row on its own, up to float rounding. Greedy rationales are where this pays off:
the candidates ``s ∪ {j}`` of a step share ``s``'s tokens before ``j``; across targets, ``(j, p_i − 1)`` share
``j``; exhaustive candidates share all but their last elements; occlusion rows share everything before the window.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

Row = tuple[tuple[int, int], ...]
"""A row's kept tokens as ``(position, token id)`` pairs, in order."""

MIN_SAVING = 0.7
"""Shared evaluation is used only when its padded token count is at most this fraction of the plain one."""

BUCKET_SLACK = 0.75
"""A suffix bucket takes rows down to this fraction of its longest suffix."""


@dataclass
class SharingPlan:
    prefixes: list[Row]  # maximal shared prefixes
    row_prefix: list[int]  # index into ``prefixes`` per row, -1: none
    share: list[int]  # leading tokens of each row served by its prefix
    buckets: list[list[int]]  # rows grouped by similar suffix length
    cost: int  # padded tokens of the prefix run plus every suffix run


def _lcp(a: Row, b: Row) -> int:
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def plan_sharing(rows: Sequence[Row]) -> SharingPlan:
    """How to evaluate ``rows`` with shared prefixes (see the module docstring). Every row keeps at least one
    token of its own to run (``share ≤ len − 1``)."""
    n = len(rows)
    order = sorted(range(n), key=lambda b: rows[b])
    share = [0] * n
    for a, b in zip(order, order[1:], strict=False):
        k = _lcp(rows[a], rows[b])
        share[a], share[b] = max(share[a], k), max(share[b], k)
    share = [max(0, min(s, len(rows[b]) - 1)) for b, s in enumerate(share)]
    leading = sorted({rows[b][: share[b]] for b in range(n) if share[b] > 0})
    serve: dict[Row, Row] = {}
    for i in range(len(leading) - 1, -1, -1):  # an extension of a tuple follows it directly in sorted order
        t = leading[i]
        nxt = leading[i + 1] if i + 1 < len(leading) else None
        serve[t] = serve[nxt] if nxt is not None and nxt[: len(t)] == t else t
    prefixes = sorted(set(serve.values()))
    index = {t: i for i, t in enumerate(prefixes)}
    row_prefix = [index[serve[rows[b][: share[b]]]] if share[b] > 0 else -1 for b in range(n)]
    rest = [len(rows[b]) - share[b] for b in range(n)]
    buckets: list[list[int]] = []
    for b in sorted(range(n), key=lambda b: -rest[b]):
        if buckets and rest[b] >= BUCKET_SLACK * rest[buckets[-1][0]]:
            buckets[-1].append(b)
        else:
            buckets.append([b])
    cost = len(prefixes) * max((len(p) for p in prefixes), default=0)
    cost += sum(len(bk) * rest[bk[0]] for bk in buckets)
    return SharingPlan(prefixes, row_prefix, share, buckets, cost)


def rows_of(input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> list[Row]:
    """The kept ``(position, token)`` pairs of each row of a batch of model inputs."""
    rows = []
    for ids, mask, pos in zip(input_ids.tolist(), attention_mask.tolist(), position_ids.tolist(), strict=True):
        rows.append(tuple((p, t) for t, m, p in zip(ids, mask, pos, strict=True) if m))
    return rows


def _pad(rows: Sequence[Row], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, position_ids, valid)`` of ``rows`` padded on the right (padding repeats a real token)."""
    width = max(len(r) for r in rows)
    ids, pos, valid = [], [], []
    for r in rows:
        pad = width - len(r)
        pos.append([p for p, _ in r] + [0] * pad)
        ids.append([t for _, t in r] + [r[0][1] if r else 0] * pad)
        valid.append([1] * len(r) + [0] * pad)

    def as_long(x: list[list[int]]) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    return as_long(ids), as_long(pos), as_long(valid)


def _cache_layers(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """Per-layer ``(keys, values)`` of a full-attention ``DynamicCache`` (None for any other cache: sliding
    windows, and hybrid layers that also hold a recurrent state, e.g. Falcon-H1's linear-attention-and-attention
    layers, which a cache rebuilt from keys and values alone would lose)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(getattr(cache, "is_sliding", [True])):
        return None
    out = []
    for layer in layers:
        if type(layer) is not DynamicLayer:
            return None
        k, v = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(k, torch.Tensor) or not isinstance(v, torch.Tensor):
            return None
        out.append((k, v))
    return out


def _cache_keyword(base: torch.nn.Module) -> str:
    """The keyword under which ``base.forward`` takes a key/value cache: ``cache`` (transformers ≥ 5.24) or the
    older ``past_key_values``."""
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def shared_prefix_states(base: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         position_ids: torch.Tensor, read: torch.Tensor) -> torch.Tensor | None:
    """Last hidden states ``[B, R, D]`` at ``read[B, R]`` (indices into each row of the given inputs, which must be
    kept tokens) computed with shared prefixes; None when sharing would not save at least ``1 − MIN_SAVING`` of
    the tokens or the model's cache is not a plain per-layer key/value cache (the caller then runs the rows
    directly)."""
    from transformers import DynamicCache

    rows = rows_of(input_ids, attention_mask, position_ids)
    plan = plan_sharing(rows)
    if not plan.prefixes or plan.cost > MIN_SAVING * input_ids.numel():
        return None
    device = input_ids.device
    # index of each read among the row's kept tokens
    kept_index = (torch.cumsum(attention_mask.long(), 1) - 1).gather(1, read)
    p_ids, p_pos, p_valid = _pad(plan.prefixes, device)
    try:
        pre = base(input_ids=p_ids, attention_mask=p_valid, position_ids=p_pos, use_cache=True)
    except (TypeError, ValueError, AttributeError):
        return None
    pre_cache = pre.get("cache") if "cache" in pre else pre.get("past_key_values")  # no eager old-name lookup
    layers = _cache_layers(pre_cache)
    if layers is None:
        return None
    p_hidden = pre.last_hidden_state  # [G, P, D]
    width = p_ids.shape[1]
    keyword = _cache_keyword(base)
    out = p_hidden.new_zeros(len(rows), read.shape[1], p_hidden.shape[-1])
    share = torch.tensor(plan.share, device=device)
    group = torch.tensor(plan.row_prefix, device=device).clamp(min=0)
    in_prefix = kept_index < share.unsqueeze(1)  # [B, R]
    if bool(in_prefix.any()):
        b, r = torch.nonzero(in_prefix, as_tuple=True)
        out[b, r] = p_hidden[group[b], kept_index[b, r]]
    for bucket in plan.buckets:
        idx = torch.tensor(bucket, device=device)
        s_ids, s_pos, s_valid = _pad([rows[b][plan.share[b] :] for b in bucket], device)
        past_mask = (torch.arange(width, device=device).unsqueeze(0) < share[idx].unsqueeze(1)).long()
        cache = DynamicCache(ddp_cache_data=[(k[group[idx]], v[group[idx]]) for k, v in layers])
        hidden = base(input_ids=s_ids, attention_mask=torch.cat([past_mask, s_valid], 1), position_ids=s_pos,
                      use_cache=True, **{keyword: cache}).last_hidden_state  # [b, S, D]
        local = kept_index[idx] - share[idx].unsqueeze(1)  # [b, R]
        mine = ~in_prefix[idx]
        if bool(mine.any()):
            bb, rr = torch.nonzero(mine, as_tuple=True)
            out[idx[bb], rr] = hidden[bb, local[bb, rr]]
    return out
