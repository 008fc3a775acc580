"""Reader for Vafa et al.'s annotated LAMBADA: human rationales for the last word of LAMBADA passages.

The file (``annotated_lambada/annotated_lambada.json`` under the data root) is JSON Lines; each object has
``lambadaIndex`` (index into LAMBADA), ``text`` (the passage; its last whitespace-delimited word is the target) and
``rationale`` (``[start, end]`` character spans into ``text``, the human rationale, in the order annotated).

:func:`read_annotated_lambada` returns :class:`LambadaRationale` items: ``context`` is ``text`` without the last
word (trailing whitespace removed), ``target`` the last word. A span must satisfy ``0 <= start < end <=
len(context)``; a span outside the context (or malformed JSON / keys) raises :class:`DataError` naming the file and
line.

:func:`gold_token_positions` maps the spans to input positions: token ``j`` (of segment ``"source"``, with character
offsets ``(a, b)`` into the context) is gold when ``[a, b)`` overlaps a span (``a < end and start < b``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError

FOLDER = "annotated_lambada"
FILENAME = "annotated_lambada.json"


@dataclass(frozen=True)
class LambadaRationale:
    lambada_index: int
    text: str
    context: str
    target: str
    spans: list[tuple[int, int]]

    def span_texts(self) -> list[str]:
        return [self.context[a:b] for a, b in self.spans]


def default_path() -> Path:
    from seqexplain.data.paths import require_data

    return require_data(FOLDER) / FILENAME


def read_annotated_lambada(path: str | os.PathLike[str] | None = None) -> list[LambadaRationale]:
    """Read the annotated LAMBADA file (default: under the data root); see the module docstring."""
    p = Path(path) if path is not None else default_path()
    if not p.is_file():
        raise DataError(f"annotated LAMBADA file {p} does not exist")
    out = []
    for n, line in enumerate(read_text_lines(p)):
        lineno = n + 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text, spans, index = obj["text"], obj["rationale"], int(obj["lambadaIndex"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{p}, line {lineno}: not an annotated LAMBADA record ({exc})") from exc
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{p}, line {lineno}: empty text")
        if not isinstance(spans, list):
            raise DataError(f"{p}, line {lineno}: rationale is {spans!r}, not a list of [start, end] spans")
        stripped = text.rstrip()
        cut = max(stripped.rfind(" "), stripped.rfind("\n"), stripped.rfind("\t"))
        context, target = stripped[: cut + 1].rstrip(), stripped[cut + 1 :]
        parsed = []
        for span in spans:
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)):
                raise DataError(f"{p}, line {lineno}: rationale span {span!r} is not [start, end]")
            a, b = span
            if not 0 <= a < b <= len(context):
                raise DataError(f"{p}, line {lineno}: rationale span [{a}, {b}] lies outside the context "
                                f"(0..{len(context)} characters, before the target word {target!r})")
            parsed.append((a, b))
        out.append(LambadaRationale(index, text, context, target, parsed))
    return out


def gold_token_positions(offsets: Sequence[tuple[int, int] | None], spans: Sequence[tuple[int, int]],
                         segments: Sequence[str] | None = None, text_length: int | None = None) -> list[int]:
    """Input positions whose character offsets overlap a span (only ``"source"`` tokens when ``segments`` is
    given). With ``text_length``, a span outside ``0..text_length`` raises :class:`DataError`."""
    for a, b in spans:
        if not 0 <= a < b or (text_length is not None and b > text_length):
            raise DataError(f"rationale span [{a}, {b}] lies outside the text ({text_length} characters)")
    out = []
    for j, off in enumerate(offsets):
        if off is None or (segments is not None and segments[j] != "source"):
            continue
        if any(off[0] < b and a < off[1] for a, b in spans):
            out.append(j)
    return out
