"""The HTML of one attribution in the report page (:mod:`seqexplain.report.html` assembles the page).

:func:`section_html` renders one ``<section class="attr">``: a header (method, model, kind, shape, what is
explained — the objective —, the aggregation, options, the normalisation selector), the colour legend
(:func:`legend_html`), a warning box listing the warnings of :func:`~seqexplain.report._common.view_warnings`
(the result's ``warnings``; rationale searches that did not reach their target or hit a bound) and one listing
the non-finite cells (at most 50, then a count), when there are any, then one row per target: the target token
(with ``vs 'foil'`` for a contrast), its position and log-probability, and the input tokens as coloured spans
showing the text each covers (exact score and shown value in the ``title`` tooltip, "not visible" for NaN cells,
red text for non-finite cells, an outline for the target's own position, a dotted underline for rationale
members) followed by the rationale in order with its status.

Every piece of text that comes from data passes through :func:`escape_html` (``html.escape`` with
``quote=True``), in element content and attribute values alike.
"""

from __future__ import annotations

import json
from html import escape

from seqexplain.attribution import Attribution
from seqexplain.report._common import (
    NEGATIVE_RGB,
    NORMALIZATIONS,
    NOTATION,
    POSITIVE_RGB,
    Decoder,
    DisplayMatrix,
    cell_rgb,
    describe_aggregation,
    describe_objective,
    describe_precision,
    encodable,
    foil_of,
    format_score,
    hex_rgb,
    input_labels,
    rationale_status,
    target_label,
    text_rgb,
    view_warnings,
)

_NORM_LABELS = {
    "row_max_abs": "per target (max |score|)",
    "max_abs": "whole matrix (max |score|)",
    "row_sum_abs": "per target (sum |score|)",
    "none": "raw scores",
}


def escape_html(text: object) -> str:
    """``str(text)`` escaped for HTML element content and (quoted) attribute values: ``& < > " '`` (and lone
    surrogates written as ``\\uXXXX``, see :func:`~seqexplain.report._common.encodable`)."""
    return escape(encodable(str(text)), quote=True)


# short name for the many escapes in the f-strings below
_e = escape_html


def legend_html(signed: bool) -> str:
    """The colour legend: the scale (most negative … most positive for signed scores, 0 … most positive
    otherwise; a colour is the shown value divided by the largest |value| shown, in whatever normalisation is
    chosen, raw scores included) and the token markers' meaning."""
    neg, pos = hex_rgb(NEGATIVE_RGB), hex_rgb(POSITIVE_RGB)
    if signed:
        grad, lo = f"linear-gradient(90deg, {neg}, #ffffff, {pos})", "−largest (negative)"
    else:
        grad, lo = f"linear-gradient(90deg, #ffffff, {pos})", "0"
    return (
        '<div class="legend">'
        f'<span>{_e(lo)} <span class="scale" style="background: {grad}"></span> +largest (positive): colour = '
        "value ÷ the largest |value| shown</span>"
        '<span><span class="tok nv">tok</span> not visible</span>'
        '<span><span class="tok bad">tok</span> non-finite</span>'
        '<span><span class="tok tgt">tok</span> target position</span>'
        '<span><span class="tok rat">tok</span> in rationale</span>'
        f'<span class="notation">{_e(NOTATION)}</span>'
        "</div>"
    )


def _header_lines(k: int, attr: Attribution, dm: DisplayMatrix, decode: Decoder | None) -> list[str]:
    """The section's opening tag and its header: title, metadata and the (script-enabled) normalisation select."""
    name = attr.method or "attribution"
    out = [f'<section class="attr" id="attr-{k}" data-k="{k}">', "<header>"]
    out.append(f"<h2>{_e(name)}" + (f" <small>· {_e(attr.model_id)}</small>" if attr.model_id else "") + "</h2>")
    meta = [f"<span><b>method</b> {_e(name)}</span>"]
    if attr.model_id:
        meta.append(f"<span><b>model</b> {_e(attr.model_id)}</span>")
    if attr.model_kind:
        meta.append(f"<span><b>kind</b> {_e(attr.model_kind)}</span>")
    n_t, n_l = attr.shape
    meta.append(f"<span><b>shape</b> {n_t} target(s) × {n_l} input token(s)</span>")
    meta.append(f'<span class="objective"><b>objective</b> {_e(describe_objective(attr, decode))}</span>')
    aggregation = describe_aggregation(attr)
    if aggregation:
        meta.append(f'<span class="aggregation"><b>aggregation</b> {_e(aggregation)}</span>')
    precision = describe_precision(attr)
    if precision:
        meta.append(f'<span class="precision"><b>precision</b> {_e(precision.removeprefix("precision="))}</span>')
    if attr.options:
        chips = "".join(
            f'<span class="chip">{_e(key)}={_e(json.dumps(val, ensure_ascii=False, default=str))}</span>'
            for key, val in sorted(attr.options.items())
        )
        meta.append(f"<span><b>options</b> {chips}</span>")
    options_html = "".join(
        f'<option value="{_e(n)}"{" selected" if n == dm.normalize else ""}>{_e(_NORM_LABELS[n])}</option>'
        for n in NORMALIZATIONS
    )
    meta.append(
        f'<label class="controls"><b>normalize</b> <select class="norm" data-k="{k}" disabled>'
        f"{options_html}</select></label>"
    )
    out.append(f'<div class="meta">{"".join(meta)}</div>')
    out.append("</header>")
    return out


