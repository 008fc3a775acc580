"""Groupings of input positions, and the helpers :meth:`~seqexplain.attribution.Attribution.aggregate` uses.

A *grouping* is a list of groups, each a non-empty list of distinct input positions; groups never overlap
(:func:`check_grouping`). This module holds:

* :func:`check_grouping`: validate a grouping; :func:`complete_grouping`: add a singleton for every uncovered
  position; :func:`map_grouping_exactly` (:func:`map_groupings` for named ones): carry a grouping onto an
  aggregated axis when that is exact;
* :func:`word_index` / :func:`word_groups`: whitespace-delimited words from character offsets (any tokenizer);
* :func:`combine_columns`: combine the scores of one group (sum, mean, max, absmax; NaN ignored);
* :func:`group_token`: the token text, offsets and segment of one aggregated group.

Imports only :mod:`seqexplain.errors` and :mod:`seqexplain.attribution_checks` from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqexplain.attribution_checks import is_int
from seqexplain.errors import InputError

Offsets = tuple[int, int] | None


def check_grouping(groups: Any, n_inputs: int, name: str = "groups") -> list[list[int]]:
    """Validate a grouping of input positions and return it with each group's members sorted.

    A grouping is a list of groups, each a non-empty list of distinct positions in ``0..n_inputs-1``; no
    position may be in two groups. Positions in no group are allowed (see :meth:`Attribution.partition`).

    Raises:
        InputError: a one-line message naming the first problem (empty group, position outside the input,
            overlapping groups, non-integer position).
    """
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Sequence):
        raise InputError(f"{name} must be a list of groups (lists of positions); got {type(groups).__name__}")
    owner: dict[int, int] = {}
    out: list[list[int]] = []
    for g, members in enumerate(groups):
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or not all(
                is_int(j) for j in members):
            raise InputError(f"{name}: group {g} must be a list of integer positions")
        if not members:
            raise InputError(f"{name}: group {g} is empty; remove empty groups")
        for j in members:
            j = int(j)
            if not 0 <= j < n_inputs:
                raise InputError(f"{name}: group {g} holds position {j}, outside 0..{n_inputs - 1}; "
                                 "use positions of the input axis")
            if j in owner:
                where = "twice in group" if owner[j] == g else f"in groups {owner[j]} and"
                raise InputError(f"{name}: position {j} is {where} {g}; groups must not overlap "
                                 "(merge them or take the position out of one)")
            owner[j] = g
        out.append(sorted(int(j) for j in members))
    return out


def complete_grouping(groups: list[list[int]], n_inputs: int) -> list[list[int]]:
    """``groups`` plus a singleton for every uncovered position, ordered by each group's first position."""
    covered = {j for g in groups for j in g}
    return sorted([*groups, *([j] for j in range(n_inputs) if j not in covered)], key=lambda g: g[0])


def map_grouping_exactly(groups: list[list[int]], partition: list[list[int]], new_of: dict[int, int]
                         ) -> list[list[int]] | None:
    """``groups`` on the aggregated axis, or None when a block of ``partition`` straddles two of its groups
    (or one group and uncovered positions), so the mapping would not be exact."""
    owner = {j: k for k, g in enumerate(groups) for j in g}
    for block in partition:
        if len({owner.get(j, -1) for j in block}) > 1:
            return None
    return [sorted({new_of[j] for j in g}) for g in groups]


def map_groupings(groupings: dict[str, list[list[int]]], partition: list[list[int]], new_of: dict[int, int]
                  ) -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """Each named grouping mapped onto the aggregated axis (:func:`map_grouping_exactly`), and the names of those
    that cannot be mapped exactly with the reason."""
    mapped: dict[str, list[list[int]]] = {}
    dropped: dict[str, str] = {}
    for name, grouping in groupings.items():
        got = map_grouping_exactly(grouping, partition, new_of)
        if got is None:
            dropped[name] = "a group of the aggregation straddles its groups, so it cannot be mapped exactly"
        else:
            mapped[name] = got
    return mapped, dropped


