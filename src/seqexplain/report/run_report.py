"""The report of a corpus run: one self-contained HTML page and a markdown summary, from a :class:`RunSummary`
(built from a run folder by :mod:`seqexplain.runs.summary`).

The page holds: the faithfulness table with the random-ranking baseline beside each method, the plausibility
table (when the data has gold rationales), the method × method agreement matrices as heatmaps and the
perturbation curves (comprehensiveness and sufficiency per bin), both drawn by matplotlib and embedded as base64
PNGs, and per example the heatmaps of every method side by side with the human rationale marked (a box around
each gold token; special tokens grey, outside the colour scale). It has no script and loads nothing: a
Content-Security-Policy allows only inline styles and ``data:`` images. Colours follow
:mod:`seqexplain.report._common` (the same scale as every other view).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqexplain.attribution import Attribution
from seqexplain.report._common import cell_rgb, display_matrix, hex_rgb, input_labels, target_label, text_rgb
from seqexplain.report.markdown import markdown_table


@dataclass
class ExampleView:
    """One example of the report: its ``index``, ``id``, each method's attribution and the gold positions."""

    index: int
    id: str
    attributions: dict[str, Attribution]
    gold: list[int] | None


@dataclass
class RunSummary:
    """What the report shows. ``faithfulness[method]``: ``aopc_comprehensiveness``, ``aopc_sufficiency``, their
    ``random_*`` and ``seconds`` (means over examples); ``curves[method]``: ``comprehensiveness`` /
    ``sufficiency`` per bin (means), with the key ``"random"`` for the baseline; ``plausibility[method]``: column →
    value; ``rationales[method]`` (rationale methods): ``searches`` (examples × targets), ``reached`` (how many met
    the stopping rule) and ``mean_length``; ``agreement[metric]``: ``[M, M]`` matrix in ``methods`` order."""

    title: str
    methods: list[str]
    info: dict[str, Any]
    faithfulness: dict[str, dict[str, float]] = field(default_factory=dict)
    bins: list[float] = field(default_factory=list)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    plausibility: dict[str, dict[str, Any]] = field(default_factory=dict)
    rationales: dict[str, dict[str, Any]] = field(default_factory=dict)
    agreement: dict[str, np.ndarray] = field(default_factory=dict)
    examples: list[ExampleView] = field(default_factory=list)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.tok{display:inline-block;padding:1px 3px;margin:1px;border-radius:3px;font-family:monospace}
