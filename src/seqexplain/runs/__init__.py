"""What every run that writes files shares: output-path checks made before the work, a lock on the output
folder (:mod:`seqexplain.runs.lock`) and the provenance recorded in results files
(:mod:`seqexplain.runs.provenance`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from seqexplain.atomic import UnsafeOutputError, check_output_dir, check_output_file
from seqexplain.errors import InputError
from seqexplain.runs.lock import RunFolderLock, lock_run_folder
from seqexplain.runs.provenance import apply_threads, command_line, current_command, recording, run_record, versions
from seqexplain.runs.warning_log import warning_log


def output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """:func:`seqexplain.atomic.check_output_file`, raising :class:`InputError`: call it before the work."""
    try:
        return check_output_file(path, what)
    except UnsafeOutputError as exc:
        raise InputError(str(exc)) from exc
    except OSError as exc:
        raise InputError(f"cannot write the {what} {path}: {exc.strerror or exc}; choose another path") from exc


def output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """:func:`seqexplain.atomic.check_output_dir`, raising :class:`InputError`: call it before the work."""
    try:
        return check_output_dir(path, what)
    except UnsafeOutputError as exc:
        raise InputError(str(exc)) from exc


def distinct_outputs(*paths: tuple[str, str | os.PathLike[str] | None]) -> None:
    """Raise :class:`InputError` when two of the ``(option, path)`` pairs name the same file (after resolving
    ``..`` and links); ``None`` paths are skipped."""
    seen: dict[Path, str] = {}
    for option, path in paths:
        if path is None:
            continue
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise InputError(f"{seen[key]} and {option} name the same file {path}; give each its own path")
        seen[key] = option


@contextlib.contextmanager
def reproduction(out_dir: str | os.PathLike[str], command: str, threads: int | None) -> Iterator[Path]:
    """What an entry point does around a run writing into ``out_dir``: check the folder, set the thread count, lock
    the folder (:func:`lock_run_folder`), name ``command`` in the results (:func:`recording`), save the warnings
    seqexplain raised to ``warnings.json`` there (:func:`~seqexplain.runs.warning_log.warning_log`), and turn a
    refused write met during the run into :class:`InputError`. Yields the folder."""
    out = output_dir(out_dir)
    apply_threads(threads)
    with lock_run_folder(out, command), recording(command), warning_log(out, command):
        try:
            yield out
        except UnsafeOutputError as exc:
            raise InputError(str(exc)) from exc


__all__ = ["RunFolderLock", "apply_threads", "command_line", "distinct_outputs", "current_command", "lock_run_folder",
           "output_dir", "output_file", "recording", "reproduction", "run_record", "versions"]
