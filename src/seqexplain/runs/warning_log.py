"""The warnings seqexplain raised during a run, saved beside its results.

A reproduction's analyses warn through Python's :mod:`warnings` (a gradient store that lost values to float16, a
singular covariance, a stream whose tail no row reached, ...). The console shows them as they come, but a results
folder read later would not hold them. :func:`warning_log` records every warning issued from seqexplain's own
modules while it is active (each distinct message once, in order, and shown on the console once) and, when the run
finishes, writes them to ``<folder>/warnings.json``: ``{"command": ..., "warnings": ["Category: message", ...]}``,
an empty list when there were none (so a finished rerun never leaves an earlier run's warnings standing; a refused
or failed one leaves the file as it was, beside the results it belongs to).
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text

_PACKAGE = Path(__file__).resolve().parents[1]
_ACTIVE: list[list[str]] = []  # the logs of the warning_log blocks now open, innermost last


def from_seqexplain(filename: str) -> bool:
    """Whether a warning issued in ``filename`` comes from seqexplain's own modules."""
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def warning_log(folder: Path, command: str) -> Iterator[list[str]]:
    """Record seqexplain's warnings while active and write ``folder/warnings.json`` at the end (module docstring).
    Yields the list of recorded messages."""
    seen: list[str] = []
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = f"{category.__name__}: {message}"
        if from_seqexplain(filename):
            if text in seen:  # shown already (a data file read twice, a filter reset by catch_warnings): once
                return
            seen.append(text)
        shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores the filters and showwarning on the way out
        warnings.filterwarnings("default", module="seqexplain")  # each place once, earlier showings forgotten
        warnings.showwarning = show
        _ACTIVE.append(seen)
        try:
            yield seen
        finally:
            _ACTIVE.remove(seen)
    if folder.is_dir():  # only after a run that finished: a refused or failed one leaves the folder's file as it was
        atomic_write_text(folder / "warnings.json", json.dumps({"command": command, "warnings": seen}, indent=1))


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def tally_warnings(per_doc: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each distinct warning of the documents' explanations → the number of documents that carry it. Warnings that
    differ only in their figures (an integrated-gradients completeness miss names each document's δ) count as one,
    shown with the first document's figures and a note that the others' differ."""
    first: dict[str, str] = {}
    varied: set[str] = set()
    counts = Counter[str]()
    for messages in per_doc:
        shapes = set()
        for msg in messages:
            shape = _NUMBER.sub("#", msg)
            if shape not in first:
                first[shape] = msg
            elif first[shape] != msg:
                varied.add(shape)
            shapes.add(shape)
        counts.update(shapes)
    return {first[k] + (" (the figures are the first such document's; the others' differ)" if k in varied else ""): n
            for k, n in counts.items()}


def log_result_warnings(source: str, messages: list[str]) -> None:
    """Add a result's own warnings (``Attribution.warnings``, which the views already show) to the open
    :func:`warning_log`, as ``"ResultWarning: <source>: <message>"``, so that ``warnings.json`` does not read as
    "no warnings" beside results that carry some; nothing when no log is open."""
    if _ACTIVE:
        for message in messages:
            text = f"ResultWarning: {source}: {message}"
            if text not in _ACTIVE[-1]:
                _ACTIVE[-1].append(text)


__all__ = ["from_seqexplain", "log_result_warnings", "tally_warnings", "warning_log"]
