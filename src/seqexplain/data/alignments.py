"""Readers for gold word alignments.

Formats:

* **Pharaoh** (``read_pharaoh``): one sentence pair per line, space-separated links ``i-j`` (sure) and ``ipj``
  (possible), ``i`` the source word and ``j`` the target word. Indices are 0-based by default (simalign's samples);
  pass ``one_based=True`` for 1-based files (the WPT sets shipped with awesome-align). An optional leading
  ``<index><TAB>`` column (simalign's ``*.gold``) is skipped. An empty line is a pair without links.
* **RWTH** (``read_rwth``): ``SENT: <n>`` starts a sentence, followed by lines ``S i j`` (sure) / ``P i j``
  (possible) with ``i`` the source and ``j`` the target word (the order Vafa et al.'s script reads the De-En set in);
  0-based by default. Blank lines are ignored; the ``SENT:`` numbers must run consecutively from the first.

Every reader returns :class:`GoldAlignment` objects whose ``possible`` set contains the sure links too
(``P ⊇ S``). When the sentence lengths are given (``src_lengths`` / ``tgt_lengths``), an index outside
``0..len−1`` raises :class:`~seqexplain.errors.DataError`, and so does a file whose number of sentence pairs (Pharaoh
lines, RWTH ``SENT:`` blocks) differs from the number of sentences; so do malformed lines and negative or (1-based)
zero indices. Every error names the file and the 1-based line number. Files are UTF-8 (a byte order mark allowed),
split at line ends only.

``read_parallel`` reads ``source ||| target`` lines (awesome-align's ``*.src-tgt``) and ``read_indexed_lines``
``<index><TAB>text`` lines (simalign's ``sample_*.txt``); both split on whitespace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError

_PHARAOH = re.compile(r"^(\d+)([-p])(\d+)$")
_RWTH_SENT = re.compile(r"^SENT:\s*(\d+)\s*$")
_RWTH_LINK = re.compile(r"^([SP])\s+(\d+)\s+(\d+)\s*$")


@dataclass
class GoldAlignment:
    """Links ``(source word, target word)`` of one sentence pair; ``possible ⊇ sure``."""

    sure: set[tuple[int, int]] = field(default_factory=set)
    possible: set[tuple[int, int]] = field(default_factory=set)

    def sources_by_target(self) -> dict[int, tuple[set[int], set[int]]]:
        """``{target word: (sure source words, possible source words)}`` for target words with a link."""
        out: dict[int, tuple[set[int], set[int]]] = {}
        for i, j in self.possible:
            out.setdefault(j, (set(), set()))[1].add(i)
        for i, j in self.sure:
            out.setdefault(j, (set(), set()))[0].add(i)
        return out


def _open_lines(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"alignment file {p} does not exist")
    return read_text_lines(p)


def _check(path: str | os.PathLike[str], lineno: int, sent: int, i: int, j: int,
           src_lengths: Sequence[int] | None, tgt_lengths: Sequence[int] | None) -> None:
    if i < 0 or j < 0:
        raise DataError(f"{path}, line {lineno}: link {i}-{j} has a negative index (a 1-based file read as 1-based "
                        "has no index 0; check one_based)")
    for what, idx, lengths in (("source", i, src_lengths), ("target", j, tgt_lengths)):
        if lengths is None:
            continue
        if sent >= len(lengths):
            raise DataError(f"{path}, line {lineno}: sentence {sent} has no {what} sentence (only {len(lengths)})")
        if idx >= lengths[sent]:
            raise DataError(f"{path}, line {lineno}: {what} index {idx} is out of range for sentence {sent} "
                            f"({lengths[sent]} words; indices 0..{lengths[sent] - 1} after conversion to 0-based)")


def read_pharaoh(path: str | os.PathLike[str], *, one_based: bool = False,
                 src_lengths: Sequence[int] | None = None, tgt_lengths: Sequence[int] | None = None
                 ) -> list[GoldAlignment]:
    """Read a Pharaoh ``i-j`` / ``ipj`` file (module docstring); indices are returned 0-based."""
    out: list[GoldAlignment] = []
    shift = 1 if one_based else 0
    for n, line in enumerate(_open_lines(path)):
        lineno = n + 1
        body = line
        if "\t" in body:
            head, body = body.split("\t", 1)
            if not head.strip().isdigit():
                raise DataError(f"{path}, line {lineno}: expected '<index><TAB>links', got {line!r}")
        gold = GoldAlignment()
        for tok in body.split():
            m = _PHARAOH.match(tok)
            if m is None:
                raise DataError(f"{path}, line {lineno}: malformed link {tok!r} (expected i-j or ipj)")
            i, j = int(m.group(1)) - shift, int(m.group(3)) - shift
            _check(path, lineno, len(out), i, j, src_lengths, tgt_lengths)
            gold.possible.add((i, j))
            if m.group(2) == "-":
                gold.sure.add((i, j))
        out.append(gold)
    _check_count(path, len(out), "lines", src_lengths, tgt_lengths)
    return out


def _check_count(path: str | os.PathLike[str], n: int, unit: str, src_lengths: Sequence[int] | None,
                 tgt_lengths: Sequence[int] | None) -> None:
    for what, lengths in (("source", src_lengths), ("target", tgt_lengths)):
        if lengths is not None and len(lengths) != n:
            raise DataError(f"{path} has {n} {unit} but there are {len(lengths)} {what} sentences; a gold file needs "
                            "one entry (maybe without links) per sentence pair")


def read_rwth(path: str | os.PathLike[str], *, one_based: bool = False,
              src_lengths: Sequence[int] | None = None, tgt_lengths: Sequence[int] | None = None
              ) -> list[GoldAlignment]:
    """Read an RWTH ``SENT:`` / ``S i j`` / ``P i j`` file (module docstring); indices are returned 0-based."""
    out: list[GoldAlignment] = []
    shift = 1 if one_based else 0
    first = 0
    for n, raw in enumerate(_open_lines(path)):
        lineno, line = n + 1, raw.strip()
        if not line:
            continue
        sent = _RWTH_SENT.match(line)
        if sent:
            number = int(sent.group(1))
            if out and number != first + len(out):
                raise DataError(f"{path}, line {lineno}: expected 'SENT: {first + len(out)}' (sentence numbers run "
                                f"consecutively), got {raw!r}")
            first = number if not out else first
            out.append(GoldAlignment())
            continue
        m = _RWTH_LINK.match(line)
        if m is None:
            raise DataError(f"{path}, line {lineno}: malformed line {raw!r} (expected 'SENT: n', 'S i j' or 'P i j')")
        if not out:
            raise DataError(f"{path}, line {lineno}: link before the first 'SENT:' line")
        i, j = int(m.group(2)) - shift, int(m.group(3)) - shift
        _check(path, lineno, len(out) - 1, i, j, src_lengths, tgt_lengths)
        out[-1].possible.add((i, j))
        if m.group(1) == "S":
            out[-1].sure.add((i, j))
    _check_count(path, len(out), "'SENT:' blocks", src_lengths, tgt_lengths)
    return out


def read_parallel(path: str | os.PathLike[str]) -> list[tuple[list[str], list[str]]]:
    """Read ``source ||| target`` lines into word lists."""
    out = []
    for n, line in enumerate(_open_lines(path)):
        if line.count("|||") != 1:
            raise DataError(f"{path}, line {n + 1}: expected 'source ||| target', got {line!r}")
        src, tgt = line.split("|||")
        out.append((src.split(), tgt.split()))
    return out


def read_indexed_lines(path: str | os.PathLike[str]) -> list[list[str]]:
    """Read ``<index><TAB>text`` lines (indices must run 0, 1, 2, …) into word lists."""
    out = []
    for n, line in enumerate(_open_lines(path)):
        head, sep, text = line.partition("\t")
        if not sep or not head.strip().isdigit() or int(head) != len(out):
            raise DataError(f"{path}, line {n + 1}: expected '{len(out)}<TAB>text', got {line!r}")
        out.append(text.split())
    return out
