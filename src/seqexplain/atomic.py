"""Atomic file writes that never destroy what is not a plain file.

Data is written to a temporary file in the destination folder, given the mode of the file it replaces (or the
usual ``0666`` less the umask for a new file; ``mkstemp`` alone would leave ``0600``), then ``os.replace``-d into
place, so a reader never sees a half-written file.

The rule for what may be replaced (:func:`check_output_file`): only a *regular file* the user can write, or
nothing. A symbolic link (even one to a regular file), a directory, a FIFO, a socket or a device node is refused
with an :class:`UnsafeOutputError` (an ``OSError``) before anything is written, and so is a read-only file: an atomic
replace would otherwise turn ``/dev/full`` into a JSON file, cut a link, or ignore a file the user protected.
Output *folders* (:func:`check_output_dir`) must be folders (a link to a folder is followed) or not exist yet.

Like :mod:`seqexplain.errors`, this module imports nothing from the package, so every layer may use it;
:mod:`seqexplain.runs` turns its refusals into :class:`~seqexplain.errors.InputError` for checks made up front.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from seqexplain.errors import UnsafeOutputError

__all__ = ["UnsafeOutputError"]


def default_file_mode() -> int:
    """The mode a new file gets under the process umask (0o644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def special_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a FIFO (named pipe)", "a
    device", "a socket"), for an error that says so rather than "not found"; None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else _kind(mode)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder the user can write into."""
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UnsafeOutputError(f"cannot write the {what} {path}: {parent} is not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UnsafeOutputError(f"cannot write the {what} {path}: the folder {parent} is not writable; choose another "
                                "path or change its permissions")
    try:  # what access() cannot see (a read-only or virtual file system, e.g. /proc): make and remove a file there
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".seqexplain-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UnsafeOutputError(f"cannot write the {what} {path}: no file can be made in {parent} "
                                f"({exc.strerror or exc}); choose another path") from exc


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Raise :class:`UnsafeOutputError` unless ``path`` can be written by :func:`atomic_path` without destroying
    anything: it must not exist, or be a regular, writable file (not a symbolic link), and its folder must exist or be
    creatable. Returns ``path`` as a :class:`Path`."""
    target = Path(path)
    if not str(path).strip():
        raise UnsafeOutputError(f"the {what} path is empty; give a file name")
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        _check_parent(target, what)
        return target
    # any other OSError (a part of the path is a file: NotADirectoryError, no permission, ...) propagates as is
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeOutputError(f"will not write the {what} {target}: it is a symbolic link (to "
                                f"{os.readlink(target)}), and seqexplain never replaces links; give the link's "
                                "target or another path")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeOutputError(f"will not write the {what} {target}: it is {_kind(st.st_mode)}, not a regular file; "
                                "give a file path")
    if not os.access(target, os.W_OK) or not st.st_mode & 0o222:  # no write bit: read-only even for root
        raise UnsafeOutputError(f"will not write the {what} {target}: the file is read-only; remove it, make it "
                                "writable, or choose another path")
    _check_parent(target, what)
    return target


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Raise :class:`UnsafeOutputError` unless ``path`` is a writable folder (a link to one is followed) or does not
    exist and can be created. Returns ``path`` as a :class:`Path`."""
    target = Path(path)
    if not str(path).strip():
        raise UnsafeOutputError(f"the {what} path is empty; give a folder name")
    if os.path.lexists(target):
        if not target.is_dir():
            kind = "a file" if target.is_file() else ("a broken symbolic link" if target.is_symlink() else
                                                      _kind(os.stat(target).st_mode))
            raise UnsafeOutputError(f"the {what} {target} is {kind}, not a folder; give a folder path (it is created "
                                    "when missing)")
        if not os.access(target, os.W_OK | os.X_OK):
            raise UnsafeOutputError(f"the {what} {target} is not writable; choose another folder or change its "
                                    "permissions")
        return target
    _check_parent(target, what)
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically, on error it is
    removed. Raises :class:`UnsafeOutputError` (before anything is written) when ``path`` is not replaceable under the
    module's rule (:func:`check_output_file`)."""
    target = check_output_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.lstat(target).st_mode)
        except FileNotFoundError:
            mode = default_file_mode()
        check_output_file(target)  # unchanged since the start? (a link or FIFO made meanwhile is not replaced)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
