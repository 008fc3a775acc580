"""Decisions taken for many inputs in shared forwards, equal to one input at a time: how inputs are grouped into
forwards, how their rows are padded into one batch and split back (:func:`pad_rows`, :func:`split_by_part`), and
when a decision (an argmax) is too close for a shared forward's rounding and is taken again alone.

Rows of a larger batch round differently in the last float32 bits (GEMMs of other shapes sum in another order,
about 1e-6 relative), so an argmax whose two best logits lie within :data:`TIE_MARGIN` of each other (relative to
``max(1, |best|)``) could come out otherwise than in a forward of that input alone; under bf16 / fp16 autocast
(8 / 11 mantissa bits) the margin is :data:`AUTOCAST_TIE_MARGIN`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqexplain.models.example import Part

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


def pad_rows(rows: Sequence[torch.Tensor], length: int, value: float | int | bool) -> torch.Tensor:
    """Stack ``[b_k, L_k, ...]`` tensors into ``[Σb_k, length, ...]``, right-padded with ``value`` (a single tensor
    of the right length is returned as it is: no copy, no extra autograd node)."""
    if len(rows) == 1 and int(rows[0].shape[1]) == length:
        return rows[0]
    out = []
    for t in rows:
        extra = length - int(t.shape[1])
        if extra > 0:
            pad = torch.full((t.shape[0], extra, *t.shape[2:]), value, dtype=t.dtype, device=t.device)
            t = torch.cat([t, pad], dim=1)
        out.append(t)
    return torch.cat(out, dim=0)


def split_by_part(z: torch.Tensor, parts: Sequence[Part]) -> list[torch.Tensor]:
    """Rows of a shared forward's output ``[B, T_max, ...]`` back to their parts: ``[b, T, ...]`` each (``T = 1``
    for a part with ``rows_target``)."""
    sizes = [part.n_rows for part in parts]
    out = []
    for part, rows in zip(parts, z[: sum(sizes)].split(sizes), strict=True):  # one autograd node for all parts
        t = 1 if part.rows_target is not None else part.example.n_targets
        out.append(rows if t == rows.shape[1] else rows[:, :t])
    return out
