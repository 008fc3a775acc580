"""A self-contained HTML report for one or more :class:`~seqexplain.attribution.Attribution` results.

The page needs no network: CSS and a small script are inline, fonts are the system's, and a
Content-Security-Policy (``default-src 'none'``, the script allowed by its SHA-256 hash only) makes the
browser refuse any other resource or script. It reads correctly with scripting disabled.

Safety contract:

* every piece of text that comes from data (tokens, targets, method, model id, options, title) is passed
  through :func:`html.escape` (``quote=True``), in element content and in attribute values alike;
* the data the script needs is embedded as JSON in ``<script type="application/json">`` with ``<``, ``>``,
  ``&``, U+2028 and U+2029 written as ``\\uXXXX`` escapes, so no token can close the element.

Page content, per attribution: a header (method, model, kind, what is explained — the objective —, the
aggregation, options, normalisation), a colour legend, a warning box listing the warnings of
:func:`~seqexplain.report._common.view_warnings` (the result's ``warnings``; rationale searches that did not
reach their target or hit a bound) and one listing non-finite cells, when there are any, then one row per
target: the target token (with ``vs 'foil'`` for a contrast) and its log-probability, and the input tokens as
coloured spans showing the text each covers, with a token's leading/trailing whitespace visible (``␣Paris``;
the legend explains the notation) (exact score and shown value in the ``title`` tooltip, "not visible" for
NaN cells, red text for non-finite cells, an outline for the target's own position, a dotted underline for
rationale members) followed by the rationale in order with its status (``reached``; ``not reached`` and
``bound hit`` in red).
Several attributions get a table of contents. The script adds a normalisation selector (also set by ``?norm=<name>`` or
``#norm=<name>`` in the URL), column highlighting on hover and a status bar with the hovered cell.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_bytes
from seqexplain.attribution import Attribution, Normalization
from seqexplain.errors import InputError
from seqexplain.report._common import (
    NEGATIVE_RGB,
    NORMALIZATIONS,
    NOTATION,
    POSITIVE_RGB,
    Decoder,
    DisplayMatrix,
    cell_rgb,
    check_normalize,
    describe_aggregation,
    describe_objective,
    display_matrix,
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

_CSS = """
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff;
  --panel: #f6f8fa; --accent: #0969da; --bad: #cf222e; --tgt: #bf8700; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 22px; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 18px; margin: 0; overflow-wrap: anywhere; }
.sub { color: var(--muted); font-size: 12px; margin-bottom: 16px; }
nav.toc { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 16px;
  margin-bottom: 20px; }
nav.toc ol { margin: 4px 0; padding-left: 20px; }
nav.toc a { color: var(--accent); text-decoration: none; }
nav.toc a:hover { text-decoration: underline; }
section.attr { border: 1px solid var(--line); border-radius: 8px; margin: 0 0 24px; overflow: hidden; }
section.attr > header { background: var(--panel); border-bottom: 1px solid var(--line); padding: 12px 16px; }
.meta { overflow-wrap: anywhere; display: flex; flex-wrap: wrap; gap: 6px 18px; margin-top: 6px;
  color: var(--muted); font-size: 12px; }
.meta b { color: var(--fg); font-weight: 600; }
.chip { display: inline-block; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono",
  monospace; background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 0 7px;
  margin: 0 3px 0 0; }
.body { padding: 12px 16px 16px; }
.legend { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; font-size: 12px;
  color: var(--muted); margin-bottom: 10px; }
.scale { display: inline-block; width: 160px; height: 12px; border: 1px solid var(--line); border-radius: 2px;
  vertical-align: middle; }
.controls { font-size: 12px; color: var(--muted); }
.controls select { font: inherit; }
.warn { border: 1px solid var(--bad); background: #ffebe9; color: #82071e; border-radius: 6px;
  padding: 8px 12px; margin-bottom: 12px; }