def combine_columns(block: np.ndarray, how: str) -> np.ndarray:
    """Combine ``block[T, m]`` over its columns ignoring NaN; NaN where a row has no visible member."""
    seen = ~np.isnan(block)
    count = seen.sum(axis=1)
    out = np.full(block.shape[0], np.nan)
    has = count > 0
    if not has.any():
        return out
    b, s = block[has], seen[has]
    with np.errstate(invalid="ignore"):  # inf - inf is NaN: the cell stays flagged through nonfinite_cells
        if how == "sum":
            out[has] = np.where(s, b, 0.0).sum(axis=1)
        elif how == "mean":
            out[has] = np.where(s, b, 0.0).sum(axis=1) / count[has]
        elif how == "max":
            out[has] = np.where(s, b, -np.inf).max(axis=1)
        else:  # absmax: the member of largest magnitude, sign kept; ties to the first member
            idx = np.where(s, np.abs(b), -1.0).argmax(axis=1)
            out[has] = b[np.arange(b.shape[0]), idx]
    return out


def word_index(text: str) -> dict[int, int | None]:
    """Map each character index to the index of the whitespace-delimited word holding it (None: space)."""
    out: dict[int, int | None] = {}
    wid, prev_space = -1, True
    for c, ch in enumerate(text):
        if ch.isspace():
            out[c], prev_space = None, True
            continue
        if prev_space:
            wid, prev_space = wid + 1, False
        out[c] = wid
    return out


def word_groups(offsets: Sequence[Offsets], segments: Sequence[str], texts: dict[str, str]) -> list[list[int]]:
    """Groups of input positions forming one word.

    Tokens of one segment whose character spans fall inside the same whitespace-delimited word of that
    segment's text form a group; tokens without offsets (special tokens) are groups of their own.
    Offsets come from the tokenizer, so this holds for any tokenizer. ``offsets`` and ``segments``: one per
    input position; ``texts``: segment name -> the text its offsets index (``"source"``, ``"target"``).
    """
    word_of = {seg: word_index(text) for seg, text in texts.items()}
    keys: list[tuple[str, int] | None] = []
    blank: list[bool] = []  # tokens whose span holds only whitespace join the word that follows
    for off, seg in zip(offsets, segments, strict=True):
        key = None
        if off is not None and seg in texts:
            words = [word_of[seg][c] for c in range(off[0], off[1]) if word_of[seg].get(c) is not None]
            if words:
                key = (seg, words[0])
        keys.append(key)
        blank.append(off is not None and key is None and off[1] > off[0])
    for j in range(len(keys) - 2, -1, -1):
        nxt = keys[j + 1]
        if blank[j] and nxt is not None and nxt[0] == segments[j]:
            keys[j] = nxt
    groups: list[list[int]] = []
    for j, key in enumerate(keys):
        if groups and key is not None and keys[groups[-1][-1]] == key:
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


def group_token(members: list[int], tokens: Sequence[str], offsets: Sequence[Offsets], segments: Sequence[str],
                texts: dict[str, str]) -> tuple[str, Offsets, str]:
    """Token text, offsets and segment of one aggregated group (see :meth:`Attribution.aggregate`): the group's
    text span (whitespace trimmed) when its ``members`` are contiguous, of one segment and have offsets, else its
    tokens joined (runs of a non-contiguous group joined by ``…``). ``texts``: segment name -> its text."""
    segs = [segments[j] for j in members]
    seg = segs[0] if len(set(segs)) == 1 else next((s for s in segs if s != "special"), segs[0])
    offs = [offsets[j] for j in members]
    contiguous = members == list(range(members[0], members[-1] + 1))
    text = texts.get(seg)
    if len(set(segs)) == 1 and contiguous and text is not None and all(o is not None for o in offs):
        start = min(o[0] for o in offs if o is not None)
        end = max(o[1] for o in offs if o is not None)
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            return text[s:e], (s, e), seg
        return "".join(tokens[j] for j in members), (start, end), seg
    runs: list[list[int]] = []
    for j in members:
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    token = "…".join("".join(tokens[j] for j in run) for run in runs)
    return token, offs[0] if len(members) == 1 else None, seg
