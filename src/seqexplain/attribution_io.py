"""The attribution file format: writing, reading and validating saved documents.

:func:`save_scored` writes anything with ``scores`` and ``to_dict(include_scores)`` (an
:class:`~seqexplain.attribution.Attribution` or an :class:`~seqexplain.trace.AttributionTrace`) atomically: a
``.safetensors`` file holds the scores as a tensor and the rest as JSON metadata, any other suffix one JSON
document. :func:`read_document` reads such a file back (never unpickles). :func:`attribution_from_document`
checks an attribution document (format tag, :data:`FORMAT_VERSION`, every field's type, the scores' shape,
offsets within their text) and builds the result from it; version 1 documents (top-level ``rationales`` /
``rationale_log``, ``options["aggregated"]``) are converted, newer versions refused with a message saying to
upgrade.

Imports only :mod:`seqexplain.errors`, :mod:`seqexplain.atomic`, :mod:`seqexplain.attribution_checks` and
:mod:`seqexplain.attribution_rationale` from the package (never :mod:`seqexplain.attribution` itself).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from seqexplain.atomic import atomic_write_bytes
from seqexplain.attribution_checks import is_int, require_field
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import DataError, InputError

#: version written by :meth:`Attribution.save`; 2 moved the rationale into :class:`Rationale` and added
#: ``objective``, ``foil_tokens``, ``groups``, ``aggregation`` and ``warnings``; 3 writes ``±inf`` scores as
#: ``"inf"`` / ``"-inf"`` (versions 1 and 2 wrote them as ``null``, so they read back as NaN), and every other
#: non-finite float as ``{"$float": "nan" | "inf" | "-inf"}``, so the file is standard JSON (earlier files of this
#: version hold ``NaN`` / ``Infinity`` there, which Python also reads).
FORMAT_VERSION = 3
FORMAT_TAG = "seqexplain.attribution"

T = TypeVar("T")


def _tag_floats(value: Any) -> Any:
    """``value`` with every non-finite float written as ``{"$float": "nan" | "inf" | "-inf"}``, so that a saved
    document is standard JSON (``json.dumps`` would write ``NaN`` / ``-Infinity``, which strict readers such as
    ``jq`` or a browser's ``JSON.parse`` refuse): a ``target_logprobs`` of ``-inf``, a NaN convergence delta."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {k: _tag_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tag_floats(v) for v in value]
    return value


def _untag_floats(value: Any) -> Any:
    """The inverse of :func:`_tag_floats` (files written before it hold the floats themselves, also read)."""
    if isinstance(value, dict):
        if len(value) == 1 and value.get("$float") in ("nan", "inf", "-inf"):
            return float(value["$float"])
        return {k: _untag_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag_floats(v) for v in value]
    return value


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
    if not is_safetensors(path):
        try:
            return _untag_floats(json.loads(path.read_text(encoding="utf-8"))), None
        except (ValueError, OSError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors; deep nesting
            raise DataError(f"{path} is not a readable seqexplain {what} file: {exc}") from exc
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            names = fh.keys()
            if "seqexplain" not in meta or "scores" not in names:
                raise DataError(f"{path} is not a seqexplain {what} file (no seqexplain metadata or scores)")
            return _untag_floats(json.loads(meta["seqexplain"])), fh.get_tensor("scores")
    except (SafetensorError, ValueError, OSError, RecursionError) as exc:
        raise DataError(f"{path} is not a readable seqexplain {what} file: {exc}") from exc


def attribution_from_document(make: Callable[..., T], d: Any, scores: np.ndarray | None, source: str) -> T:
    """``make(**fields)`` for the fields of the attribution document ``d`` (``scores`` given separately for a
    safetensors file); ``source`` names the document in messages.

    Raises:
        DataError: not an attribution document (or an attribution trace), a missing, damaged or newer format
            version, or a malformed document (``make`` raising :class:`InputError`, ``TypeError``,
            ``ValueError`` or ``IndexError`` counts as malformed).
    """
    if not isinstance(d, dict):
        raise DataError(f"{source} is not a seqexplain attribution file: expected a JSON object, got "
                        f"{type(d).__name__}")
    if d.get("format") == "seqexplain.attribution_trace":
        raise DataError(f"{source} holds an AttributionTrace; load it with seqexplain.trace.AttributionTrace.load")
    if d.get("format") != FORMAT_TAG:
        raise DataError(f"{source} is not a seqexplain attribution file (missing format tag)")
    version = d.get("version")
    if not is_int(version) or version < 1:
        raise DataError(f"{source} has no valid format version ({version!r}); it is damaged or not from seqexplain")
    if version > FORMAT_VERSION:
        raise DataError(f"{source} was written by a newer seqexplain (format version {version}); upgrade "
                        "seqexplain to read it")
    d = {k: v if k == "scores" else copy.deepcopy(v) for k, v in d.items()}  # share nothing with the caller
    try:
        return make(**_fields(d, scores, version))
    except (InputError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{source} is a malformed seqexplain attribution: {exc}") from exc


def attribution_document(result: Any, include_scores: bool = True) -> dict[str, Any]:
    """The JSON document of an :class:`~seqexplain.attribution.Attribution` ``result`` (format
    :data:`FORMAT_VERSION`; a deep copy, sharing nothing with ``result``; scores as rows, NaN as ``null``,
    ``±inf`` as ``"inf"`` / ``"-inf"``; left out unless ``include_scores``)."""
    d: dict[str, Any] = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "tokens": result.tokens,
        "offsets": [None if o is None else list(o) for o in result.offsets],
        "segments": result.segments,
        "target_tokens": result.target_tokens,
        "target_positions": result.target_positions,
        "method": result.method,
        "options": result.options,
        "model_id": result.model_id,
        "model_kind": result.model_kind,
        "text": result.text,
        "target_text": result.target_text,
        "target_logprobs": result.target_logprobs,
        "objective": result.objective,
        "foil_tokens": result.foil_tokens,
        "rationale": None if result.rationale is None else result.rationale.to_dict(),
        "groups": result.groups,
        "aggregation": result.aggregation,
        "warnings": result.warnings,
        "meta": result.meta,
    }
    d = copy.deepcopy(d)  # the caller may edit the document; the result must not change with it
    if include_scores:
        d["scores"] = _scores_to_json(result.scores)
    return d


def score_to_json(value: float) -> float | str | None:
    """One score as saved JSON holds it: ``null`` for NaN, ``"inf"`` / ``"-inf"``, else the number (standard
    JSON: no ``NaN`` / ``Infinity`` literals)."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def score_from_json(value: Any) -> float:
    """The inverse of :func:`score_to_json`; :class:`InputError` for anything else (text, booleans, lists)."""
    if value is None:
        return math.nan
    if isinstance(value, str) and value in _INFINITIES:
        return _INFINITIES[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"'scores' must be rows of numbers, null (not visible) or \"inf\" / \"-inf\"; got {value!r}")
    try:
        return float(value)
    except OverflowError as exc:  # an integer beyond float range in a hand-edited file
        raise InputError(f"score {value} is too large for a float") from exc


_INFINITIES = {"inf": math.inf, "-inf": -math.inf}


def _scores_to_json(matrix: np.ndarray) -> list[list[float | str | None]]:
    return [[score_to_json(v) for v in row] for row in matrix.tolist()]


def _str_list(d: dict[str, Any], key: str) -> list[str]:
    value = require_field(d, key, list)
    if not all(isinstance(v, str) for v in value):
        raise InputError(f"'{key}' must be a list of strings")
    return list(value)


def _opt(d: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    return default if d.get(key) is None else require_field(d, key, kind)


def _fields(d: dict[str, Any], scores: np.ndarray | None, version: int) -> dict[str, Any]:
    """Constructor arguments from a checked document (:class:`InputError` on a malformed one)."""
    tokens, target_tokens = _str_list(d, "tokens"), _str_list(d, "target_tokens")
    n_t, n_l = len(target_tokens), len(tokens)
    positions = require_field(d, "target_positions", list)
    if scores is None:
        rows = require_field(d, "scores", list)
        if not all(isinstance(r, list) for r in rows):
            raise InputError("'scores' must be a list of rows of numbers (null for not visible)")
        if len(rows) != n_t or any(len(r) != n_l for r in rows):
            got = f"{len(rows)} rows of lengths {sorted({len(r) for r in rows})}"
            raise InputError(f"'scores' has {got}, expected {n_t} rows of {n_l} (targets × input tokens)")
        scores = np.array([[score_from_json(v) for v in r] for r in rows], dtype=np.float64).reshape(n_t, n_l)
    scores = np.asarray(scores)
    if scores.shape != (n_t, n_l) or not np.issubdtype(scores.dtype, np.number):
        raise InputError(f"scores have shape {scores.shape}, expected ({n_t}, {n_l}) (targets × input tokens)")
    text, target_text = _opt(d, "text", str, ""), _opt(d, "target_text", str, "")
    segments = _str_list(d, "segments") if d.get("segments") is not None else []
    offsets = _opt(d, "offsets", list, [])
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
        "offsets": offsets, "segments": segments,
        "method": _opt(d, "method", str, ""), "options": options, "model_id": _opt(d, "model_id", str, ""),
        "model_kind": _opt(d, "model_kind", str, ""), "text": text, "target_text": target_text,
        "target_logprobs": logprobs, "objective": _opt(d, "objective", str, "logprob"),
        "foil_tokens": _str_list(d, "foil_tokens") if d.get("foil_tokens") is not None else None,
        "rationale": rationale, "groups": _opt(d, "groups", dict, {}), "aggregation": aggregation,
        "warnings": _str_list(d, "warnings") if d.get("warnings") is not None else [], "meta": meta,
    }


def _json_bytes(doc: dict[str, Any]) -> bytes:
    """``doc`` as UTF-8 JSON, non-ASCII text written as itself; a string holding a lone surrogate (which UTF-8
    cannot encode) makes the whole document fall back to ``\\uXXXX`` escapes, which read back identically."""
    doc = _tag_floats(doc)
    try:
        return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, allow_nan=False).encode("ascii")


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` names a safetensors file (its suffix in any case: ``.safetensors``, ``.SAFETENSORS``)."""
    return path.suffix.lower() == ".safetensors"


def save_scored(result: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``result`` (anything with ``scores`` and ``to_dict(include_scores)``) atomically to ``path``:
    ``.safetensors`` holds the scores as a float64 tensor and the rest as JSON metadata; any other suffix one JSON
    document. A path that must not be replaced (a link, folder, FIFO, device, read-only file) or cannot be
    written is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        if is_safetensors(path):
            from safetensors.numpy import save as st_save

            meta = {"seqexplain": json.dumps(_tag_floats(result.to_dict(include_scores=False)), allow_nan=False)}
            atomic_write_bytes(path, st_save({"scores": np.ascontiguousarray(result.scores)}, metadata=meta))
        else:
            atomic_write_bytes(path, _json_bytes(result.to_dict()))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
