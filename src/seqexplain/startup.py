"""Ctrl-C while the ``seqexplain`` command starts.

The command's own handler (:class:`~seqexplain.cli_support.ErrorHandlingGroup`) turns Ctrl-C into one line and exit
status 130, but it exists only once the package and the command line are imported, which takes about 1.5 s (torch).
:func:`interruptible_start` wraps those imports: in the ``seqexplain`` console script a Ctrl-C there prints the same
``warning: interrupted`` line and exits with 130; anywhere else (``import seqexplain`` in a program or a notebook) the
``KeyboardInterrupt`` propagates unchanged. This module imports only the standard library.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import PurePath

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
CONSOLE_SCRIPTS = frozenset({"seqexplain", "seqexplain.exe"})


def running_console_script() -> bool:
    """True when this process is the ``seqexplain`` console script (``sys.argv[0]`` names it)."""
    return bool(sys.argv) and PurePath(sys.argv[0] or "").name in CONSOLE_SCRIPTS


@contextlib.contextmanager
def interruptible_start() -> Iterator[None]:
    """Around start-up imports: a ``KeyboardInterrupt`` in the console script exits 130 with one line, no
    traceback; elsewhere it is re-raised."""
    try:
        yield
    except KeyboardInterrupt:
        if not running_console_script():
            raise
        sys.stderr.write("warning: interrupted\n")
        sys.stderr.flush()
        raise SystemExit(EXIT_INTERRUPTED) from None
