"""Helpers for the write-safety tests (``test_trust_writes_*.py``): a snapshot of a folder to prove nothing was
lost, changed or left behind, the check that a refused CLI call printed exactly one ``error:`` line, and a CLI
call that lets exceptions through."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import seqexplain.cli as cli


def snapshot(folder: Path) -> dict[str, Any]:
    """Every entry of ``folder`` (recursively, links not followed): its type, a link's target, a file's bytes."""
    out: dict[str, Any] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = os.lstat(p)
            entry: dict[str, Any] = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode)}
            if stat.S_ISLNK(st.st_mode):
                entry["link"] = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                entry["data"] = p.read_bytes()
            out[str(p.relative_to(folder))] = entry
    return out


def error_lines(result: Any) -> list[str]:
    """The non-blank lines a CLI call printed."""
    return [line for line in result.output.splitlines() if line.strip()]


def assert_one_error_line(result: Any, *needles: str) -> str:
    """Exit status 2, no traceback, one printed line ``error: ...`` holding every needle; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def invoke(runner: CliRunner, *args: Any) -> Any:
    """``seqexplain <args>`` (each ``str()``-ed) with exceptions let through (a crash fails the test)."""
    return runner.invoke(cli.app, [str(a) for a in args], catch_exceptions=False)
