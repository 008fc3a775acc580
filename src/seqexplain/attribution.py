"""The result type shared by every method and consumed by every metric and report.

An :class:`Attribution` explains ``T`` target tokens (or one label) by ``L`` input positions:
``scores[i, j]`` is the contribution of input position ``j`` to target ``i``; it is NaN where position ``j``
is not visible to target ``i`` (for a causal LM, ``j >= target_positions[i]``). ``objective`` says which
function of the target was explained (``log p``, ``p``, the logit, or ``log p(target) − log p(foil)``).

The input axis is, by model kind:

* causal LM: prompt tokens, then target tokens;
* encoder-decoder: source tokens, then the decoder start token, then target tokens;
* classifier: input tokens (the single target is the label; its position is ``None``).

Each input token has a ``segment`` ("source" for text of ``text``, "target" for text of ``target_text``) and
character ``offsets`` into that segment's string (``None`` for special tokens), so word aggregation works for
any tokenizer without relying on ``▁``/``Ġ`` markers. ``groups`` holds named groupings of input positions
(words, sentences, user spans) that :meth:`Attribution.aggregate` can combine scores over.

A rationale method adds a :class:`Rationale` part: per target, the positions in the order they were added, a
per-step log, and whether the search reached the target or hit a bound.

Files: ``save("x.json")`` writes everything as JSON (NaN scores as ``null``); ``save("x.safetensors")`` writes
the score matrix as a tensor and the rest as JSON metadata in the same file. Never pickle. Files carry a format
version (:data:`FORMAT_VERSION`); version 1 files (top-level ``rationales`` / ``rationale_log``) are read and
converted, files from a newer seqexplain are refused with a message saying to upgrade.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seqexplain.atomic import atomic_write_bytes
from seqexplain.errors import DataError, InputError, NonFiniteScoresError
from seqexplain.ranking import top_k_positions

Aggregation = Literal["sum", "mean", "max", "absmax"]
Normalization = Literal["none", "max_abs", "row_max_abs", "row_sum_abs"]
Objective = Literal["logprob", "prob", "logit", "contrast"]

#: version written by :meth:`Attribution.save`; 2 moved the rationale into :class:`Rationale` and added
#: ``objective``, ``foil_tokens``, ``groups``, ``aggregation`` and ``warnings``.
FORMAT_VERSION = 2
FORMAT_TAG = "seqexplain.attribution"
AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "absmax")
OBJECTIVES: tuple[str, ...] = ("logprob", "prob", "logit", "contrast")


def _nan_to_none(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in matrix.tolist()]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


# =========================================================================================== rationale part
@dataclass
class Rationale:
    """What a rationale method found, per target (all lists have one entry per target).

    Attributes:
        positions: input positions in the order they were added (the start set first). Empty when the search
            gave up (e.g. an exhaustive search that hit its size bound).
        reached: whether the model, shown only the rationale, predicts the target (the stopping rule was met).
        bound_hit: whether the search stopped at a bound (size, number of subsets) before it could decide.
        log: per-step records of the method (``size``, ``added`` — the positions added in the step —,
            ``added_tokens``, probabilities, ...); empty lists when the method keeps no log.
        meta: method-specific counters (forwards, rows, seconds, ...), JSON-serialisable.

    Raises:
        InputError: lists of different lengths, a non-integer or repeated position, a non-boolean flag.
    """

    positions: list[list[int]]
    reached: list[bool]
    bound_hit: list[bool] = field(default_factory=list)
    log: list[list[dict[str, Any]]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.positions)
        out: list[list[int]] = []
        for i, r in enumerate(self.positions):
            if not all(_is_int(j) for j in r):
                raise InputError(f"rationale of target {i} holds a non-integer position; use input positions")
            if len(set(r)) != len(r):
                raise InputError(f"rationale of target {i} lists a position twice; list each position once")
            out.append([int(j) for j in r])
        self.positions = out
        if not self.bound_hit:
            self.bound_hit = [False] * n
        if not self.log:
            self.log = [[] for _ in range(n)]
        for name in ("reached", "bound_hit", "log"):
            value = getattr(self, name)
            if len(value) != n:
                raise InputError(f"rationale {name} has {len(value)} entries for {n} targets; give one per target")
        if not all(_is_bool(x) for x in [*self.reached, *self.bound_hit]):
            raise InputError("rationale reached / bound_hit must be booleans (one per target)")
        self.reached = [bool(x) for x in self.reached]
        self.bound_hit = [bool(x) for x in self.bound_hit]

    @classmethod
    def from_method(cls, rationales: list[list[int]] | None, log: list[list[dict[str, Any]]] | None,
                    meta: dict[str, Any], n_targets: int) -> Rationale | None:
        """Build the part from a method's result fields (``MethodResult.rationales``, ``.rationale_log``,
        ``.meta``); ``None`` when the method gave no rationales.

        ``reached``: ``meta["reached"]`` (one flag per target) when present, else the ``reached`` of each
        target's last log record, else False. ``bound_hit``: ``meta["bound_hit"]`` lists target *indices*; a
        target whose last log record says ``bound_hit`` counts too. ``meta`` of the part: the other keys of
        ``meta``.

        Raises:
            InputError: ``rationales`` or ``log`` does not have ``n_targets`` entries, or as the constructor.
        """
        if rationales is None:
            return None
        if len(rationales) != n_targets:
            raise InputError(f"{len(rationales)} rationales for {n_targets} targets; give one per target")
        logs = [list(x) for x in log] if log is not None else [[] for _ in range(n_targets)]
        if len(logs) != n_targets:
            raise InputError(f"{len(logs)} rationale logs for {n_targets} targets; give one per target")
        if "reached" in meta:
            reached = [bool(x) for x in meta["reached"]]
        else:
            reached = [bool(steps[-1].get("reached", False)) if steps else False for steps in logs]
        hit = {int(i) for i in meta.get("bound_hit") or []}
        bound_hit = [i in hit or bool(steps and steps[-1].get("bound_hit", False)) for i, steps in enumerate(logs)]
        extra = {k: v for k, v in meta.items() if k not in ("reached", "bound_hit", "nonfinite_cells")}
        return cls(positions=[list(r) for r in rationales], reached=reached, bound_hit=bound_hit, log=logs,
                   meta=extra)

    def check_inputs(self, n_inputs: int) -> None:
        """Raise :class:`InputError` unless every position (rationales and log ``added``) is in ``0..n_inputs-1``."""
        for i, (r, steps) in enumerate(zip(self.positions, self.log, strict=True)):
            added = [j for step in steps for j in step.get("added", [])]
            if not all(_is_int(j) for j in added):
                raise InputError(f"rationale log of target {i}: 'added' holds a non-integer; use input positions")
            bad = [j for j in [*r, *added] if not 0 <= j < n_inputs]
            if bad:
                raise InputError(f"rationale of target {i} holds position {bad[0]}, outside 0..{n_inputs - 1}")

    def remapped(self, new_of: dict[int, int], tokens: list[str]) -> Rationale:
        """The part with every position ``j`` replaced by ``new_of[j]`` (duplicates dropped, first occurrence
        kept), in ``positions`` and in each log record's ``added``; ``added_tokens`` is rebuilt from ``tokens``
        (the new input axis). Other log keys (``size``, probabilities) describe the original search and are
        kept as they are."""
        log = []
        for steps in self.log:
            new_steps = []
            for step in steps:
                step = dict(step)
                if "added" in step:
                    step["added"] = _dedupe(new_of[int(j)] for j in step["added"])
                    if "added_tokens" in step:
                        step["added_tokens"] = [tokens[g] for g in step["added"]]
                new_steps.append(step)
            log.append(new_steps)
        return Rationale(positions=[_dedupe(new_of[j] for j in r) for r in self.positions],
                         reached=list(self.reached), bound_hit=list(self.bound_hit), log=log, meta=dict(self.meta))

    def to_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "reached": self.reached, "bound_hit": self.bound_hit,
                "log": self.log, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Any) -> Rationale:
        """Read :meth:`to_dict` output; :class:`InputError` when a field is missing or of the wrong type."""
        if not isinstance(d, dict):
            raise InputError("'rationale' must be an object")
        positions = _field(d, "positions", list, "rationale")
        if not all(isinstance(r, list) for r in positions):
            raise InputError("rationale 'positions' must be a list of lists of positions")
        log = d.get("log") or []
        if not isinstance(log, list) or not all(
                isinstance(s, list) and all(isinstance(x, dict) for x in s) for s in log):
            raise InputError("rationale 'log' must be a list (per target) of lists of records")
        for key in ("added", "added_tokens"):
            if any(key in x and not isinstance(x[key], list) for s in log for x in s):
                raise InputError(f"rationale log records must hold '{key}' as a list")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise InputError("rationale 'meta' must be an object")
        return cls(positions=positions, reached=_field(d, "reached", list, "rationale"),
                   bound_hit=d.get("bound_hit") or [], log=log, meta=meta)


def _dedupe(values: Any) -> list[int]:
    out: list[int] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _field(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "document") -> Any:
    if key not in d:
        raise InputError(f"{where} has no '{key}'")
    value = d[key]
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where} '{key}' must be a {name}, got {type(value).__name__}")
    return value


# ============================================================================================== groupings
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
                _is_int(j) for j in members):
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


def _complete(groups: list[list[int]], n_inputs: int) -> list[list[int]]:
    """``groups`` plus a singleton for every uncovered position, ordered by each group's first position."""
    covered = {j for g in groups for j in g}
    return sorted([*groups, *([j] for j in range(n_inputs) if j not in covered)], key=lambda g: g[0])


