"""Attributions with extra named axes: one score matrix per layer, head, checkpoint, ...

An :class:`AttributionTrace` holds ``scores[*extra, T, L]`` whose leading axes are named by ``axes`` (e.g.
``["layer", "head"]`` or ``["checkpoint"]``), optional ``labels`` per axis (``{"checkpoint": [100, 200]}``),
and a ``base`` :class:`~seqexplain.attribution.Attribution` carrying every other field (tokens, targets,
offsets, method, rationale, warnings, ...). Fixing every extra axis with :meth:`AttributionTrace.select`, or
averaging them away with :meth:`AttributionTrace.mean`, gives a plain :class:`Attribution`.

Files: ``save("x.safetensors")`` stores the ``[*extra, T, L]`` tensor with the rest as JSON metadata;
any other suffix stores one JSON document (NaN scores as ``null``, ``±inf`` as ``"inf"`` / ``"-inf"``, like
:class:`Attribution`; version 1 wrote ``±inf`` as ``null`` too).

This module imports only :mod:`seqexplain.attribution`, :mod:`seqexplain.attribution_io` and the leaf modules
(errors, atomic).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.attribution import Attribution
from seqexplain.attribution_io import read_document, save_scored, score_from_json, score_to_json
from seqexplain.errors import DataError, InputError

TRACE_FORMAT_TAG = "seqexplain.attribution_trace"
TRACE_FORMAT_VERSION = 2

Label = str | int


def _nanmean(scores: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN; NaN where every value is NaN (no warning)."""
    seen = ~np.isnan(scores)
    count = seen.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.where(seen, scores, 0.0).sum(axis=axis)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _is_label(value: Any) -> bool:
    return isinstance(value, (str, int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass
class AttributionTrace:
    """Scores with extra named axes in front of ``[T, L]``.

    Attributes:
        base: the attribution whose fields every slice shares; its ``scores`` are replaced by the mean over all
            extra axes (NaN ignored), so they are a summary that is never stale.
        scores: float array ``[*extra, T, L]`` with ``extra`` named by ``axes`` and ``[T, L]`` as ``base``.
        axes: names of the extra axes, in order (distinct, non-empty; at least one).
        labels: per axis, optional labels of its entries (strings or integers, one per entry); an axis
            without labels is labelled by index.

    Raises:
        InputError: shapes that do not match, repeated or empty axis names, labels of the wrong length or type.
    """

    base: Attribution
    scores: np.ndarray
    axes: list[str]
    labels: dict[str, list[Label]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.axes = list(self.axes)
        if not self.axes or not all(isinstance(a, str) and a for a in self.axes) or len(set(self.axes)) != len(
                self.axes):
            raise InputError(f"axes must be distinct non-empty names, at least one; got {self.axes!r}")
        if self.scores.ndim != len(self.axes) + 2 or self.scores.shape[-2:] != self.base.shape:
            raise InputError(f"scores of shape {self.scores.shape} do not match axes {self.axes} followed by "
                             f"the base's [targets, inputs] {self.base.shape}")
        if 0 in self.scores.shape[: len(self.axes)]:
            raise InputError(f"every extra axis needs at least one entry; got shape {self.scores.shape}")
        unknown = sorted(set(self.labels) - set(self.axes))
        if unknown:
            raise InputError(f"labels for unknown axes {unknown}; the axes are {self.axes}")
        for axis, values in self.labels.items():
            n = self.size(axis)
            if len(values) != n or not all(_is_label(v) for v in values):
                raise InputError(f"labels of axis {axis!r} must be {n} strings or integers, one per entry")
        self.labels = {a: [v if isinstance(v, str) else int(v) for v in vs] for a, vs in self.labels.items()}
        summary = _nanmean(self.scores, tuple(range(len(self.axes))))
        self.base = dataclasses.replace(self.base, scores=summary)

    # ---------------------------------------------------------------- views
    def size(self, axis: str) -> int:
        """Number of entries along the extra axis ``axis``."""
        return int(self.scores.shape[self._axis(axis)])

    def label(self, axis: str, index: int) -> Label:
        """The label of entry ``index`` of ``axis`` (the index itself when the axis has no labels)."""
        return self.labels[axis][index] if axis in self.labels else int(index)

    def index(self, axis: str, label: Label) -> int:
        """The entry of ``axis`` labelled ``label``; :class:`InputError` when there is none."""
        values = self.labels.get(axis, list(range(self.size(axis))))
        if label not in values:
            raise InputError(f"axis {axis!r} has no entry labelled {label!r}; its labels are {values}")
        return values.index(label)

    def _axis(self, axis: str) -> int:
        if axis not in self.axes:
            raise InputError(f"no axis {axis!r}; the axes are {', '.join(self.axes)}")
        return self.axes.index(axis)

    def select(self, **indices: int) -> Attribution | AttributionTrace:
        """Fix extra axes to one entry each, by index (``-n..n-1``), e.g. ``select(layer=3, head=0)``.

        Returns a plain :class:`Attribution` when every extra axis is fixed (its ``meta["trace"]`` records
        the labels chosen), else an :class:`AttributionTrace` over the remaining axes.

        Raises:
            InputError: an unknown axis or an index out of range. Use :meth:`index` to select by label.
        """
        chosen: dict[str, Label] = {}
        where: list[Any] = [slice(None)] * len(self.axes)
        for axis, k in indices.items():
            n = self.size(axis)
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -n <= k < n:
                raise InputError(f"index {k!r} of axis {axis!r} is outside 0..{n - 1}")
            where[self._axis(axis)] = int(k) % n
            chosen[axis] = self.label(axis, int(k) % n)
        return self._finish(self.scores[tuple(where)], [a for a in self.axes if a not in indices],
                            {"selected": chosen})

    def mean(self, axis: str) -> Attribution | AttributionTrace:
        """Average over the extra axis ``axis`` (NaN ignored; NaN where every entry is NaN).

        A ``[target, input]`` cell whose entries held ``+inf`` and ``-inf`` averages to NaN; it is added to the
        base's ``meta["nonfinite_cells"]`` so it stays flagged (in every slice of a remaining trace).

        Returns a plain :class:`Attribution` when no extra axis remains, else an :class:`AttributionTrace`."""
        k = self._axis(axis)
        scores = _nanmean(self.scores, k)
        lost = (np.isnan(scores) & (~np.isnan(self.scores)).any(axis=k)).reshape(-1, *self.base.shape).any(axis=0)
        flagged = [[int(i), int(j)] for i, j in np.argwhere(lost)]
        return self._finish(scores, [a for a in self.axes if a != axis], {"mean_over": [axis]}, flagged)

    def _finish(self, scores: np.ndarray, remaining: list[str], step: dict[str, Any],
                flagged: list[list[int]] | None = None) -> Attribution | AttributionTrace:
        history = dict(self.base.meta.get("trace", {}))
        for key, value in step.items():
            old = history.get(key)
            history[key] = {**(old or {}), **value} if isinstance(value, dict) else [*(old or []), *value]
        meta = {**self.base.meta, "trace": history}
        if flagged:
            cells = {tuple(c) for c in [*meta.get("nonfinite_cells", []), *flagged]}
            meta["nonfinite_cells"] = [list(c) for c in sorted(cells)]
        if not remaining:
            return dataclasses.replace(self.base, scores=scores, meta=meta)
        return AttributionTrace(base=dataclasses.replace(self.base, meta=meta), scores=scores, axes=remaining,
                                labels={a: v for a, v in self.labels.items() if a in remaining})

    # ---------------------------------------------------------- persistence
    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """The JSON document of :meth:`save` (scores nested ``[*extra, T, L]``, NaN as ``null``, ``±inf`` as
        ``"inf"`` / ``"-inf"``)."""
        d: dict[str, Any] = {
            "format": TRACE_FORMAT_TAG,
            "version": TRACE_FORMAT_VERSION,
            "axes": self.axes,
            "labels": self.labels,
            "shape": list(self.scores.shape),
            "attribution": self.base.to_dict(include_scores=False),
        }
        if include_scores:
            flat = [score_to_json(v) for v in self.scores.ravel().tolist()]
            d["scores"] = np.array(flat, dtype=object).reshape(self.scores.shape).tolist()
        return d

    @classmethod
    def from_dict(cls, d: Any, scores: np.ndarray | None = None) -> AttributionTrace:
        """Read :meth:`to_dict` output (``scores`` given separately for a safetensors file).

        Raises:
            DataError: not a trace document, a newer format version, or a malformed one.
        """
        return _from_document(cls, d, scores, "this attribution trace")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save atomically: ``.safetensors`` (the tensor plus JSON metadata) or JSON for any other suffix."""
        return save_scored(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AttributionTrace:
        """Load a file written by :meth:`save`; :class:`DataError` (naming the file) when it cannot."""
        path = Path(path)
        doc, scores = read_document(path, "attribution trace")
        return _from_document(cls, doc, scores, str(path))

    def __repr__(self) -> str:
        dims = ", ".join(f"{a}={self.size(a)}" for a in self.axes)
        return f"AttributionTrace({dims}, base={self.base!r})"


def _from_document(cls: type[AttributionTrace], d: Any, scores: np.ndarray | None, source: str
                   ) -> AttributionTrace:
    if not isinstance(d, dict) or d.get("format") != TRACE_FORMAT_TAG:
        raise DataError(f"{source} is not a seqexplain attribution trace (missing format tag)")
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DataError(f"{source} has no valid format version ({version!r}); it is damaged or not from seqexplain")
    if version > TRACE_FORMAT_VERSION:
        raise DataError(f"{source} was written by a newer seqexplain (trace format version {version}); upgrade "
                        "seqexplain to read it")
    try:
        axes, labels, shape = d["axes"], d.get("labels") or {}, d["shape"]
        if not isinstance(axes, list) or not isinstance(labels, dict) or not isinstance(shape, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape):
            raise InputError("'axes' and 'shape' must be lists and 'labels' an object")
        if scores is None:
            nested = np.array(d["scores"], dtype=object)
            if nested.shape != tuple(shape):
                raise InputError(f"'scores' must be numbers (or null) of shape {shape}, got shape {nested.shape}")
            scores = np.array([score_from_json(v) for v in nested.ravel()], dtype=np.float64)
            scores = scores.reshape(shape)
        elif tuple(np.shape(scores)) != tuple(shape):
            raise InputError(f"the scores tensor has shape {np.shape(scores)}, the metadata says {shape}")
        if len(shape) < 2:
            raise InputError(f"shape {shape} has no [targets, inputs] axes")
        doc = d["attribution"]
        base = Attribution.from_dict(doc, scores=np.zeros(tuple(shape[-2:])))
        return cls(base=base, scores=scores, axes=axes, labels=labels)
    except DataError as exc:  # the embedded attribution document
        raise DataError(f"{source}: {exc}") from exc
    except KeyError as exc:
        raise DataError(f"{source} is a malformed attribution trace: missing {exc}") from exc
    except (InputError, TypeError, ValueError) as exc:
        raise DataError(f"{source} is a malformed attribution trace: {exc}") from exc
