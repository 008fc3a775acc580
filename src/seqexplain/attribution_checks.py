"""Value and document-field checks shared by the attribution modules.

* :func:`is_int` / :func:`is_bool`: Python or NumPy integers (never booleans) / booleans;
* :func:`require_field`: one key of a JSON document, present and of the expected type, else an
  :class:`~seqexplain.errors.InputError` naming the key;
* :func:`check_cells`: a list of ``[target, input]`` cells inside a score matrix;
* :func:`check_aggregation`: the aggregation record of an aggregated result (and the chain it came from);
* :func:`checked_offsets`: per-token character offsets, each inside its segment's text.

Imports only :mod:`seqexplain.errors` from the package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from seqexplain.errors import InputError


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer that is not a boolean."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_bool(value: Any) -> bool:
    """True for a Python or NumPy boolean."""
    return isinstance(value, (bool, np.bool_))


def require_field(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "document") -> Any:
    """``d[key]``; :class:`InputError` when ``key`` is missing or its value is not a ``kind``."""
    if key not in d:
        raise InputError(f"{where} has no '{key}'")
    value = d[key]
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"{where} '{key}' must be a {name}, got {type(value).__name__}")
    return value


def check_cells(cells: Any, shape: tuple[int, int], name: str) -> None:
    """Raise :class:`InputError` unless ``cells`` is a list of ``[target, input]`` integer pairs inside ``shape``."""
    if isinstance(cells, (str, bytes)) or not isinstance(cells, (list, tuple)) or not all(
            isinstance(c, (list, tuple)) and len(c) == 2 and all(is_int(v) for v in c) for c in cells):
        raise InputError(f"{name} must be a list of [target, input] integer pairs")
    bad = [list(c) for c in cells if not (0 <= c[0] < shape[0] and 0 <= c[1] < shape[1])]
    if bad:
        raise InputError(f"{name} holds the cell {bad[0]}, outside the {shape[0]} × {shape[1]} score matrix")


def check_aggregation(record: Any, hows: tuple[str, ...]) -> None:
    """Raise :class:`InputError` unless ``record`` is ``None`` or an aggregation record: a dict with ``how`` (one
    of ``hows``), ``by`` (a string) and, for an aggregation of an aggregation, ``of`` (a record itself)."""
    while record is not None:
        if not isinstance(record, dict) or record.get("how") not in hows or not isinstance(record.get("by"), str):
            raise InputError(f"aggregation must be null or {{'how': one of {', '.join(hows)}, 'by': a grouping "
                             f"name, 'of': an earlier record or null}}; got {record!r}")
        record = record.get("of")


def checked_offsets(offsets: Any, segments: list[str], texts: dict[str, str]) -> list[tuple[int, int] | None]:
    """``offsets`` as ``(start, end)`` pairs (or ``None``), one per entry of ``segments``; :class:`InputError`
    unless each is a pair of integers with ``0 <= start <= end`` and, for a segment in ``texts``, ``end`` within
    that segment's text."""
    out: list[tuple[int, int] | None] = []
    for j, (o, seg) in enumerate(zip(offsets, segments, strict=True)):
        if o is None:
            out.append(None)
            continue
        if isinstance(o, (str, bytes)) or not isinstance(o, (list, tuple)) or len(o) != 2 or not all(
                is_int(v) for v in o):
            raise InputError(f"offsets of token {j} must be [start, end] or null, got {o!r}")
        limit = len(texts[seg]) if seg in texts else None
        if not 0 <= o[0] <= o[1] or (limit is not None and o[1] > limit):
            raise InputError(f"offsets {list(o)} of token {j} lie beyond its {seg} text of {limit} characters")
        out.append((int(o[0]), int(o[1])))
    return out