.tok.bad{color:#cf222e;font-weight:700;outline:2px dashed #cf222e}
.gold{outline:2px solid #e69f00;outline-offset:-1px}
.method{font-weight:600;margin-top:.4em}
.ex{border-top:1px solid #ddd;padding-top:.6em;margin-top:1em}
.warn{color:#a0307a}
img{max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else _e(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_num(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{body}</table></div>'


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def agreement_png(methods: list[str], matrix: np.ndarray, metric: str) -> str:
    """The agreement matrix as an annotated heatmap (a base64 PNG data URL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(methods), 1.0 + 0.8 * len(methods)))
    im = ax.imshow(matrix, vmin=-1 if metric in ("kendall_tau", "spearman") else 0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(methods)), methods)
    for i in range(len(methods)):
        for j in range(len(methods)):
            v = matrix[i, j]
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(metric)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def curves_png(bins: list[float], curves: dict[str, dict[str, list[float]]]) -> str:
    """Comprehensiveness and sufficiency against the bin (% of tokens), one line per method, the random baseline
    dashed (a base64 PNG data URL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("comprehensiveness", "sufficiency"), strict=True):
        for name, curve in curves.items():
            style = {"linestyle": "--", "color": "grey"} if name == "random" else {"marker": "o"}
            ax.plot(bins, curve[key], label=name, **style)
        ax.set_xlabel("% of tokens removed / kept (bin)")
        ax.set_ylabel(key)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _png(fig)


def _heat_row(attr: Attribution, gold: set[int], target: int = 0) -> str:
    """One method's row: special tokens are shown grey and left out of the colour scale (their scores, often the
    largest, would wash out the words' colours), a non-finite score red with ``!``; the score is each token's
    tooltip."""
    special = [j for j, seg in enumerate(attr.segments) if seg == "special"]
    if special and len(special) < len(attr.tokens):
        scores = attr.scores.copy()
        scores[:, special] = np.nan
        attr = dataclasses.replace(attr, scores=scores)
    dm = display_matrix(attr, "row_max_abs")
    labels = input_labels(attr)
    cells = []
    for j, label in enumerate(labels):
        v = dm.intensity[target, j]
        cls = "tok gold" if j in gold else "tok"
        if dm.bad[target, j]:  # a non-finite score: flagged, never grey like a not-visible or special token
            cells.append(f'<span class="{cls} bad" title="{attr.scores[target, j]:.4g} (non-finite)">{_e(label)}!'
                         "</span>")
            continue
        if np.isnan(v):
            cells.append(f'<span class="{cls}" style="color:#6e6e6e">{_e(label)}</span>')  # 5.1:1 on white
            continue
        bg = cell_rgb(float(v))
        score = attr.scores[target, j]
        cells.append(f'<span class="{cls}" style="background-color:{hex_rgb(bg)};color:{hex_rgb(text_rgb(bg))}" '
                     f'title="{score:.4g}">{_e(label)}</span>')
    return "".join(cells)


def _example_html(ex: ExampleView) -> str:
    gold = set(ex.gold or [])
    first = next(iter(ex.attributions.values()))
    n = len(first.target_tokens)
    which = f"target 1 of {n} ({_e(target_label(first, 0))}; the others' scores are in results.parquet)" if n > 1 \
        else f"target {_e(target_label(first, 0))}"
    parts = [f'<div class="ex"><h3>example {ex.index} ({_e(ex.id)}): {which}</h3>']
    if ex.gold is not None:
        parts.append('<p>boxed tokens: the human rationale</p>')
    for name, attr in ex.attributions.items():
        parts.append(f'<div class="method">{_e(name)}</div><div>{_heat_row(attr, gold)}</div>')
        parts.extend(f'<div class="warn">warning: {_e(w)}</div>' for w in attr.warnings)
    parts.append("</div>")
    return "".join(parts)


FAITH_COLUMNS = ["method", "aopc_comprehensiveness", "random_aopc_comprehensiveness", "aopc_sufficiency",
                 "random_aopc_sufficiency", "seconds"]


def faithfulness_rows(summary: RunSummary) -> list[dict[str, Any]]:
    return [{"method": m, **summary.faithfulness[m]} for m in summary.methods if m in summary.faithfulness]


def plausibility_rows(summary: RunSummary) -> list[dict[str, Any]]:
    return [{"method": m, **summary.plausibility[m]} for m in summary.methods if m in summary.plausibility]


RATIONALE_COLUMNS = ["method", "searches", "reached", "mean_length"]


def rationale_rows(summary: RunSummary) -> list[dict[str, Any]]:
    return [{"method": m, **summary.rationales[m]} for m in summary.methods if m in summary.rationales]


def rationale_lines(summary: RunSummary) -> list[str]:
    """One sentence per rationale method: ``greedy: 7 of 9 searches reached the target``, with what the others
    did."""
    return [f"{m}: {r['reached']} of {r['searches']} searches reached the target"
            + ("" if r["reached"] == r["searches"] else " (the others used the whole context or stopped at a bound "
               "such as max_size; their rationales do not make the model predict the target)")
            for m, r in ((m, summary.rationales[m]) for m in summary.methods if m in summary.rationales)]


def render_run_html(summary: RunSummary) -> str:
    """The self-contained HTML page of a run (module docstring)."""
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
           'style-src \'unsafe-inline\'">',
           f"<title>{_e(summary.title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{_e(summary.title)}</h1>",
           "<table>" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in summary.info.items())
           + "</table>"]
    if summary.faithfulness:
        out.append("<h2>Faithfulness (AOPC; random-ranking baseline beside each method)</h2>")
        out.append("<p>comprehensiveness: higher is more faithful; sufficiency: lower is more faithful.</p>")
        out.append(_table(faithfulness_rows(summary), FAITH_COLUMNS))
    if summary.curves:
        out.append(f'<h2>Perturbation curves</h2><img alt="perturbation curves" '
                   f'src="{curves_png(summary.bins, summary.curves)}">')
    if summary.plausibility:
        cols = ["method", *next(iter(summary.plausibility.values())).keys()]
        out.append("<h2>Plausibility (against the human rationales)</h2>" + _table(plausibility_rows(summary), cols))
    if summary.rationales:
        out.append("<h2>Rationale searches</h2>" + _table(rationale_rows(summary), RATIONALE_COLUMNS))
        out.extend(f"<p>{_e(line)}</p>" for line in rationale_lines(summary))
    if summary.agreement:
        out.append("<h2>Agreement between methods (mean over examples)</h2>")
        out.extend(f'<img alt="agreement {_e(metric)}" src="{agreement_png(summary.methods, m, metric)}">'
                   for metric, m in summary.agreement.items())
    if summary.examples:
        out.append("<h2>Examples</h2>")
        out.append(f'<p class="legend">colours: <span class="tok" style="background-color:{hex_rgb(cell_rgb(1.0))};'
                   f'color:{hex_rgb(text_rgb(cell_rgb(1.0)))}">positive</span> / <span class="tok" '
                   f'style="background-color:{hex_rgb(cell_rgb(-1.0))};color:{hex_rgb(text_rgb(cell_rgb(-1.0)))}">'
                   "negative</span> score, each method's row scaled by its largest |score| (special tokens grey and "
                   "left out of the scale; a red ! marks a non-finite score); hover a token for its score</p>")
        out.extend(_example_html(ex) for ex in summary.examples)
    out.append("</body></html>")
    return "\n".join(out)


def render_run_markdown(summary: RunSummary) -> str:
    """A markdown summary: the run's facts and the faithfulness, plausibility and agreement tables."""
    lines = [f"# {summary.title}", ""]
    lines += [f"- {k}: {v}" for k, v in summary.info.items()] + [""]
    if summary.faithfulness:
        lines += ["## Faithfulness (AOPC, random baseline beside each method)", "",
                  markdown_table(faithfulness_rows(summary), FAITH_COLUMNS, floatfmt=".4f")]
    if summary.plausibility:
        lines += ["## Plausibility", "", markdown_table(plausibility_rows(summary), floatfmt=".4f")]
    if summary.rationales:
        table = markdown_table(rationale_rows(summary), RATIONALE_COLUMNS, floatfmt=".2f")
        lines += ["## Rationale searches", "", table, "", *[f"- {line}" for line in rationale_lines(summary)], ""]
    for metric, m in summary.agreement.items():
        rows = [{"method": a, **{b: float(m[i, j]) for j, b in enumerate(summary.methods)}}
                for i, a in enumerate(summary.methods)]
        lines += [f"## Agreement: {metric}", "", markdown_table(rows, floatfmt=".3f")]
    return "\n".join(lines)


__all__ = ["ExampleView", "RunSummary", "agreement_png", "curves_png", "render_run_html", "render_run_markdown"]