.warn ul { margin: 4px 0 0; padding-left: 20px; }
.row { display: grid; grid-template-columns: 180px minmax(0, 1fr); gap: 12px; padding: 8px 0;
  border-top: 1px solid #eaeef2; }
.row:first-of-type { border-top: 0; }
.lab { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.lab .tt { display: inline-block; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
  "DejaVu Sans Mono", monospace; font-size: 14px; font-weight: 600; color: var(--fg); background: #fff8c5;
  border: 2px solid var(--tgt); border-radius: 4px; padding: 0 5px; white-space: pre-wrap; max-width: 100%;
  overflow-wrap: anywhere; }
.lab .idx { margin-right: 4px; }
.toks { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
  font-size: 14px; line-height: 1.5; }
.tok { display: inline-block; max-width: 100%; white-space: pre-wrap; overflow-wrap: anywhere;
  vertical-align: top; line-height: 1.5; padding: 1px 2px; margin: 2px 1px; border-radius: 3px; cursor: default; }
.tok.nv { color: #8c959f; background: repeating-linear-gradient(135deg, #f6f8fa 0 4px, #eaeef2 4px 8px); }
.tok.bad { color: var(--bad); font-weight: 700; background: #fff; outline: 2px dashed var(--bad); }
.tok.tgt { outline: 2px solid var(--tgt); outline-offset: 1px; font-weight: 700; }
.tok.rat { text-decoration: underline dotted 2px; text-underline-offset: 4px; }
.tok.hl { box-shadow: 0 0 0 2px var(--accent); }
.rationale { font-size: 12px; color: var(--muted); margin-top: 4px; }
.rationale ol { display: inline; margin: 0; padding: 0; list-style: none; }
.rationale li { display: inline; }
.rationale li + li::before { content: " \\2192 "; }
.rstat { font-weight: 700; color: #1a7f37; }
.rstat.fail { color: var(--bad); text-transform: uppercase; }
.lab .foil { display: block; font-style: italic; }
.rationale code { background: var(--panel); border-radius: 3px; padding: 0 3px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.sw { display: inline-block; padding: 0 5px; border-radius: 3px; font-family: ui-monospace, monospace; }
#status { position: fixed; left: 0; right: 0; bottom: 0; background: #24292f; color: #fff; font-size: 12px;
  padding: 4px 12px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  white-space: pre; overflow: hidden; text-overflow: ellipsis; min-height: 24px; }
"""

# The script only reads the JSON data block and the DOM; it never builds HTML from data (textContent only).
_JS = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("seqexplain-data").textContent);
  var POS = data.positive, NEG = data.negative;
  function rgb(v) {
    v = Math.max(-1, Math.min(1, v));
    var hue = v >= 0 ? POS : NEG, a = Math.abs(v), out = [];
    for (var c = 0; c < 3; c++) { out.push(Math.floor(255 + (hue[c] - 255) * a + 0.5)); }
    return out;
  }
  function fg(bg) {
    var lum = (0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]) / 255.0;
    return lum > 0.55 ? "rgb(0, 0, 0)" : "rgb(255, 255, 255)";
  }
  function shown(scores, how) {
    var out = scores.map(function (r) { return r.slice(); });
    if (how === "none") { return out; }
    var fin = function (x) { return typeof x === "number" && isFinite(x); };
    if (how === "max_abs") {
      var m = 0;
      out.forEach(function (r) { r.forEach(function (x) { if (fin(x)) { m = Math.max(m, Math.abs(x)); } }); });
      if (m > 0) { out = out.map(function (r) { return r.map(function (x) { return fin(x) ? x / m : x; }); }); }
      return out;
    }
    return out.map(function (r) {
      var d = 0;
      r.forEach(function (x) {
        if (fin(x)) { d = how === "row_sum_abs" ? d + Math.abs(x) : Math.max(d, Math.abs(x)); }
      });
      if (!(d > 0)) { d = 1; }
      return r.map(function (x) { return fin(x) ? x / d : x; });
    });
  }
  function recolour(k, how) {
    var a = data.attributions[k], sh = shown(a.scores, how), top = 0;
    sh.forEach(function (r) { r.forEach(function (x) {
      if (typeof x === "number" && isFinite(x)) { top = Math.max(top, Math.abs(x)); } }); });
    var sec = document.getElementById("attr-" + k);
    sec.querySelectorAll(".row").forEach(function (row) {
      var i = +row.getAttribute("data-i");
      row.querySelectorAll(".tok.sc").forEach(function (el) {
        var j = +el.getAttribute("data-j"), x = sh[i][j];
        var bg = rgb(top > 0 ? x / top : 0);
        el.style.backgroundColor = "rgb(" + bg.join(", ") + ")";
        el.style.color = fg(bg);
        var t = el.getAttribute("title") || "", cut = t.lastIndexOf("\\nshown ");
        if (cut >= 0) { el.setAttribute("title", t.slice(0, cut) + "\\nshown " + x.toFixed(3) + " (" + how + ")"); }
      });
    });
    var sel = sec.querySelector("select.norm");
    if (sel) { sel.value = how; }
  }
  var m = /(?:^|[?&#])norm=([a-z_]+)/.exec(location.search + location.hash);
  if (m && data.normalizations.indexOf(m[1]) >= 0) {
    data.attributions.forEach(function (_, k) { recolour(k, m[1]); });
  }
  document.querySelectorAll("select.norm").forEach(function (sel) {
    sel.disabled = false;
    sel.addEventListener("change", function () { recolour(+sel.getAttribute("data-k"), sel.value); });
  });
  var status = document.getElementById("status");
  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest ? ev.target.closest(".tok") : null;
    document.querySelectorAll(".tok.hl").forEach(function (h) { h.classList.remove("hl"); });
    if (!el) { return; }
    var sec = el.closest("section.attr");
    sec.querySelectorAll('.tok[data-j="' + el.getAttribute("data-j") + '"]').forEach(function (h) {
      h.classList.add("hl");
    });
    status.textContent = (el.getAttribute("title") || "").replace(/\\n/g, "  \\u00b7  ");
  });
})();
"""


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


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


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _json_score(v: float) -> float | str | None:
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def _legend_html(signed: bool) -> str:
    neg, pos = hex_rgb(NEGATIVE_RGB), hex_rgb(POSITIVE_RGB)
    if signed:
        grad, lo = f"linear-gradient(90deg, {neg}, #ffffff, {pos})", "−1 (negative)"
    else:
        grad, lo = f"linear-gradient(90deg, #ffffff, {pos})", "0"
    return (
        '<div class="legend">'
        f'<span>{_e(lo)} <span class="scale" style="background: {grad}"></span> +1 (positive)</span>'
        '<span><span class="tok nv">tok</span> not visible</span>'
        '<span><span class="tok bad">tok</span> non-finite</span>'
        '<span><span class="tok tgt">tok</span> target position</span>'
        '<span><span class="tok rat">tok</span> in rationale</span>'
        f'<span class="notation">{_e(NOTATION)}</span>'
        "</div>"
    )


def _section(k: int, attr: Attribution, dm: DisplayMatrix, decode: Decoder | None = None) -> str:
    out: list[str] = []
    name = attr.method or "attribution"
    out.append(f'<section class="attr" id="attr-{k}" data-k="{k}">')
    out.append("<header>")
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
    out.append('<div class="body">')
    out.append(_legend_html(dm.signed))

    notes = view_warnings(attr, decode)
    toks = input_labels(attr, decode)
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
    if n_t == 0 or n_l == 0:
        out.append(f"<p>Empty attribution: {n_t} target(s) × {n_l} input token(s).</p>")

    for i in range(n_t):
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
        out.append(f'<div class="row" data-i="{i}">')
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
                f'<span class="{" ".join(classes)}" data-j="{j}" title="{_e(f"input {j}: {tip}")}"{style}>'
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
    out.append("</div></section>")
    return "\n".join(out)


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
        "attributions": [{"scores": [[_json_score(v) for v in row] for row in a.scores.tolist()]} for a in items],
    }
    script = _JS
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src '{_script_hash(script)}'; base-uri 'none'; form-action 'none'"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="seqexplain">',
        f"<title>{_e(page_title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{_e(page_title)}</h1>",
        f'<div class="sub">{len(items)} attribution(s) · generated by seqexplain · '
        "hover a token for its exact score</div>",
    ]
    if len(items) > 1:
        links = "".join(
            f'<li><a href="#attr-{k}">{_e(a.method or "attribution")}</a>'
            + (f" <small>· {_e(a.model_id)}</small>" if a.model_id else "")
            + (' <small class="bad-note">⚠ non-finite</small>' if a.nonfinite_cells() else "")
            + (' <small class="bad-note">⚠ warnings</small>' if view_warnings(a, decode) else "")
            + "</li>"
            for k, a in enumerate(items)
        )
        parts.append(f'<nav class="toc"><b>Contents</b><ol>{links}</ol></nav>')
    for k, (a, dm) in enumerate(zip(items, matrices, strict=True)):
        parts.append(_section(k, a, dm, decode))
    parts += [
        "</main>",
        '<div id="status">hover a token to see its score</div>',
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
