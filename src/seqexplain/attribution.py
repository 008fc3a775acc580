"""The result type shared by every method and consumed by every metric and report.

An :class:`Attribution` explains ``T`` target tokens (or one label) by ``L`` input positions:
``scores[i, j]`` is the contribution of input position ``j`` to target ``i``; it is NaN where position ``j``
is not visible to target ``i`` (for a causal LM, ``j >= target_positions[i]``).

The input axis is, by model kind:

* causal LM: prompt tokens, then target tokens;
* encoder-decoder: source tokens, then the decoder start token, then target tokens;
* classifier: input tokens (the single target is the label; its position is ``None``).

Each input token has a ``segment`` ("source" for text of ``text``, "target" for text of ``target_text``) and
character ``offsets`` into that segment's string (``None`` for special tokens), so word aggregation works for
any tokenizer without relying on ``▁``/``Ġ`` markers.

Files: ``save("x.json")`` writes everything as JSON (NaN as ``null``); ``save("x.safetensors")`` writes the score
matrix as a tensor and the rest as JSON metadata in the same file. Never pickle.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seqexplain.atomic import atomic_write_bytes
from seqexplain.errors import DataError, InputError, NonFiniteScoresError

Aggregation = Literal["sum", "mean", "max", "absmax"]
Normalization = Literal["none", "max_abs", "row_max_abs", "row_sum_abs"]

FORMAT_VERSION = 1


def _nan_to_none(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if not math.isfinite(v) else float(v) for v in row] for row in matrix.tolist()]


def _none_to_nan(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


@dataclass
class Attribution:
    """Scores of every input position for every target, plus everything needed to show and reuse them.

    Attributes:
        tokens: the input-axis tokens (length ``L``).
        offsets: per token, ``(start, end)`` character offsets into its segment's text, or ``None``.
        segments: per token, ``"source"`` (offsets into ``text``), ``"target"`` (into ``target_text``) or
            ``"special"``.
        target_tokens: the ``T`` targets (tokens, or the label name for a classifier).
        target_positions: per target, its index on the input axis (``None`` for a classifier label).
        scores: float array ``[T, L]``; NaN where a position is not visible to the target.
        method: registered method name; ``options``: the options it ran with.
        model_id: a name for the model (path or class name); ``model_kind``: causal / seq2seq / classifier.
        text / target_text: the strings the offsets refer to.
        target_logprobs: ``log p(target_i)`` under the full context, when known.
        rationales: per target, input positions in the order a rationale method added them.
        rationale_log: per target, per step records of a rationale method.
        meta: free-form extra information (JSON-serialisable).
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
    rationales: list[list[int]] | None = None
    rationale_log: list[list[dict[str, Any]]] | None = None
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
        self.offsets = [None if o is None else (int(o[0]), int(o[1])) for o in self.offsets]

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
        """Input positions with the ``k`` highest scores for ``target`` (visible positions only)."""
        row = self.scores[target]
        idx = [j for j in np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable") if not np.isnan(row[j])]
        return [int(j) for j in idx[:k]]

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

    def aggregate(self, how: Aggregation = "sum") -> Attribution:
        """Word-level attribution: input positions grouped by :meth:`word_groups`, scores combined with
        ``sum``, ``mean``, ``max`` or ``absmax`` (the value of largest magnitude, sign kept). NaN members are
        ignored; a group with no visible member is NaN. Targets are kept as they are; a target's position
        becomes the group that holds it. Rationales are mapped to groups (first occurrence order)."""
        groups = self.word_groups()
        n_t = self.scores.shape[0]
        out = np.full((n_t, len(groups)), np.nan)
        for g, members in enumerate(groups):
            block = self.scores[:, members]
            for i in range(n_t):
                vals = block[i][~np.isnan(block[i])]
                if vals.size == 0:
                    continue
                if how == "sum":
                    out[i, g] = vals.sum()
                elif how == "mean":
                    out[i, g] = vals.mean()
                elif how == "max":
                    out[i, g] = vals.max()
                elif how == "absmax":
                    out[i, g] = vals[np.argmax(np.abs(vals))]
                else:
                    raise InputError(f"unknown aggregation {how!r}; use sum, mean, max or absmax")
        group_of = {j: g for g, members in enumerate(groups) for j in members}
        tokens, offsets, segments = [], [], []
        for members in groups:
            first, last = members[0], members[-1]
            seg = self.segments[first]
            o_first, o_last = self.offsets[first], self.offsets[last]
            if o_first is None or o_last is None:
                tokens.append("".join(self.tokens[j] for j in members))
                offsets.append(o_first)
            else:
                text = self.text if seg == "source" else self.target_text
                start, end = o_first[0], o_last[1]
                while start < end and text[start].isspace():
                    start += 1
                while end > start and text[end - 1].isspace():
                    end -= 1
                tokens.append(text[start:end])
                offsets.append((start, end))
            segments.append(seg)
        rationales = None
        if self.rationales is not None:
            rationales = []
            for r in self.rationales:
                seen: list[int] = []
                for j in r:
                    if group_of[j] not in seen:
                        seen.append(group_of[j])
                rationales.append(seen)
        return Attribution(
            tokens=tokens,
            scores=out,
            target_tokens=list(self.target_tokens),
            target_positions=[None if p is None else group_of[p] for p in self.target_positions],
            offsets=offsets,
            segments=segments,
            method=self.method,
            options={**self.options, "aggregated": how},
            model_id=self.model_id,
            model_kind=self.model_kind,
            text=self.text,
            target_text=self.target_text,
            target_logprobs=self.target_logprobs,
            rationales=rationales,
            rationale_log=self.rationale_log,
            meta={k: v for k, v in self.meta.items() if k != "nonfinite_cells"},
        )

    # ------------------------------------------------------------ persistence
    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": "seqexplain.attribution",
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
            "rationales": self.rationales,
            "rationale_log": self.rationale_log,
            "meta": self.meta,
        }
        if include_scores:
            d["scores"] = _nan_to_none(self.scores)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], scores: np.ndarray | None = None) -> Attribution:
        if d.get("format") != "seqexplain.attribution":
            raise DataError("not a seqexplain attribution file (missing format tag)")
        if scores is None:
            scores = _none_to_nan(d["scores"]) if d["scores"] else np.zeros((len(d["target_tokens"]), 0))
        return cls(
            tokens=list(d["tokens"]),
            scores=scores.reshape(len(d["target_tokens"]), len(d["tokens"])),
            target_tokens=list(d["target_tokens"]),
            target_positions=list(d["target_positions"]),
            offsets=[None if o is None else (o[0], o[1]) for o in d["offsets"]],
            segments=list(d["segments"]),
            method=d.get("method", ""),
            options=d.get("options", {}),
            model_id=d.get("model_id", ""),
            model_kind=d.get("model_kind", ""),
            text=d.get("text", ""),
            target_text=d.get("target_text", ""),
            target_logprobs=d.get("target_logprobs"),
            rationales=d.get("rationales"),
            rationale_log=d.get("rationale_log"),
            meta=d.get("meta", {}),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save atomically. ``.safetensors`` stores the matrix as a float64 tensor with the rest as JSON
        metadata; any other suffix stores one JSON document."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors.numpy import save as st_save

            meta = {"seqexplain": json.dumps(self.to_dict(include_scores=False))}
            atomic_write_bytes(path, st_save({"scores": np.ascontiguousarray(self.scores)}, metadata=meta))
        else:
            atomic_write_bytes(path, json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Attribution:
        """Load a file written by :meth:`save` (JSON or safetensors; never unpickles)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"attribution file {path} does not exist")
        try:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="numpy") as fh:
                    meta = fh.metadata() or {}
                    scores = fh.get_tensor("scores")
                return cls.from_dict(json.loads(meta["seqexplain"]), scores=scores)
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, ValueError, TypeError, OSError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path} is not a readable seqexplain attribution file: {exc}") from exc

    def __repr__(self) -> str:
        return (
            f"Attribution(method={self.method!r}, model={self.model_id!r}, inputs={len(self.tokens)}, "
            f"targets={self.target_tokens!r})"
        )


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
