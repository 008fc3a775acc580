"""The static assets of the HTML report page (:mod:`seqexplain.report.html`): its stylesheet and its script.

* :data:`PAGE_CSS` — the inline stylesheet (system fonts only, no ``url()``);
* :data:`PAGE_SCRIPT` — the inline script: it reads the ``seqexplain-data`` JSON block and the DOM only and never
  builds HTML from data (``textContent`` only); it adds the normalisation selector (also set by ``?norm=<name>``
  or ``#norm=<name>``), column highlighting on hover or keyboard focus and the status bar;
* :func:`script_hash` — the ``'sha256-…'`` source expression that the page's Content-Security-Policy uses to allow
  exactly that script and no other.
"""

from __future__ import annotations

import base64
import hashlib

PAGE_CSS = """
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
.tok.nv { color: #59636e; background: repeating-linear-gradient(135deg, #f6f8fa 0 4px, #eaeef2 4px 8px); }
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
PAGE_SCRIPT = """
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
  // pointer and keyboard alike: a token reached with Tab shows its score in the status bar as on hover
  var show = function (ev) {
    var el = ev.target.closest ? ev.target.closest(".tok") : null;
    document.querySelectorAll(".tok.hl").forEach(function (h) { h.classList.remove("hl"); });
    if (!el) { return; }
    var sec = el.closest("section.attr");
    sec.querySelectorAll('.tok[data-j="' + el.getAttribute("data-j") + '"]').forEach(function (h) {
      h.classList.add("hl");
    });
    status.textContent = (el.getAttribute("title") || "").replace(/\\n/g, "  \\u00b7  ");
  };
  document.addEventListener("mouseover", show);
  document.addEventListener("focusin", show);
})();
"""


def script_hash(script: str) -> str:
    """The CSP source expression ``sha256-<base64 of SHA-256(script as UTF-8)>`` that allows ``script`` inline."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


__all__ = ["PAGE_CSS", "PAGE_SCRIPT", "script_hash"]
