"""Decisions taken for many inputs in shared forwards, equal to one input at a time: how inputs are grouped into
forwards, and when a decision (an argmax) is too close for a shared forward's rounding and is taken again alone.

Rows of a larger batch round differently in the last float32 bits (GEMMs of other shapes sum in another order,
about 1e-6 relative), so an argmax whose two best logits lie within :data:`TIE_MARGIN` of each other (relative to
``max(1, |best|)``) could come out otherwise than in a forward of that input alone; under bf16 / fp16 autocast
(8 / 11 mantissa bits) the margin is :data:`AUTOCAST_TIE_MARGIN`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

TIE_MARGIN = 1e-4
AUTOCAST_TIE_MARGIN = 5e-2


def tie_margin(autocast: torch.dtype | None) -> float:
    """The relative margin below which a shared forward's argmax is taken again alone."""
    return TIE_MARGIN if autocast is None else AUTOCAST_TIE_MARGIN


def near_tie(row: torch.Tensor, margin: float) -> bool:
    """Whether the two largest values of ``row`` lie within ``margin · max(1, |largest|)`` of each other."""
    if row.numel() < 2:
        return False
    best = row.float().topk(2).values
    return float(best[0] - best[1]) <= margin * max(1.0, abs(float(best[0])))


def consecutive_groups(costs: Sequence[int], limit: int) -> list[list[int]]:
    """Indices ``0..n-1`` in order, cut into consecutive groups whose costs sum to at most ``limit`` (at least one
    index each: a cost above the limit is a group of its own)."""
    groups: list[list[int]] = []
    used = 0
    for k, cost in enumerate(costs):
        if groups and used + cost <= limit:
            groups[-1].append(k)
            used += cost
        else:
            groups.append([k])
            used = cost
    return groups


def length_groups(lengths: Sequence[int], limit: int) -> list[list[int]]:
    """Indices sorted by length and cut into consecutive groups of at most ``limit`` tokens (at least one index
    each, :func:`consecutive_groups`): the inputs of one shared forward each, with little padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [[order[i] for i in group] for group in consecutive_groups([lengths[k] for k in order], limit)]
