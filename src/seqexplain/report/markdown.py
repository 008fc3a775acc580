"""Markdown tables: a generic one for experiment results, and one for an attribution (tokens × targets).

Output is GitHub-flavoured markdown, padded so the raw text lines up (widths measured in terminal cells, so
CJK and emoji count double). Cell text is made safe: ``|`` becomes ``\\|``, newlines become spaces, and
``&``, ``<``, ``>`` become HTML entities so no cell can inject markup when the markdown is rendered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from rich.cells import cell_len

from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    Decoder,
    describe_objective,
    display_matrix,
    encodable,
    input_labels,
    target_label,
    view_warnings,
)

Align = Literal["left", "right", "center"]

_MD_SPECIAL = "\\`*_[]#~"


def escape_markdown(text: str) -> str:
    """Backslash-escape markdown emphasis/link/code characters (``\\ ` * _ [ ] # ~``) in ``text``."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _format_cell(value: Any, floatfmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, floatfmt)
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value)


def _safe(text: str) -> str:
    text = encodable(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: list[str] | None = None,
    floatfmt: str = ".3f",
    align: Mapping[str, Align] | None = None,
) -> str:
    """A markdown table of ``rows`` (one dict per row).

    Args:
        rows: the rows; a key missing from a row gives an empty cell, ``None`` too.
        columns: the columns, in order; default: every key, in order of first appearance.
        floatfmt: format spec for floats (``nan``, ``inf``, ``-inf`` are written as such). Ints and other
            values use ``str``; booleans are ``True``/``False``.
        align: per column ``left``/``right``/``center``; default: right for columns whose non-empty values are
            all numbers (not booleans), left otherwise.

    Returns:
        The table, one line per row, ending with a newline. Columns are padded to equal width.

    Raises:
        InputError: no columns (no rows and no ``columns``).
    """
    if columns is None:
        columns = []
        for row in rows:
            for key in row:
                if key not in columns:
                    columns.append(key)
    if not columns:
        raise InputError("markdown_table needs at least one column (pass rows or columns)")
    cells = [[_safe(_format_cell(row.get(c), floatfmt)) for c in columns] for row in rows]
    header = [_safe(str(c)) for c in columns]
    aligns: list[Align] = []
    for c in columns:
        if align and c in align:
            aligns.append(align[c])
            continue
        values = [row.get(c) for row in rows if row.get(c) is not None]
        aligns.append("right" if values and all(_is_number(v) for v in values) else "left")
    widths = [max([3, cell_len(header[k])] + [cell_len(r[k]) for r in cells]) for k in range(len(columns))]

    def pad(text: str, width: int, how: Align) -> str:
        gap = width - cell_len(text)
        if how == "right":
            return " " * gap + text
        if how == "center":
            return " " * (gap // 2) + text + " " * (gap - gap // 2)
        return text + " " * gap

    def line(values: list[str]) -> str:
        return "| " + " | ".join(values) + " |"

    seps = []
    for w, how in zip(widths, aligns, strict=True):
        if how == "right":
            seps.append("-" * (w - 1) + ":")
        elif how == "center":
            seps.append(":" + "-" * (w - 2) + ":")
        else:
            seps.append(":" + "-" * (w - 1))
    out = [line([pad(h, w, a) for h, w, a in zip(header, widths, aligns, strict=True)]), line(seps)]
    out += [line([pad(v, w, a) for v, w, a in zip(r, widths, aligns, strict=True)]) for r in cells]
    return "\n".join(out) + "\n"


def attribution_markdown(
    attr: Attribution,
    normalize: Normalization | str = "none",
    floatfmt: str = ".3f",
    *,
    decode: Decoder | None = None,
) -> str:
    """A markdown table of ``attr``: one row per input token, one column per target.

    Columns: ``#`` (input position), ``token`` (the text it covers, leading/trailing whitespace visible as in
    ``␣Paris``, markdown-escaped), then ``t<i> <target>`` for every target. ``decode`` (the tokenizer's
    decoding of a token string) reads tokens that have no offsets. A cell holds the score (normalised with
    ``normalize``, default raw) formatted with ``floatfmt``; it is empty where the position is not visible to
    the target, ``**inf**``/``**-inf**``/``**nan**`` (bold) for a non-finite cell (see
    :meth:`Attribution.nonfinite_cells`), and ``target`` at the target's own position when that is not
    visible. A rationale member gets its step appended, e.g. ``0.412 (r1)``.

    Above the table, one ``> **Warning:** …`` line per warning of
    :func:`~seqexplain.report._common.view_warnings` (the result's warnings; rationale searches that did not
    reach their target or hit a bound), and a ``> explains …`` line when the objective is not ``log p``; a
    result with neither is the bare table.
    """
    dm = display_matrix(attr, normalize)
    n_t, n_l = attr.shape
    labels = input_labels(attr, decode)
    headers = [f"t{i} {escape_markdown(target_label(attr, i, decode))}" for i in range(n_t)]
    rows: list[dict[str, Any]] = []
    for j in range(n_l):
        row: dict[str, Any] = {"#": j, "token": escape_markdown(labels[j])}
        for i in range(n_t):
            if dm.bad[i, j]:
                cell = f"**{_format_cell(float(attr.scores[i, j]), floatfmt)}**"
            elif dm.not_visible[i, j]:
                cell = "target" if attr.target_positions[i] == j else ""
            else:
                cell = format(float(dm.shown[i, j]), floatfmt)
            rationale = attr.rationale.positions[i] if attr.rationale is not None else []
            if j in rationale:
                cell += f" (r{rationale.index(j) + 1})"
            row[headers[i]] = cell
        rows.append(row)
    align: dict[str, Align] = {"#": "right", "token": "left", **{h: "right" for h in headers}}
    notes = [f"> **Warning:** {_safe(escape_markdown(w))}" for w in view_warnings(attr, decode)]
    if attr.objective != "logprob":
        notes.append(f"> {_safe(escape_markdown(describe_objective(attr, decode)))}")
    table = markdown_table(rows, columns=["#", "token", *headers], floatfmt=floatfmt, align=align)
    return "".join(f"{line}\n>\n" for line in notes[:-1]) + (f"{notes[-1]}\n\n" if notes else "") + table
