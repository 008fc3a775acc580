"""Progress of long computations, reported by the layer that does the work to whoever asked for a bar.

Methods and the models layer call :func:`add_total` (work they are about to do, in forward rows) and
:func:`advance` (work done) — cheap no-ops unless a caller opened :func:`progress_bar`, which shows a tqdm bar with
counts, rate and ETA on stderr (the CLI's ``explain`` does). The total grows as work is discovered (a greedy
rationale's next round), so the ETA is for the work known so far. A leaf module: it imports nothing from the
package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

_BAR: ContextVar[Any] = ContextVar("seqexplain_progress", default=None)


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True, unit: str = "row") -> Iterator[None]:
    """Show a progress bar for the work reported inside the block (nothing when not ``enabled``)."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=0, desc=description, unit=unit, dynamic_ncols=True, leave=False)
    token = _BAR.set(bar)
    try:
        yield
    finally:
        _BAR.reset(token)
        bar.close()


def add_total(n: int) -> None:
    """Announce ``n`` more units of work."""
    bar = _BAR.get()
    if bar is not None and n > 0:
        bar.total = (bar.total or 0) + int(n)
        bar.refresh()


def advance(n: int = 1) -> None:
    """Report ``n`` units of work done."""
    bar = _BAR.get()
    if bar is not None and n > 0:
        bar.update(int(n))
