"""Rendering of attributions: rich console heatmaps, self-contained HTML, matplotlib plots, markdown tables.

This layer imports only :mod:`seqexplain.attribution` and :mod:`seqexplain.errors` from the package.
matplotlib is imported only when :func:`plot_heatmap` is called.
"""

from __future__ import annotations

from seqexplain.report._common import covered_text, display_token, input_labels, target_label, visible_text
from seqexplain.report.console import render_console, to_rich
from seqexplain.report.html import render_html, save_html
from seqexplain.report.markdown import attribution_markdown, markdown_table
from seqexplain.report.plots import plot_heatmap

__all__ = [
    "attribution_markdown",
    "covered_text",
    "display_token",
    "input_labels",
    "markdown_table",
    "plot_heatmap",
    "render_console",
    "render_html",
    "save_html",
    "target_label",
    "to_rich",
    "visible_text",
]
