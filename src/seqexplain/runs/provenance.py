"""What a results file records about the run that made it: the command that reruns it, the seed, the torch
thread count and the versions of seqexplain, torch, transformers and Python."""

from __future__ import annotations

import contextlib
import platform
import shlex
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from seqexplain.errors import InputError

_COMMAND: ContextVar[str | None] = ContextVar("seqexplain_run_command", default=None)


@contextlib.contextmanager
def recording(command: str | None) -> Iterator[None]:
    """Within the block, :func:`run_record` (and :func:`current_command`) name ``command``: entry points (the CLI,
    the experiments' ``main``) set the command line that reruns them."""
    token = _COMMAND.set(command)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def current_command() -> str | None:
    """The command set by the innermost :func:`recording`, or ``None``."""
    return _COMMAND.get()


def versions() -> dict[str, str | None]:
    """Versions of seqexplain, torch, transformers and Python (``None`` for a package that is not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("seqexplain", "torch", "transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["seqexplain"] is None:
        from seqexplain import __version__

        out["seqexplain"] = __version__
    out["python"] = platform.python_version()
    return out


#: the most CPU threads a command takes (more crashed the process while it started them)
MAX_THREADS = 512


def check_threads(threads: int) -> int:
    """``threads`` when it is a usable CPU thread count (1..:data:`MAX_THREADS`), else :class:`InputError`."""
    if not 1 <= threads <= MAX_THREADS:
        raise InputError(f"--threads must be between 1 and {MAX_THREADS}, got {threads}")
    return threads


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU thread count (``None``: leave it) before any work; return the count in effect."""
    import torch

    if threads is not None:
        torch.set_num_threads(check_threads(threads))
    return int(torch.get_num_threads())


def command_line(prefix: Sequence[str], positional: Sequence[Any] = (), options: dict[str, Any] | None = None) -> str:
    """A runnable, shell-quoted command: ``prefix``, then ``positional``, then each option (``--name value``; a
    ``True`` value is a bare flag, ``False`` and ``None`` are left out)."""
    parts = [str(p) for p in prefix] + [str(p) for p in positional]
    for name, value in (options or {}).items():
        if value is None or value is False:
            continue
        parts.append(name)
        if value is not True:
            parts.append(str(value))
    return shlex.join(parts)


def run_record(seed: int | None, command: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``"run"`` entry of a results file: ``command`` (``None`` when called from Python), ``seed``,
    ``threads`` (in effect now) and ``versions``, plus ``extra``."""
    import torch

    return {"command": command or current_command(), "seed": seed, "threads": int(torch.get_num_threads()),
            "versions": versions(), **extra}


__all__ = ["MAX_THREADS", "apply_threads", "check_threads", "command_line", "current_command", "recording",
           "run_record", "versions"]
