"""The table format and the check behind the bad-input tests (``test_bad_input_*.py``).

Each :class:`Case` is one mistake a user can make. :func:`check_bad_input` holds it to this contract: the API
call must raise the row's exception class with a message holding every fragment, on one line, with nothing on
disk lost, changed or added; the same mistake on the command line (typer's ``CliRunner``) must exit with status
2 (a handled ``SystemExit``, not a crash), print one ``error:`` line on stderr holding every fragment (and the
row's CLI-only fragments), print no traceback, and leave the disk as it was. The cases run with the
``bad_input_ctx`` fixture of ``conftest.py`` as their context.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seqexplain.cli import app

PROMPT = "The cat sat on the"


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Any], Any]  # ctx -> an argument for api and cli (a path, ...)
    api: Callable[[Any, Any], object]  # (ctx, arg) -> the call that must raise
    cli: Callable[[Any, Any], list[Any]] | None  # (ctx, arg) -> argv; None: a mistake only the API can make
    error: type[BaseException]
    fragments: tuple[str, ...]
    cli_fragments: tuple[str, ...] = ()


def nothing(ctx: Any) -> None:
    """The setup of a case that needs nothing prepared."""
    return None


def explain_argv(model: Any, text: str, *rest: Any) -> list[Any]:
    """``seqexplain explain -m model -t text ...``."""
    return ["explain", "-m", model, "-t", text, *rest]


def _snapshot(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``folder``: its kind and, for files, its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file" if p.is_file() else "other"
        out[str(p.relative_to(folder))] = (kind, p.read_bytes() if kind == "file" else b"")
    return out


def check_bad_input(case: Case, ctx: Any, runner: Any) -> None:
    """Run ``case`` through the API, then (when it has a CLI form) the CLI, and check the contract above."""
    arg = case.setup(ctx)
    before = _snapshot(ctx.tmp)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error itself, not a warning on the way to it
        with pytest.raises(case.error) as excinfo:
            case.api(ctx, arg)
    assert type(excinfo.value) is case.error  # the class itself, not just a subclass
    message = str(excinfo.value)
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message.strip(), message  # one line
    assert _snapshot(ctx.tmp) == before  # nothing on disk was lost, changed or added
    if case.cli is None:
        return

    result = runner.invoke(app, [str(a) for a in case.cli(ctx, arg)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr  # one error line (model loading may print progress bars before it)
    for fragment in case.fragments + case.cli_fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert _snapshot(ctx.tmp) == before
