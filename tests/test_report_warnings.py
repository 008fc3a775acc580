"""What is not what it seems is shown by every view of the report layer: warnings, a rationale's status (reached,
bound hit), the objective and foil, and the aggregation, in the console, the HTML page, the saved JSON, markdown and
plots; on hand-built attributions."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
from report_samples import classifier_attr, console_text

from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.report import attribution_markdown, plot_heatmap, render_html

NAN = float("nan")
WARNING_TEXT = "scores truncated to 512 tokens <b>check</b>"


def warned_attr() -> Attribution:
    """A contrast with a warning and a rationale whose second search hit its bound without reaching."""
    return Attribution(
        tokens=["The", "Ġcapital", "Ġis", "ĠParis", "Ġand"],
        scores=np.array([[0.2, 0.9, NAN, NAN, NAN], [0.1, 0.4, -0.3, NAN, NAN]]),
        target_tokens=["Ġis", "ĠParis"],
        target_positions=[2, 3],
        method="greedy",
        objective="contrast",
        foil_tokens=["Ġwas", "ĠLyon"],
        rationale=Rationale(positions=[[1], []], reached=[True, False], bound_hit=[False, True]),
        warnings=[WARNING_TEXT],
    )


def test_console_shows_warnings_rationale_status_and_objective() -> None:
    text = console_text(warned_attr())
    assert f"⚠ WARNING: {WARNING_TEXT}" in text
    assert "⚠ WARNING: rationale not reached for 1 of 2 target(s) (1 '␣Paris'); search bound hit for 1" in text
    assert "rationale (reached): 1:␣capital" in text
    assert "rationale (not reached · bound hit): (empty)" in text
    assert "explains log p(target) − log p(foil)" in text  # two different foils: named per row
    assert "vs '␣was'" in text and "vs '␣Lyon'" in text
    one_foil = console_text(dataclasses.replace(warned_attr(), foil_tokens=["ĠLyon", "ĠLyon"]))
    assert "explains log p(target) − log p(foil '␣Lyon')" in one_foil
    plain = console_text(classifier_attr())
    assert "explains log p(target)" in plain and "⚠" not in plain and "rationale" not in plain


def test_console_shows_the_aggregation() -> None:
    attr = Attribution(tokens=["a", "b", "c"], scores=np.ones((1, 3)), target_tokens=["y"], target_positions=[None])
    text = console_text(attr.aggregate("max", by=[[0, 1]]).aggregate("sum", by=[[0, 1]]))
    assert "aggregated=sum over explicit groups, of max over explicit groups" in text
    assert "aggregated" not in console_text(attr)


def test_html_shows_warnings_rationale_status_and_objective() -> None:
    page = render_html([warned_attr(), classifier_attr()])
    box = re.search(r'<div class="warn warnings" role="alert">(.*?)</div>', page, re.S)
    assert box and "scores truncated to 512 tokens &lt;b&gt;check&lt;/b&gt;" in box.group(1)
    assert "<b>check</b>" not in page
    assert "rationale not reached for 1 of 2 target(s)" in box.group(1)
    assert '<span class="rstat">reached</span>' in page
    assert '<span class="rstat fail">not reached · bound hit</span>' in page
    assert "explains log p(target) − log p(foil)" in page
    assert '<span class="foil">vs &#x27;␣Lyon&#x27;</span>' in page
    assert page.count("⚠ warnings") == 1  # table of contents: only the first attribution has warnings
    assert 'class="warn warnings"' not in render_html(classifier_attr())


def test_saved_json_keeps_the_warning_and_the_not_reached_marker(tmp_path: Path) -> None:
    data = json.loads(warned_attr().save(tmp_path / "w.json").read_text(encoding="utf-8"))
    assert data["warnings"] == [WARNING_TEXT]
    assert data["rationale"]["reached"] == [True, False] and data["rationale"]["bound_hit"] == [False, True]
    assert data["objective"] == "contrast" and data["foil_tokens"] == ["Ġwas", "ĠLyon"]
    back = Attribution.load(tmp_path / "w.json")
    assert f"⚠ WARNING: {WARNING_TEXT}" in console_text(back)
    assert "not reached · bound hit" in render_html(back)


def test_markdown_and_plot_show_warnings(tmp_path: Path) -> None:
    text = attribution_markdown(warned_attr())
    lines = text.splitlines()
    assert lines[0] == "> **Warning:** scores truncated to 512 tokens &lt;b&gt;check&lt;/b&gt;"
    assert lines[2].startswith("> **Warning:** rationale not reached for 1 of 2 target(s) (1 '␣Paris')")
    assert lines[4] == "> explains log p(target) − log p(foil)" and lines[5] == ""
    assert lines[6].startswith("|   # | token")
    title = plot_heatmap(warned_attr()).axes[0].get_title()
    assert f"WARNING: {WARNING_TEXT}" in title and "explains log p(target)" in title