def _map_exactly(groups: list[list[int]], partition: list[list[int]], new_of: dict[int, int]
                 ) -> list[list[int]] | None:
    """``groups`` on the aggregated axis, or None when a block of ``partition`` straddles two of its groups
    (or one group and uncovered positions), so the mapping would not be exact."""
    owner = {j: k for k, g in enumerate(groups) for j in g}
    for block in partition:
        if len({owner.get(j, -1) for j in block}) > 1:
            return None
    return [sorted({new_of[j] for j in g}) for g in groups]


def _combine(block: np.ndarray, how: str) -> np.ndarray:
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


# ============================================================================================ the result
@dataclass
class Attribution:
    """Scores of every input position for every target, plus everything needed to show and reuse them.

    Attributes:
        tokens: the input-axis tokens (length ``L``).
        scores: float array ``[T, L]``; NaN where a position is not visible to the target.
        target_tokens: the ``T`` targets (tokens, or the label name for a classifier).
        target_positions: per target, its index on the input axis (``None`` for a classifier label).
        offsets: per token, ``(start, end)`` character offsets into its segment's text, or ``None``.
        segments: per token, ``"source"`` (offsets into ``text``), ``"target"`` (into ``target_text``) or
            ``"special"``.
        method: registered method name; ``options``: the options it ran with.
        model_id: a name for the model (path or class name); ``model_kind``: causal / seq2seq / classifier.
        text / target_text: the strings the offsets refer to.
        target_logprobs: ``log p(target_i)`` under the full context, when known.
        objective: the explained function of each target: ``"logprob"`` (``log p``), ``"prob"`` (``p``),
            ``"logit"``, or ``"contrast"`` (``log p(target) − log p(foil)``).
        foil_tokens: per target, the foil token of a ``"contrast"`` objective (required then, else ``None``).
        rationale: the :class:`Rationale` part of a rationale method, else ``None``.
        groups: named groupings of input positions (``"words"``, ``"sentences"``, user spans): each a list of
            groups, each a list of positions; groups of one grouping never overlap.
        aggregation: how this result was aggregated from a finer one (``{"how": "sum", "by": "words"}``), or
            ``None`` for a token-level result.
        warnings: human-readable warnings that every view (console, HTML, saved file) shows.
        meta: free-form extra information (JSON-serialisable).

    Raises:
        InputError: shapes or lengths that do not match, a target position or rationale / group position
            outside the input axis, an unknown objective, foil tokens missing or out of place.
    """

    tokens: list[str]
    scores: np.ndarray
    target_tokens: list[str]
    target_positions: list[int | None]
    offsets: list[tuple[int, int] | None] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    method: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    model_kind: str = ""
    text: str = ""
    target_text: str = ""
    target_logprobs: list[float] | None = None
    objective: str = "logprob"
    foil_tokens: list[str] | None = None
    rationale: Rationale | None = None
    groups: dict[str, list[list[int]]] = field(default_factory=dict)
    aggregation: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.ndim != 2:
            raise InputError(f"scores must be a [targets, inputs] matrix, got shape {self.scores.shape}")
        n_t, n_l = self.scores.shape
        if n_l != len(self.tokens) or n_t != len(self.target_tokens) or n_t != len(self.target_positions):
            raise InputError(
                f"scores shape {self.scores.shape} does not match {len(self.target_tokens)} targets × "
                f"{len(self.tokens)} input tokens"
            )
        if not self.offsets:
            self.offsets = [None] * n_l
        if not self.segments:
            self.segments = ["source"] * n_l
        if len(self.offsets) != n_l or len(self.segments) != n_l:
            raise InputError(f"{len(self.offsets)} offsets and {len(self.segments)} segments for {n_l} input "
                             "tokens; give one of each per token")
        self.offsets = [None if o is None else (int(o[0]), int(o[1])) for o in self.offsets]
        for p in self.target_positions:
            if p is not None and not (_is_int(p) and 0 <= p < n_l):
                raise InputError(f"target position {p!r} is not an input position 0..{n_l - 1} (or None)")
        self.target_positions = [None if p is None else int(p) for p in self.target_positions]
        if self.target_logprobs is not None and len(self.target_logprobs) != n_t:
            raise InputError(f"{len(self.target_logprobs)} target log-probabilities for {n_t} targets")
        self._check_objective()
        if self.rationale is not None:
            if len(self.rationale.positions) != n_t:
                raise InputError(f"the rationale covers {len(self.rationale.positions)} targets, the result {n_t}")
            self.rationale.check_inputs(n_l)
        if not isinstance(self.groups, dict) or not all(isinstance(k, str) for k in self.groups):
            raise InputError("groups must map names to groupings (lists of lists of positions)")
        self.groups = {k: check_grouping(v, n_l, f"groups[{k!r}]") for k, v in self.groups.items()}
        if isinstance(self.warnings, str) or not all(isinstance(w, str) for w in self.warnings):
            raise InputError("warnings must be a list of strings")
        self.warnings = list(self.warnings)

    def _check_objective(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown objective {self.objective!r}; use {', '.join(OBJECTIVES)}")
        if self.objective == "contrast":
            if self.foil_tokens is None or len(self.foil_tokens) != len(self.target_tokens):
                raise InputError("objective 'contrast' needs foil_tokens, one foil token per target")
            if not all(isinstance(t, str) for t in self.foil_tokens):
                raise InputError("foil_tokens must be strings")
            self.foil_tokens = list(self.foil_tokens)
        elif self.foil_tokens is not None:
            raise InputError(f"foil_tokens only apply to objective 'contrast', not {self.objective!r}; "
                             "drop them or set objective='contrast'")

    # ------------------------------------------------------------------ views
    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.scores.shape[0]), int(self.scores.shape[1]))

    def visible(self) -> np.ndarray:
        """Boolean ``[T, L]``: which positions each target can see (the non-NaN cells of a clean result)."""
        return ~np.isnan(self.scores)

    def nonfinite_cells(self) -> list[tuple[int, int]]:
        """Cells that should be finite but are not: ``±inf`` anywhere, plus the visible cells a method left
        NaN (recorded by :func:`seqexplain.explain` in ``meta["nonfinite_cells"]``; elsewhere NaN means "not
        visible")."""
        cells = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.isinf(self.scores)), strict=True)}
        cells |= {(int(i), int(j)) for i, j in self.meta.get("nonfinite_cells", [])}
        return sorted(cells)

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteScoresError` if any visible cell is NaN or infinite."""
        bad = self.nonfinite_cells()
        if bad:
            cells = ", ".join(f"(target {i}, input {j})" for i, j in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise NonFiniteScoresError(
                f"{self.method or 'the method'} produced non-finite scores at {cells}{more}. "
                "This usually means the model overflowed (try float32) or a target has probability 0."
            )

    def normalized(self, how: Normalization = "row_max_abs") -> np.ndarray:
        """A display copy of the scores.

        ``max_abs``: divide by the largest |score|; ``row_max_abs``: per target, divide by its largest |score|;
        ``row_sum_abs``: per target, divide by the sum of |scores| (rows then sum to 1 in absolute value);
        ``none``: unchanged. NaN cells stay NaN; all-zero rows stay zero.
        """
        s = self.scores.copy()
        if how == "none":
            return s
        a = np.abs(s)
        if how == "max_abs":
            m = np.nanmax(a) if np.isfinite(a).any() else 0.0
            return s / m if m > 0 else s
        if how == "row_max_abs":
            denom = np.array([np.nanmax(r) if np.isfinite(r).any() else 0.0 for r in a])
        elif how == "row_sum_abs":
            denom = np.nansum(a, axis=1)
        else:
            raise InputError(f"unknown normalization {how!r}; use none, max_abs, row_max_abs or row_sum_abs")
        denom = np.where(denom > 0, denom, 1.0)
        return s / denom[:, None]

    def top_k(self, target: int, k: int) -> list[int]:
        """The ``k`` visible input positions ranked highest for ``target`` by
        :func:`seqexplain.ranking.rank_positions` (``+inf`` first, ``-inf`` last, ties to the lowest position);
        NaN (not visible) positions are never returned."""
        row = self.scores[target]
        return top_k_positions(row, k, positions=np.flatnonzero(~np.isnan(row)))

    # ------------------------------------------------------------- aggregation
    def word_groups(self) -> list[list[int]]:
        """Groups of input positions forming one word.

        Tokens of one segment whose character spans fall inside the same whitespace-delimited word of that
        segment's text form a group; tokens without offsets (special tokens) are groups of their own.
        Offsets come from the tokenizer, so this holds for any tokenizer.
        """
        texts = {"source": self.text, "target": self.target_text}
        word_of = {seg: _word_index(text) for seg, text in texts.items()}
        keys: list[tuple[str, int] | None] = []
        blank: list[bool] = []  # tokens whose span holds only whitespace join the word that follows
        for off, seg in zip(self.offsets, self.segments, strict=True):
            key = None
            if off is not None and seg in texts:
                words = [word_of[seg][c] for c in range(off[0], off[1]) if word_of[seg].get(c) is not None]
                if words:
                    key = (seg, words[0])
            keys.append(key)
            blank.append(off is not None and key is None and off[1] > off[0])
        for j in range(len(keys) - 2, -1, -1):
            nxt = keys[j + 1]
            if blank[j] and nxt is not None and nxt[0] == self.segments[j]:
                keys[j] = nxt
        groups: list[list[int]] = []
        for j, key in enumerate(keys):
            if groups and key is not None and keys[groups[-1][-1]] == key:
                groups[-1].append(j)
            else:
                groups.append([j])
        return groups

    def partition(self, by: str | Sequence[Sequence[int]] = "words") -> list[list[int]]:
        """The groups :meth:`aggregate` combines over: the grouping ``by`` (a name in :attr:`groups`; the
        literal ``"words"``, taken from :attr:`groups` when present there, else from :meth:`word_groups`; or
        an explicit list of groups), completed so nothing is lost: **every position in no group becomes a
        group of its own** (special tokens therefore stay alone). Members sorted; groups ordered by their
        first position.

        Raises:
            InputError: an unknown name, or groups that are empty, overlap or hold positions outside
                ``0..L-1`` (see :func:`check_grouping`).
        """
        n_l = len(self.tokens)
        if isinstance(by, str):
            if by in self.groups:
                groups = self.groups[by]
            elif by == "words":
                groups = self.word_groups()
            else:
                known = ", ".join(sorted({"words", *self.groups}))
                raise InputError(f"no grouping named {by!r}; use one of {known} or pass a list of groups")
        else:
            groups = check_grouping(by, n_l, "by")
        return _complete(groups, n_l)

    def aggregate(self, how: Aggregation = "sum", by: str | Sequence[Sequence[int]] = "words") -> Attribution:
        """Scores combined over the groups of :meth:`partition` (``by``): one input position per group.

        ``how``: ``sum``, ``mean``, ``max`` or ``absmax`` (the value of largest magnitude, sign kept). NaN
        members are ignored; a group with no visible member is NaN. Every position-valued field is remapped to
        the group holding the position: ``target_positions``, the rationale's ``positions`` and each log
        record's ``added`` (duplicates dropped, first occurrence kept; ``added_tokens`` rebuilt), the cells of
        :meth:`nonfinite_cells` (an aggregated cell with a non-finite member stays flagged), and the other
        groupings in :attr:`groups` when every group of the partition lies inside one of their groups (or
        outside all of them); the others are dropped and listed in ``meta["dropped_groups"]`` (name → reason).
        A group's token is its text span when its members are contiguous, of one segment and have offsets,
        else its tokens joined (runs of a non-contiguous group joined by ``…``).

        ``options`` are left as they are; the aggregation is recorded in :attr:`aggregation`
        (``{"how", "by"}``, plus ``"groups"`` for an explicit list and ``"of"`` when this result was already
        aggregated).

        Raises:
            InputError: unknown ``how``, or as :meth:`partition`.
        """
        if how not in AGGREGATIONS:
            raise InputError(f"unknown aggregation {how!r}; use sum, mean, max or absmax")
        partition = self.partition(by)
        new_of = {j: g for g, members in enumerate(partition) for j in members}
        n_t = self.scores.shape[0]
        out = np.full((n_t, len(partition)), np.nan)
        for g, members in enumerate(partition):
            out[:, g] = _combine(self.scores[:, members], how)
        tokens, offsets, segments = [], [], []
        for members in partition:
            tok, off, seg = self._group_token(members)
            tokens.append(tok)
            offsets.append(off)
            segments.append(seg)
        groups: dict[str, list[list[int]]] = {}
        dropped: dict[str, str] = {}
        for name, grouping in self.groups.items():
            mapped = _map_exactly(grouping, partition, new_of)
            if mapped is None:
                dropped[name] = "a group of the aggregation straddles its groups, so it cannot be mapped exactly"
            else:
                groups[name] = mapped
        meta = {k: v for k, v in self.meta.items() if k not in ("nonfinite_cells", "dropped_groups")}
        bad = sorted({(i, new_of[j]) for i, j in self.nonfinite_cells()})
        if bad:
            meta["nonfinite_cells"] = [[i, g] for i, g in bad]
        dropped = {**self.meta.get("dropped_groups", {}), **dropped}
        if dropped:
            meta["dropped_groups"] = dropped
        record: dict[str, Any] = {"how": how, "by": by if isinstance(by, str) else "groups"}
        if not isinstance(by, str):
            record["groups"] = [sorted(int(j) for j in g) for g in by]
        if self.aggregation is not None:
            record["of"] = self.aggregation
        return Attribution(
            tokens=tokens,
            scores=out,
            target_tokens=list(self.target_tokens),
            target_positions=[None if p is None else new_of[p] for p in self.target_positions],
            offsets=offsets,
            segments=segments,
            method=self.method,
            options=dict(self.options),
            model_id=self.model_id,
            model_kind=self.model_kind,
            text=self.text,
            target_text=self.target_text,
            target_logprobs=None if self.target_logprobs is None else list(self.target_logprobs),
            objective=self.objective,
            foil_tokens=None if self.foil_tokens is None else list(self.foil_tokens),
            rationale=None if self.rationale is None else self.rationale.remapped(new_of, tokens),
            groups=groups,
            aggregation=record,
            warnings=list(self.warnings),
            meta=meta,
        )

    def _group_token(self, members: list[int]) -> tuple[str, tuple[int, int] | None, str]:
        """Token text, offsets and segment of one aggregated group (see :meth:`aggregate`)."""
        segs = [self.segments[j] for j in members]
        seg = segs[0] if len(set(segs)) == 1 else next((s for s in segs if s != "special"), segs[0])
        offs = [self.offsets[j] for j in members]
        contiguous = members == list(range(members[0], members[-1] + 1))
        text = {"source": self.text, "target": self.target_text}.get(seg)
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
            return "".join(self.tokens[j] for j in members), (start, end), seg
        runs: list[list[int]] = []
        for j in members:
            if runs and j == runs[-1][-1] + 1:
                runs[-1].append(j)
            else:
                runs.append([j])
        token = "…".join("".join(self.tokens[j] for j in run) for run in runs)
        return token, offs[0] if len(members) == 1 else None, seg

    # ------------------------------------------------------------ persistence
    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """The JSON document of :meth:`save` (format :data:`FORMAT_VERSION`; scores as rows, NaN as ``null``)."""
        d: dict[str, Any] = {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "tokens": self.tokens,
            "offsets": [None if o is None else list(o) for o in self.offsets],
            "segments": self.segments,
            "target_tokens": self.target_tokens,
            "target_positions": self.target_positions,
            "method": self.method,
            "options": self.options,
            "model_id": self.model_id,
            "model_kind": self.model_kind,
            "text": self.text,
            "target_text": self.target_text,
            "target_logprobs": self.target_logprobs,
            "objective": self.objective,
            "foil_tokens": self.foil_tokens,
            "rationale": None if self.rationale is None else self.rationale.to_dict(),
            "groups": self.groups,
            "aggregation": self.aggregation,
            "warnings": self.warnings,
            "meta": self.meta,
        }
        if include_scores:
            d["scores"] = _nan_to_none(self.scores)
        return d

    @classmethod
    def from_dict(cls, d: Any, scores: np.ndarray | None = None) -> Attribution:
        """Read a :meth:`to_dict` document of this or an earlier format version (``scores`` given separately
        for a safetensors file).

        Raises:
            DataError: not an attribution document, a newer format version, or a malformed document (missing
                keys, wrong types, scores of the wrong shape, offsets beyond the text, positions out of range).
        """
        return _from_document(cls, d, scores, "this attribution")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save atomically. ``.safetensors`` stores the matrix as a float64 tensor with the rest as JSON
        metadata; any other suffix stores one JSON document."""
        return save_scored(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Attribution:
        """Load a file written by :meth:`save` (JSON or safetensors; never unpickles).

        Raises:
            DataError: a missing file, or one :meth:`from_dict` refuses (the message names the file).
        """
        path = Path(path)
        doc, scores = read_document(path, "attribution")
        return _from_document(cls, doc, scores, str(path))

    def __repr__(self) -> str:
        return (
            f"Attribution(method={self.method!r}, model={self.model_id!r}, inputs={len(self.tokens)}, "
            f"targets={self.target_tokens!r})"
        )


def read_document(path: Path, what: str) -> tuple[Any, np.ndarray | None]:
    """The JSON document of a saved file and, for ``.safetensors``, its ``scores`` tensor.

    Raises:
        DataError: the file is missing or is not readable JSON / safetensors with seqexplain metadata.
    """
    if path.is_dir():
        raise DataError(f"{what} file {path} is a folder, not a file; give a file saved by seqexplain")
    if not path.exists():
        raise DataError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise DataError(f"{what} file {path} is not a regular file (a FIFO or device?); give a saved file")
    if path.suffix != ".safetensors":
        try:
            return json.loads(path.read_text(encoding="utf-8")), None
        except (ValueError, OSError) as exc:  # JSON and UTF-8 errors are ValueErrors
            raise DataError(f"{path} is not a readable seqexplain {what} file: {exc}") from exc
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            names = fh.keys()
            if "seqexplain" not in meta or "scores" not in names:
                raise DataError(f"{path} is not a seqexplain {what} file (no seqexplain metadata or scores)")
            return json.loads(meta["seqexplain"]), fh.get_tensor("scores")
    except (SafetensorError, ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable seqexplain {what} file: {exc}") from exc


def _from_document(cls: type[Attribution], d: Any, scores: np.ndarray | None, source: str) -> Attribution:
    if not isinstance(d, dict):
        raise DataError(f"{source} is not a seqexplain attribution file: expected a JSON object, got "
                        f"{type(d).__name__}")
    if d.get("format") == "seqexplain.attribution_trace":
        raise DataError(f"{source} holds an AttributionTrace; load it with seqexplain.trace.AttributionTrace.load")
    if d.get("format") != FORMAT_TAG:
        raise DataError(f"{source} is not a seqexplain attribution file (missing format tag)")
    version = d.get("version")
    if not _is_int(version) or version < 1:
        raise DataError(f"{source} has no valid format version ({version!r}); it is damaged or not from seqexplain")
    if version > FORMAT_VERSION:
        raise DataError(f"{source} was written by a newer seqexplain (format version {version}); upgrade "
                        "seqexplain to read it")
    try:
        return cls(**_fields(d, scores, version))
    except (InputError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{source} is a malformed seqexplain attribution: {exc}") from exc


def _str_list(d: dict[str, Any], key: str) -> list[str]:
    value = _field(d, key, list)
    if not all(isinstance(v, str) for v in value):
        raise InputError(f"'{key}' must be a list of strings")
    return list(value)


def _opt(d: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    return default if d.get(key) is None else _field(d, key, kind)


def _fields(d: dict[str, Any], scores: np.ndarray | None, version: int) -> dict[str, Any]:
    """Constructor arguments from a checked document (:class:`InputError` on a malformed one)."""
    tokens, target_tokens = _str_list(d, "tokens"), _str_list(d, "target_tokens")
    n_t, n_l = len(target_tokens), len(tokens)
    positions = _field(d, "target_positions", list)
    if scores is None:
        rows = _field(d, "scores", list)
        if not all(isinstance(r, list) and all(v is None or isinstance(v, (int, float)) and not isinstance(
                v, bool) for v in r) for r in rows):
            raise InputError("'scores' must be a list of rows of numbers (null for not visible)")
        if len(rows) != n_t or any(len(r) != n_l for r in rows):
            got = f"{len(rows)} rows of lengths {sorted({len(r) for r in rows})}"
            raise InputError(f"'scores' has {got}, expected {n_t} rows of {n_l} (targets × input tokens)")
        scores = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
        scores = scores.reshape(n_t, n_l)
    scores = np.asarray(scores)
    if scores.shape != (n_t, n_l) or not np.issubdtype(scores.dtype, np.number):
        raise InputError(f"scores have shape {scores.shape}, expected ({n_t}, {n_l}) (targets × input tokens)")
    text, target_text = _opt(d, "text", str, ""), _opt(d, "target_text", str, "")
    segments = _str_list(d, "segments") if d.get("segments") is not None else []
    offsets = _opt(d, "offsets", list, [])
    if offsets:
        _check_offsets(offsets, segments or ["source"] * len(offsets), {"source": text, "target": target_text})
    options = dict(_opt(d, "options", dict, {}))
    meta = _opt(d, "meta", dict, {})
    if version == 1:
        aggregation = {"how": options.pop("aggregated"), "by": "words"} if "aggregated" in options else None
        rats, log = _opt(d, "rationales", list, None), _opt(d, "rationale_log", list, None)
        rationale = Rationale.from_method(rats, log, meta, n_t)
    else:
        aggregation = _opt(d, "aggregation", dict, None)
        rationale = None if d.get("rationale") is None else Rationale.from_dict(d["rationale"])
    logprobs = _opt(d, "target_logprobs", list, None)
    if logprobs is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logprobs):
        raise InputError("'target_logprobs' must be a list of numbers")
    return {
        "tokens": tokens, "scores": scores, "target_tokens": target_tokens, "target_positions": list(positions),
        "offsets": [None if o is None else (o[0], o[1]) for o in offsets], "segments": segments,
        "method": _opt(d, "method", str, ""), "options": options, "model_id": _opt(d, "model_id", str, ""),
        "model_kind": _opt(d, "model_kind", str, ""), "text": text, "target_text": target_text,
        "target_logprobs": logprobs, "objective": _opt(d, "objective", str, "logprob"),
        "foil_tokens": _str_list(d, "foil_tokens") if d.get("foil_tokens") is not None else None,
        "rationale": rationale, "groups": _opt(d, "groups", dict, {}), "aggregation": aggregation,
        "warnings": _str_list(d, "warnings") if d.get("warnings") is not None else [], "meta": meta,
    }


def _check_offsets(offsets: list[Any], segments: list[str], texts: dict[str, str]) -> None:
    if len(offsets) != len(segments):
        raise InputError(f"{len(offsets)} offsets for {len(segments)} segments")
    for j, (o, seg) in enumerate(zip(offsets, segments, strict=True)):
        if o is None:
            continue
        if not (isinstance(o, list) and len(o) == 2 and all(_is_int(v) for v in o)):
            raise InputError(f"offsets of token {j} must be [start, end] or null, got {o!r}")
        limit = len(texts[seg]) if seg in texts else None
        if not 0 <= o[0] <= o[1] or (limit is not None and o[1] > limit):
            raise InputError(f"offsets {o} of token {j} lie beyond its {seg} text of {limit} characters")


def save_scored(result: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` (anything with ``scores`` and ``to_dict(include_scores)``) atomically to ``path``:
    ``.safetensors`` holds the scores as a float64 tensor and the rest as JSON metadata; any other suffix one JSON
    document. A path that must not be replaced (a link, folder, FIFO, device, read-only file) or cannot be
    written is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import save as st_save

            meta = {"seqexplain": json.dumps(result.to_dict(include_scores=False))}
            atomic_write_bytes(path, st_save({"scores": np.ascontiguousarray(result.scores)}, metadata=meta))
        else:
            atomic_write_bytes(path, json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _word_index(text: str) -> dict[int, int | None]:
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
