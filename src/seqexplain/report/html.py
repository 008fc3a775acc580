"""A self-contained HTML report for one or more :class:`~seqexplain.attribution.Attribution` results.

The page needs no network: CSS and a small script are inline, fonts are the system's, and a
Content-Security-Policy (``default-src 'none'``, the script allowed by its SHA-256 hash only) makes the
browser refuse any other resource or script. It reads correctly with scripting disabled.

Safety contract:

* every piece of text that comes from data (tokens, targets, method, model id, options, title) is passed
  through :func:`html.escape` (``quote=True``), in element content and in attribute values alike;
* the data the script needs is embedded as JSON in ``<script type="application/json">`` with ``<``, ``>``,
  ``&``, U+2028 and U+2029 written as ``\\uXXXX`` escapes, so no token can close the element.

This module assembles the page: head (CSP, title, stylesheet), the table of contents when there are several
attributions, one section per attribution, the status bar, the JSON data block and the script. The parts live in:

* :mod:`seqexplain.report.html_section` — one attribution's section: header (method, model, kind, what is
  explained — the objective —, the aggregation, options, normalisation), colour legend, warning boxes, one row
  per target with its coloured input tokens and rationale;
* :mod:`seqexplain.report.html_assets` — the stylesheet and the script (normalisation selector, also set by
  ``?norm=<name>`` or ``#norm=<name>`` in the URL, column highlighting on hover, status bar with the hovered
  cell) and the script's CSP hash.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_bytes
from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    NEGATIVE_RGB,
    NORMALIZATIONS,
    POSITIVE_RGB,
    Decoder,
    DisplayMatrix,
    check_normalize,
    display_matrix,
    view_warnings,
)
from seqexplain.report.html_assets import PAGE_CSS, PAGE_SCRIPT, script_hash
from seqexplain.report.html_section import escape_html, section_html

_JSON_UNSAFE = ("<", ">", "&", "\u2028", "\u2029")


def json_for_html(value: Any) -> str:
    """JSON text safe to place inside an HTML ``<script>`` element.

    ``<``, ``>``, ``&``, U+2028 and U+2029 are written as ``\\uXXXX`` escapes (still valid JSON meaning the
    same value), so the text can never contain ``</script`` or ``<!--``. NaN/inf are not allowed: encode them
    before calling.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch in _JSON_UNSAFE:
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def _script_scores(attr: Attribution, dm: DisplayMatrix) -> list[list[float | str | None]]:
    """The scores the page's script recolours from: ``None`` for NaN and for flagged cells (:attr:`DisplayMatrix.bad`:
    every ``±inf``, and cells with a finite value that :meth:`Attribution.nonfinite_cells` reports), so the script
    leaves them out of the scale exactly as :func:`display_matrix` does."""
    return [[None if bad or not math.isfinite(v) else float(v) for v, bad in zip(row, flags, strict=True)]
            for row, flags in zip(attr.scores.tolist(), dm.bad.tolist(), strict=True)]


def render_html(
    attrs: Attribution | list[Attribution],
    title: str | None = None,
    normalize: Normalization | str = "row_max_abs",
    *,
    decode: Decoder | None = None,
) -> str:
    """Render one or several attributions as a single self-contained HTML page (returned as a string).

    Args:
        attrs: one attribution or a list (e.g. several methods on the same input); a list of more than one
            gets a table of contents.
        title: page title; default "seqexplain report".
        normalize: initial display normalisation (``none``, ``max_abs``, ``row_max_abs``, ``row_sum_abs``);
            the page lets the reader switch.
        decode: the tokenizer's decoding of a token string, for tokens without offsets (foils, labels).

    Raises:
        InputError: an empty list, or an unknown ``normalize``.
    """
    check_normalize(normalize)
    items = [attrs] if isinstance(attrs, Attribution) else list(attrs)
    if not items:
        raise InputError("render_html needs at least one Attribution")
    page_title = title or "seqexplain report"
    matrices = [display_matrix(a, normalize) for a in items]
    data = {
        "positive": list(POSITIVE_RGB),
        "negative": list(NEGATIVE_RGB),
        "normalizations": list(NORMALIZATIONS),
        "attributions": [{"scores": _script_scores(a, dm)} for a, dm in zip(items, matrices, strict=True)],
    }
    script = PAGE_SCRIPT
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src '{script_hash(script)}'; base-uri 'none'; form-action 'none'"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape_html(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="seqexplain">',
        f"<title>{escape_html(page_title)}</title>",
        f"<style>{PAGE_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{escape_html(page_title)}</h1>",
        f'<div class="sub">{len(items)} attribution(s) · generated by seqexplain · '
        "hover a token for its exact score</div>",
    ]
    if len(items) > 1:
        links = "".join(
            f'<li><a href="#attr-{k}">{escape_html(a.method or "attribution")}</a>'
            + (f" <small>· {escape_html(a.model_id)}</small>" if a.model_id else "")
            + (' <small class="bad-note">⚠ non-finite</small>' if a.nonfinite_cells() else "")
            + (' <small class="bad-note">⚠ warnings</small>' if view_warnings(a, decode) else "")
            + "</li>"
            for k, a in enumerate(items)
        )
        parts.append(f'<nav class="toc"><b>Contents</b><ol>{links}</ol></nav>')
    for k, (a, dm) in enumerate(zip(items, matrices, strict=True)):
        parts.append(section_html(k, a, dm, decode))
    parts += [
        "</main>",
        '<div id="status">hover a token (or reach it with Tab) to see its score</div>',
        f'<script type="application/json" id="seqexplain-data">{json_for_html(data)}</script>',
        f"<script>{script}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


def save_html(
    attrs: Attribution | list[Attribution],
    path: str | os.PathLike[str],
    title: str | None = None,
    normalize: Normalization | str = "row_max_abs",
    *,
    decode: Decoder | None = None,
) -> Path:
    """Write :func:`render_html` output to ``path`` atomically (UTF-8) and return the path."""
    out = Path(path)
    atomic_write_bytes(out, render_html(attrs, title=title, normalize=normalize, decode=decode).encode("utf-8"))
    return out


__all__ = ["json_for_html", "render_html", "save_html"]