def _warning_lines(attr: Attribution, toks: list[str], decode: Decoder | None) -> list[str]:
    """The warning box (the view's warnings) and the non-finite box (first 50 cells, then a count), if any."""
    out: list[str] = []
    notes = view_warnings(attr, decode)
    if notes:
        items = "".join(f"<li>{_e(w)}</li>" for w in notes)
        out.append(f'<div class="warn warnings" role="alert"><b>Warning:</b><ul>{items}</ul></div>')
    bad = attr.nonfinite_cells()
    if bad:
        items = "".join(
            f"<li>target {i} <code>{_e(target_label(attr, i, decode))}</code>, "
            f"input {j} <code>{_e(toks[j])}</code>: "
            f"{_e(format_score(float(attr.scores[i, j])))}</li>"
            for i, j in bad[:50]
        )
        more = f"<li>… and {len(bad) - 50} more</li>" if len(bad) > 50 else ""
        out.append(
            f'<div class="warn" role="alert"><b>Warning:</b> {len(bad)} non-finite score(s); these cells are '
            f"shown in red and are not coloured.<ul>{items}{more}</ul></div>"
        )
    return out


def _row_lines(i: int, attr: Attribution, dm: DisplayMatrix, toks: list[str], decode: Decoder | None) -> list[str]:
    """Target ``i``'s row: its label column, one coloured span per input token, then its rationale (if any)."""
    n_l = attr.shape[1]
    pos = attr.target_positions[i]
    rationale = attr.rationale.positions[i] if attr.rationale is not None else None
    in_rationale = set(rationale or [])
    lp = ""
    if attr.target_logprobs is not None and i < len(attr.target_logprobs):
        lp = f"<div>log p = {attr.target_logprobs[i]:.4f}</div>"
    where = f"<div>position {pos}</div>" if pos is not None else ""
    foil = foil_of(attr, i, decode)
    where += f'<span class="foil">{_e(foil)}</span>' if foil else ""
    tgt = _e(target_label(attr, i, decode))
    out = [f'<div class="row" data-i="{i}">']
    out.append(f'<div class="lab"><span class="idx">#{i}</span><span class="tt">{tgt}</span>{lp}{where}</div>')
    spans: list[str] = []
    for j in range(n_l):
        classes = ["tok"]
        style = ""
        raw = float(attr.scores[i, j])
        if dm.bad[i, j]:
            classes.append("bad")
            tip = f"{toks[j]}\nNON-FINITE score {format_score(raw)}"
        elif dm.not_visible[i, j]:
            classes.append("nv")
            tip = f"{toks[j]}\nnot visible to this target"
        else:
            classes.append("sc")
            bg = cell_rgb(float(dm.intensity[i, j]))
            fgc = text_rgb(bg)
            style = f' style="background-color: rgb{bg}; color: rgb{fgc}"'
            tip = f"{toks[j]}\nscore {format_score(raw)}\nshown {float(dm.shown[i, j]):.3f} ({dm.normalize})"
        if pos is not None and j == pos:
            classes.append("tgt")
            tip += "\n(target position)"
        if j in in_rationale:
            classes.append("rat")
            tip += f"\nrationale step {rationale.index(j) + 1}" if rationale is not None else ""
        spans.append(
            f'<span class="{" ".join(classes)}" data-j="{j}" tabindex="0" title="{_e(f"input {j}: {tip}")}"{style}>'
            f"{_e(toks[j])}</span>"
        )
    rat_html = ""
    if rationale is not None:
        steps = "".join(
            f"<li><code>{_e(toks[j])}</code> <small>({j})</small></li>" for j in rationale
        )
        status, failed = rationale_status(attr, i)
        badge = f'<span class="rstat{" fail" if failed else ""}">{_e(status)}</span>'
        rat_html = (f'<div class="rationale">rationale ({badge}), in order: '
                    f'<ol>{steps or "<li>(empty)</li>"}</ol></div>')
    out.append(f'<div><div class="toks">{"".join(spans)}</div>{rat_html}</div>')
    out.append("</div>")
    return out


def section_html(k: int, attr: Attribution, dm: DisplayMatrix, decode: Decoder | None = None) -> str:
    """The ``<section class="attr" id="attr-k">`` of attribution ``k`` shown through display matrix ``dm``.

    ``decode`` is the tokenizer's decoding of a token string, for tokens without offsets (foils, labels).
    """
    out = _header_lines(k, attr, dm, decode)
    out.append('<div class="body">')
    out.append(legend_html(dm.signed))
    toks = input_labels(attr, decode)
    out += _warning_lines(attr, toks, decode)
    n_t, n_l = attr.shape
    if n_t == 0 or n_l == 0:
        out.append(f"<p>Empty attribution: {n_t} target(s) × {n_l} input token(s).</p>")
    for i in range(n_t):
        out += _row_lines(i, attr, dm, toks, decode)
    out.append("</div></section>")
    return "\n".join(out)


__all__ = ["escape_html", "legend_html", "section_html"]
