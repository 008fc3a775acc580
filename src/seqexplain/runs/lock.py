"""A lock on a run's output folder, so two runs never write into one folder at once.

:func:`lock_run_folder` takes an exclusive, non-blocking ``fcntl.flock`` on ``<folder>/.seqexplain.lock`` (the file
stays; the lock goes with the process, even when it is killed) and writes the process id and command into it. A
second run on the same folder fails at once with an :class:`~seqexplain.errors.InputError` naming the folder and,
when it can be read, the process holding it. Locks are per open file, so a process must not lock a folder it
already holds (entry points lock; library functions do not).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from seqexplain.errors import InputError

LOCK_NAME = ".seqexplain.lock"


class RunFolderLock:
    """A held lock (see :func:`lock_run_folder`); :meth:`release` or leaving the ``with`` block frees it."""

    def __init__(self, folder: Path, fd: int) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return text.splitlines()[0] if text else ""


@contextlib.contextmanager
def lock_run_folder(folder: str | os.PathLike[str], command: str | None = None) -> Iterator[RunFolderLock]:
    """Create ``folder`` if needed and hold its lock for the ``with`` block; raise :class:`InputError` at once
    when another process holds it."""
    from seqexplain.runs import output_dir

    path = output_dir(folder)
    path.mkdir(parents=True, exist_ok=True)
    lock_file = path / LOCK_NAME
    if os.path.islink(lock_file) or (lock_file.exists() and not lock_file.is_file()):
        raise InputError(f"{lock_file} is not a regular file; remove it and run again")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield RunFolderLock(path, -1)
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        who = f" ({holder})" if holder else ""
        raise InputError(f"the output folder {path} is in use by another seqexplain run{who}; wait for it to "
                         "finish or choose another --out") from None
    except OSError as exc:  # e.g. a file system without locks
        os.close(fd)
        raise InputError(f"cannot lock the output folder {path}: {exc.strerror or exc}; choose another --out") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}: {command or ' '.join(sys.argv)}\n".encode(), 0)
    held = RunFolderLock(path, fd)
    try:
        yield held
    finally:
        held.release()


__all__ = ["LOCK_NAME", "RunFolderLock", "lock_run_folder"]
