"""Audit of the report views (console, HTML, markdown, plot): text that cannot be encoded, the target's own cell,
and warnings reaching every view."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from rich.console import Console

from seqexplain.attribution import Attribution
from seqexplain.report import render_console, save_html
from seqexplain.report.markdown import attribution_markdown
from seqexplain.report.plots import plot_heatmap


def _console_text(attr: Attribution, **kw) -> str:
    buf = io.StringIO()
    render_console(attr, console=Console(file=buf, width=200, no_color=True), **kw)
    return buf.getvalue()


def test_lone_surrogates_in_any_text_do_not_crash_a_view(tmp_path: Path) -> None:
    """A loaded file may hold lone surrogates (JSON ``"\\ud800"``); every view writes them as ``\\ud800``."""
    a = Attribution(tokens=["\ud800", "b"], scores=np.ones((1, 2)), target_tokens=["\udfff"], target_positions=[None],
                    warnings=["careful \ud800 here"], model_id="m\ud800", method="x\ud800", options={"o": "\ud800"},
                    groups={"g\ud800": [[0, 1]]})
    a = a.aggregate("sum", by="g\ud800")
    page = save_html(a, tmp_path / "a.html").read_text(encoding="utf-8")
    assert "careful \\ud800 here" in page and "m\\ud800" in page
    assert "careful \\ud800 here" in attribution_markdown(a).encode("utf-8").decode("utf-8")
    fig = plot_heatmap(a, tmp_path / "a.svg")
    assert "WARNING: careful \\ud800 here" in fig.axes[0].get_title()
    for numbers in (True, False):  # a real UTF-8 stream, as stdout is, refuses surrogates
        stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        render_console(a, console=Console(file=stream, width=200, force_terminal=not numbers), numbers=numbers)
        stream.flush()
        assert "careful \\ud800 here" in stream.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]


def _word_split_target() -> Attribution:
    """A causal-LM row whose target ``is`` completes the word ``Paris``: aggregated by words, the target's own
    group holds the visible score of ``Par``."""
    a = Attribution(tokens=["<s>", "Par", "is", " big"], scores=np.array([[0.5, 0.25, np.nan, np.nan]]),
                    target_tokens=["is"], target_positions=[2], offsets=[None, (0, 3), (3, 5), (5, 9)],
                    segments=["special", "source", "source", "source"], text="Paris big", model_kind="causal")
    words = a.aggregate("sum")
    assert words.tokens == ["<s>", "Paris", "big"] and words.target_positions == [1]
    np.testing.assert_array_equal(words.scores, [[0.5, 0.25, np.nan]])
    return words


def test_console_shows_the_score_of_a_visible_target_cell() -> None:
    text = _console_text(_word_split_target(), numbers=True, top_k=0)
    assert "[Paris]=+0.25" in text and "<s>=+0.5" in text
    assert "(+1 not visible)" in text  # 'big' only


def test_console_colours_a_visible_target_cell() -> None:
    from seqexplain.report.console import to_rich

    buf = io.StringIO()
    Console(file=buf, width=200, force_terminal=True, color_system="truecolor").print(
        to_rich(_word_split_target(), top_k=0))
    line = next(row for row in buf.getvalue().splitlines() if "[Paris]" in row)
    cell = line[line.rindex("\x1b[", 0, line.index("[Paris]")):line.index("[Paris]")]
    assert "48;2;" in cell  # a background colour from the scale, not only the target marker


def _everything_to_warn() -> Attribution:
    from seqexplain.attribution_rationale import Rationale

    return Attribution(tokens=["<s>", "a", "</style>", "c"], scores=np.array([[0.5, np.inf, -1.0, np.nan]]),
                       target_tokens=["c"], target_positions=[3], model_kind="causal", method="greedy",
                       rationale=Rationale(positions=[[1, 2]], reached=[False], bound_hit=[True]),
                       warnings=["first <warning> & more", "second warning"])


def test_cli_show_reports_every_warning_in_console_and_html(runner, tmp_path: Path) -> None:
    from seqexplain.cli import app

    saved = _everything_to_warn().save(tmp_path / "a.json")
    page = tmp_path / "a.html"
    for extra in ([], ["--aggregate", "sum"]):
        result = runner.invoke(app, ["show", str(saved), "--html", str(page), *extra])
        assert result.exit_code == 0, result.output
        out, html = " ".join(result.output.split()), page.read_text(encoding="utf-8")
        for fragment in ("first <warning> & more", "second warning", "rationale not reached for 1 of 1",
                         "search bound hit for 1", "1 non-finite score"):
            assert fragment in out, (extra, fragment)
        for fragment in ("first &lt;warning&gt; &amp; more", "second warning", "rationale not reached for 1 of 1",
                         "1 non-finite score"):
            assert fragment in html, (extra, fragment)
        assert "</style>" not in html.split("</style>", 1)[1]  # the token is escaped, the stylesheet closes once


def test_cli_show_refuses_a_damaged_file_without_a_traceback(runner, tmp_path: Path) -> None:
    from seqexplain.cli import app

    saved = _everything_to_warn().save(tmp_path / "a.json")
    text = saved.read_text(encoding="utf-8")
    for name, damaged in {"cut": text[: len(text) // 2], "deep": "[" * 100_000,
                          "cells": text.replace('"meta": {}', '"meta": {"nonfinite_cells": [[0, 99]]}')}.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(damaged, encoding="utf-8")
        result = runner.invoke(app, ["show", str(bad)])
        assert result.exit_code == 2, (name, result.output)
        assert damaged != text and "Traceback" not in result.output, (name, result.output)
        assert bad.name in "".join(result.output.split()), (name, result.output)


def test_colour_scale_neither_inverts_nor_saturates_on_edge_cases() -> None:
    from seqexplain.report._common import NEGATIVE_RGB, POSITIVE_RGB, cell_rgb, display_matrix

    negative = Attribution(tokens=list("abc"), scores=np.array([[-1.0, -4.0, -2.0]]), target_tokens=["y"],
                           target_positions=[None])
    dm = display_matrix(negative, "row_max_abs")
    assert dm.signed and cell_rgb(float(dm.intensity[0, 1])) == NEGATIVE_RGB
    np.testing.assert_allclose(dm.intensity, [[-0.25, -1.0, -0.5]])
    with_inf = Attribution(tokens=list("abc"), scores=np.array([[np.inf, 4.0, 2.0], [1.0, -np.inf, np.nan]]),
                           target_tokens=["y", "z"], target_positions=[None, None])
    for how in ("none", "max_abs", "row_max_abs", "row_sum_abs"):
        dm = display_matrix(with_inf, how)
        assert dm.bad[0, 0] and dm.bad[1, 1] and not dm.bad[1, 2] and dm.not_visible[1, 2]
        assert not dm.signed  # -inf is flagged, not a negative score
        assert float(np.nanmax(dm.intensity)) == 1.0  # the finite cells use the whole scale
    assert cell_rgb(float(display_matrix(with_inf, "none").intensity[0, 1])) == POSITIVE_RGB


def test_top_k_table_names_a_flagged_cell_it_cannot_rank() -> None:
    """A flagged NaN (a visible cell whose score was not finite) has no rank; the top-k table says so in a caption
    instead of leaving a visible position out unseen. A NaN that is only "not visible" is not named."""
    a = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[0.5, np.nan, 0.25, np.nan]]), target_tokens=["e"],
                    target_positions=[None], meta={"nonfinite_cells": [[0, 1]]})
    text = _console_text(a, numbers=True, top_k=5)
    assert "top 2 inputs" in text
    assert "not ranked (non-finite score): #1 b" in text and "#3" not in text
    clean = Attribution(tokens=["a", "b"], scores=np.array([[0.5, np.nan]]), target_tokens=["e"],
                        target_positions=[None])
    assert "not ranked" not in _console_text(clean, numbers=True, top_k=5)
