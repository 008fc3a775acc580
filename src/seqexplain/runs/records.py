"""The resumable record store of the paper recipes: one JSON object per line, appended as each is computed.

A recipe that explains examples one by one (``reproduce vafa2021 lambada``, ``reproduce eraser_movies evaluate``)
appends each finished record here and, when it runs again, skips the keys already stored, so a run stopped at any
moment loses at most the record being written. Corpus runs over a configuration use the Parquet shard store
(:mod:`seqexplain.runs.store`) instead; this one suits per-record work whose records differ in shape.

Contract:

* a record is a JSON object with a ``"key"`` (str); a later record with the same key replaces the earlier one;
* the file is standard JSON (RFC 8259): a non-finite float (NaN, ±inf) anywhere in a record is written as ``null``
  — readers treat ``null`` as a missing value — and :attr:`RecordStore.records` holds each record as it reads back
  from its line, so a record looks the same before and after a restart. Lines written by an older store with the
  non-standard tokens ``NaN`` / ``Infinity`` still load (as float NaN / inf);
* each append is flushed and ``fsync``-ed before :meth:`RecordStore.add` returns;
* a last line cut by a kill (no final newline) is dropped when the store opens — the file is cut back to its last
  complete line, so the next append starts a line of its own — and that record is redone; a line that is not JSON
  (left by an older store that appended after a cut line) is skipped with a warning and its record redone;
* ``stamp`` describes what made the records (a model, its fine-tune): :meth:`RecordStore.key` folds it and a
  method's options into the key, so a rerun with another model or other options computes afresh;
* ``settings`` (optional) guard the whole file: they are written to ``<name>.settings.json`` on first use, and a
  store whose saved settings differ is refused with an :class:`~seqexplain.errors.InputError` naming the keys that
  changed, so records of two configurations are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text, check_output_file
from seqexplain.errors import DataError, InputError, UnsafeOutputError

__all__ = ["RecordStore", "json_safe"]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf; numpy float64, a float subclass, included) replaced by
    ``None``, recursively through dicts, lists and tuples (tuples become lists, as JSON reads them back)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class RecordStore:
    """Records keyed by ``record["key"]`` in a JSON-lines file (module docstring)."""

    def __init__(self, path: str | os.PathLike[str], stamp: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.stamp = stamp or {}
        self.records: dict[str, dict[str, Any]] = {}
        try:
            check_output_file(self.path, "record store")
        except UnsafeOutputError as exc:
            raise InputError(str(exc)) from exc
        if settings is not None:
            self._check_settings(settings)
        if self.path.is_file():
            self._read()

    # ------------------------------------------------------------------ reading
    def _read(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1  # bytes up to the last newline; the rest is a cut line
        lines = data[:complete].decode("utf-8", errors="replace").splitlines()
        unreadable = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill under an older store, which appended after it
                unreadable += 1
                continue
            if not isinstance(rec, dict) or "key" not in rec:
                raise DataError(f"{self.path}, line {number}: a record is a JSON object with a 'key'; the file "
                                "was changed by another program — delete it to start over")
            self.records[str(rec["key"])] = rec
        if unreadable:
            warnings.warn(f"{self.path}: {unreadable} unreadable line(s) skipped; their records are computed again",
                          RuntimeWarning, stacklevel=3)
        if complete < len(data):  # cut the partial line, so the next append starts on a line of its own
            with self.path.open("r+b") as fh:
                fh.truncate(complete)

    def _check_settings(self, settings: dict[str, Any]) -> None:
        marker = self.path.with_name(self.path.name + ".settings.json")
        wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"{marker} is unreadable ({exc}); it was changed by another program — delete "
                                 f"{self.path.parent} to start over, or use another output folder") from None
            if saved != wanted:
                changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
                raise InputError(f"{self.path.parent} holds results made with other settings "
                                 f"({', '.join(changed)}); use another output folder or delete that one")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(marker, json.dumps(wanted, indent=2, sort_keys=True))

    # ------------------------------------------------------------------ access
    def key(self, name: str, options: Any = None) -> str:
        """``name`` plus a digest of the store's stamp and ``options`` (JSON-serialisable)."""
        payload = json.dumps({"stamp": self.stamp, "options": options}, sort_keys=True, default=str)
        return f"{name}#{hashlib.sha1(payload.encode('utf-8')).hexdigest()[:10]}"

    def __contains__(self, key: object) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def add(self, record: dict[str, Any]) -> None:
        """Append ``record`` (it must hold a ``"key"``; non-finite floats are stored as ``null``) and make it durable
        before returning."""
        if "key" not in record:
            raise ValueError("a record needs a 'key'")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(json_safe(record), sort_keys=True, allow_nan=False) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.records[str(record["key"])] = json.loads(line)  # as a restart reads it back
