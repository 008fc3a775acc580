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

Files: ``save("x.json")`` writes everything as JSON (NaN scores as ``null``, ``±inf`` as ``"inf"`` /
``"-inf"``); ``save("x.safetensors")`` writes the score matrix as a tensor and the rest as JSON metadata in the
same file. Never pickle. Files carry a format version (:data:`FORMAT_VERSION`); version 1 files (top-level
``rationales`` / ``rationale_log``) are read and converted, version 2 files (``±inf`` written as ``null``) are
read as they are, files from a newer seqexplain are refused with a message saying to upgrade.

The parts live in their own modules: :mod:`seqexplain.attribution_rationale` (:class:`Rationale`),
:mod:`seqexplain.attribution_groups` (groupings, word groups, combining scores) and
:mod:`seqexplain.attribution_io` (the file format: :data:`FORMAT_VERSION`, reading, validating, writing).
``Rationale`` and ``FORMAT_VERSION`` are public and stay importable from this module too.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seqexplain.attribution_checks import check_aggregation, check_cells, checked_offsets, is_int
from seqexplain.attribution_groups import (
    check_grouping,
    combine_columns,
    complete_grouping,
    group_token,
    map_groupings,
    word_groups,
)
from seqexplain.attribution_io import (
    FORMAT_VERSION,
    attribution_document,
    attribution_from_document,
    read_document,
    save_scored,
)
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import InputError, NonFiniteScoresError
from seqexplain.ranking import top_k_positions

__all__ = ["AGGREGATIONS", "FORMAT_VERSION", "OBJECTIVES", "Aggregation", "Attribution", "Normalization", "Objective",
           "Rationale"]

Aggregation = Literal["sum", "mean", "max", "absmax"]
Normalization = Literal["none", "max_abs", "row_max_abs", "row_sum_abs"]
Objective = Literal["logprob", "prob", "logit", "contrast"]

AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "absmax")
OBJECTIVES: tuple[str, ...] = ("logprob", "prob", "logit", "contrast")
SEGMENTS: tuple[str, ...] = ("source", "target", "special")


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
        InputError: shapes or lengths that do not match, offsets that are not ``(start, end)`` inside their
            segment's text, a target position or rationale / group position
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
        if n_l != len(self.tokens) or n_t != len(self.target_tokens):
            raise InputError(
                f"scores shape {self.scores.shape} does not match {len(self.target_tokens)} targets × "
                f"{len(self.tokens)} input tokens"
            )
        if n_t != len(self.target_positions):
            raise InputError(f"{len(self.target_positions)} target positions for {n_t} targets; give one per target "
                             "(None for a target outside the input axis)")
        if not self.offsets:
            self.offsets = [None] * n_l
        if not self.segments:
            self.segments = ["source"] * n_l
        if len(self.offsets) != n_l or len(self.segments) != n_l:
            raise InputError(f"{len(self.offsets)} offsets and {len(self.segments)} segments for {n_l} input "
                             "tokens; give one of each per token")
        unknown = sorted({str(seg) for seg in self.segments if seg not in SEGMENTS})
        if unknown:  # words are found in a segment's text by name: another name would aggregate nothing, silently
            raise InputError(f"unknown segment(s) {', '.join(map(repr, unknown))}; a token's segment is one of "
                             f"{', '.join(SEGMENTS)}")
        self.segments = list(self.segments)
        self.offsets = checked_offsets(self.offsets, self.segments, self._texts())
        for p in self.target_positions:
            if p is not None and not (is_int(p) and 0 <= p < n_l):
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
        if not isinstance(self.meta, dict):
            raise InputError("meta must be a dict")
        check_cells(self.meta.get("nonfinite_cells", []), self.shape, 'meta["nonfinite_cells"]')
        check_aggregation(self.aggregation, AGGREGATIONS)

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
        ``none``: unchanged. Denominators are taken over the finite cells only; non-finite cells are left as
        they are (NaN stays NaN, ``±inf`` stays ``±inf``); rows without a non-zero finite cell stay unchanged.
        """
        s = self.scores.copy()
        if how == "none":
            return s
        a = np.where(np.isfinite(s), np.abs(s), 0.0)
        if how == "max_abs":
            denom = np.full(s.shape[0], a.max() if a.size else 0.0)
        elif how == "row_max_abs":
            denom = a.max(axis=1) if a.size else np.zeros(s.shape[0])
        elif how == "row_sum_abs":
            denom = a.sum(axis=1)
        else:
            raise InputError(f"unknown normalization {how!r}; use none, max_abs, row_max_abs or row_sum_abs")
        denom = np.where(denom > 0, denom, 1.0)[:, None]
        return np.where(np.isfinite(s), s / denom, s)

    def top_k(self, target: int, k: int) -> list[int]:
        """The ``k`` visible input positions ranked highest for ``target`` by
        :func:`seqexplain.ranking.rank_positions` (``+inf`` first, ``-inf`` last, ties to the lowest position);
        NaN (not visible) positions are never returned. ``target``: ``0..T-1`` (or ``-T..-1`` from the end);
        anything else is an :class:`InputError`."""
        n_t = self.shape[0]
        if not is_int(target) or not -n_t <= target < n_t:
            raise InputError(f"target {target!r} is not a target index 0..{n_t - 1}")
        row = self.scores[target]
        return top_k_positions(row, k, positions=np.flatnonzero(~np.isnan(row)))

    # ------------------------------------------------------------- aggregation
    def word_groups(self) -> list[list[int]]:
        """Groups of input positions forming one word (see :func:`seqexplain.attribution_groups.word_groups`).

        Tokens of one segment whose character spans fall inside the same whitespace-delimited word of that
        segment's text form a group; tokens without offsets (special tokens) are groups of their own.
        Offsets come from the tokenizer, so this holds for any tokenizer.
        """
        return word_groups(self.offsets, self.segments, self._texts())

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
        return complete_grouping(groups, n_l)

    def aggregate(self, how: Aggregation = "sum", by: str | Sequence[Sequence[int]] = "words") -> Attribution:
        """Scores combined over the groups of :meth:`partition` (``by``): one input position per group.

        ``how``: ``sum``, ``mean``, ``max`` or ``absmax`` (the value of largest magnitude, sign kept). NaN
        members that are not visible are ignored; a group with no visible member is NaN, and so is a group with a
        visible member whose score is NaN (a flagged non-finite cell). Every position-valued field is remapped to
        the group holding the position: ``target_positions``, the rationale's ``positions`` and each log
        record's ``added`` (duplicates dropped, first occurrence kept; ``added_tokens`` rebuilt), the cells of
        :meth:`nonfinite_cells` (an aggregated cell with a non-finite member stays flagged), and the other
        groupings in :attr:`groups` when every group of the partition lies inside one of their groups (or
        outside all of them); the others are dropped and listed in ``meta["dropped_groups"]`` (name → reason).
        A group's token is its text span when its members are contiguous, of one segment and have offsets,
        else its tokens joined (runs of a non-contiguous group joined by ``…``).

        ``options`` are left as they are (copies: the result shares nothing mutable with this one); the
        aggregation is recorded in :attr:`aggregation` (``{"how", "by"}``, plus ``"groups"`` for an explicit list
        and ``"of"`` when this result was already aggregated).

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
            out[:, g] = combine_columns(self.scores[:, members], how)
        texts = self._texts()
        cols = [group_token(members, self.tokens, self.offsets, self.segments, texts) for members in partition]
        tokens, offsets, segments = [c[0] for c in cols], [c[1] for c in cols], [c[2] for c in cols]
        groups, dropped = map_groupings(self.groups, partition, new_of)
        meta = {k: copy.deepcopy(v) for k, v in self.meta.items() if k not in ("nonfinite_cells", "dropped_groups")}
        bad = sorted({(i, new_of[j]) for i, j in self.nonfinite_cells()})
        for i, j in self.nonfinite_cells():  # a NaN score at a visible cell is not "not visible": the group is NaN
            if np.isnan(self.scores[i, j]):
                out[i, new_of[j]] = np.nan
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
            options=copy.deepcopy(self.options),
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

    def _texts(self) -> dict[str, str]:
        """The text each segment's offsets index."""
        return {"source": self.text, "target": self.target_text}

    # ------------------------------------------------------------ persistence
    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """The JSON document of :meth:`save` (format :data:`FORMAT_VERSION`; scores as rows, NaN as ``null``, ``±inf``
        as ``"inf"`` / ``"-inf"``)."""
        return attribution_document(self, include_scores)

    @classmethod
    def from_dict(cls, d: Any, scores: np.ndarray | None = None) -> Attribution:
        """Read a :meth:`to_dict` document of this or an earlier format version (``scores`` given separately
        for a safetensors file).

        Raises:
            DataError: not an attribution document, a newer format version, or a malformed document (missing
                keys, wrong types, scores of the wrong shape, offsets beyond the text, positions out of range).
        """
        return attribution_from_document(cls, d, scores, "this attribution")

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
        return attribution_from_document(cls, doc, scores, str(path))

    def __repr__(self) -> str:
        return (
            f"Attribution(method={self.method!r}, model={self.model_id!r}, inputs={len(self.tokens)}, "
            f"targets={self.target_tokens!r})"
        )

