"""Lines of a user's UTF-8 text file, read the same way by every line-based reader.

:func:`read_text_lines` drops a leading UTF-8 byte order mark (editors on Windows write one; kept, it would become part
of the first word) and splits at line ends only — ``\\n``, ``\\r\\n`` or ``\\r`` — not at the other characters
:meth:`str.splitlines` treats as line breaks (U+2028, U+2029, U+0085, form feed, ...), which may occur inside a
sentence and would otherwise cut it in two. A file that is not UTF-8 raises :class:`DataError`.
:func:`split_text_lines` splits text already read (e.g. an archive member) by the same rule.
"""

from __future__ import annotations

from pathlib import Path

from seqexplain.errors import DataError


def split_text_lines(text: str) -> list[str]:
    """``text`` cut at ``\\n``, ``\\r\\n`` and ``\\r`` only; like :meth:`str.splitlines`, a final line end
    starts no extra empty line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def read_text_lines(path: Path | str) -> list[str]:
    """The lines of ``path`` without their line ends (module docstring)."""
    p = Path(path)
    try:
        with p.open(encoding="utf-8-sig", newline=None) as fh:
            return [line.rstrip("\r\n") for line in fh]
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text: {exc}") from exc
