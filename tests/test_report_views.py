"""Fast tests of the report layer's views (console, HTML, markdown, plots) on hand-built attributions: tokens,
scores, colours, escaping, self-contained HTML, exact markdown, plot files; and the report package's imports."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_samples import classifier_attr, console_text
from rich.console import Console

from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import InputError
from seqexplain.report import (
    attribution_markdown,
    display_token,
    markdown_table,
    plot_heatmap,
    render_console,
    render_html,
    save_html,
    to_rich,
)
from seqexplain.report._common import cell_rgb, display_matrix

NAN = float("nan")
SCRIPT_TOKEN = "<script>alert(1)</script>"


def causal_attr() -> Attribution:
    """A causal-LM style attribution: NaN above the diagonal, one inf cell, rationales, tricky tokens."""
    tokens = ["<s>", "The", "Ġcat", SCRIPT_TOKEN, "Ċ", "Ġthé", "▁日本", "[bold]x"]
    positions = [2, 5, 7]
    scores = np.full((3, len(tokens)), NAN)
    scores[0, :2] = [0.5, -0.25]
    scores[1, :5] = [0.1, np.inf, -0.4, 0.2, 0.05]
    scores[2, :7] = [0.3, 0.2, -0.1, 0.75, 0.0, -0.6, 0.125]
    return Attribution(
        tokens=tokens,
        scores=scores,
        target_tokens=["Ġcat", "Ġthé", "[bold]x"],
        target_positions=positions,
        method="saliency",
        options={"abs": False, "note": '<b class="evil">"quoted"</b>'},
        model_id='tiny"gpt<2>',
        model_kind="causal",
        target_logprobs=[-1.5, -2.25, -0.5],
        rationale=Rationale(positions=[[1, 0], [2, 0, 3], [3, 5]], reached=[True, True, False],
                            bound_hit=[False, False, True]),
    )


# --------------------------------------------------------------------------------------------- helpers
def test_display_token_markers_and_whitespace() -> None:
    assert display_token("Ġcat") == "␣cat"  # the leading space of a token is shown, never dropped
    assert display_token("▁日本") == "␣日本"
    assert display_token("Ġthé") == "␣thé"  # not valid UTF-8 as bytes: read by its markers
    assert display_token("Ċ") == "⏎"
    assert display_token(" ") == "␣"
    assert display_token("\n\n") == "⏎⏎"
    assert display_token("a\tb") == "a⇥b"
    assert display_token("") == "∅"
    assert display_token("x\u200by") == "x\\u200by"
    assert "\n" not in display_token("line\nbreak")


def test_display_matrix_kinds_and_scale() -> None:
    attr = causal_attr()
    dm = display_matrix(attr, "row_max_abs")
    assert dm.signed
    assert dm.bad[1, 1] and not dm.not_visible[1, 1]
    assert dm.not_visible[0, 2] and not dm.bad[0, 2]
    assert np.isnan(dm.intensity[1, 1])  # flagged cells are never coloured
    # the inf cell does not poison the normalisation of its row
    assert dm.shown[1, 2] == pytest.approx(-1.0)
    assert np.nanmax(np.abs(dm.intensity)) == pytest.approx(1.0)
    assert not display_matrix(classifier_attr()).signed
    assert cell_rgb(0.0) == (255, 255, 255)
    assert cell_rgb(1.0) == (33, 102, 172)
    assert cell_rgb(-1.0) == (178, 24, 43)
    with pytest.raises(InputError):
        display_matrix(attr, "bogus")


# --------------------------------------------------------------------------------------------- console
def test_console_shows_tokens_warning_rationale() -> None:
    text = console_text(causal_attr())
    for token in ["<s>", "The", "␣cat", SCRIPT_TOKEN, "⏎", "␣thé", "␣日本", "[bold]x"]:
        assert token in text
    assert "saliency" in text and 'tiny"gpt<2>' in text
    assert "WARNING" in text and "non-finite" in text and "(target 1 '␣thé', input 1 'The') = inf" in text
    assert "The!" in text  # the non-finite cell carries a marker, not a colour
    assert "[␣cat]" in text and "[␣thé]" in text  # target positions marked, leading space visible
    assert "-2.250" in text
    assert "rationale (reached): 1:The → 0:<s>" in text
    assert "rationale (not reached · bound hit): 3:<script>alert(1)</script> → 5:␣thé" in text
    assert "target position" in text and "not visible" in text


def test_console_no_warning_when_finite_and_classifier() -> None:
    text = console_text(classifier_attr())
    assert "WARNING" not in text
    assert "POSITIVE" in text and "great" in text
    header = next(line for line in text.splitlines() if "input tokens" in line)
    assert "log p" not in header  # no log-probability column without target_logprobs


def test_console_colours_cells_by_sign() -> None:
    console = Console(record=True, width=160, force_terminal=True, color_system="truecolor")
    render_console(causal_attr(), console=console)
    html = console.export_html(inline_styles=True)
    assert "#b2182b" in html.lower()  # the most negative cell of a row is full red
    assert "#2166ac" in html.lower()  # the most positive cell of a row is full blue


def test_console_wraps_and_windows_long_inputs() -> None:
    tokens = [f"tok{k}" for k in range(200)]
    scores = np.linspace(-1, 1, 200)[None, :]
    attr = Attribution(tokens=tokens, scores=scores, target_tokens=["y"], target_positions=[None])
    text = console_text(attr, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "tok0" in text and "tok199" in text
    windowed = console_text(attr, width=80, max_tokens=10)
    assert "tok199" in windowed and "tok189" not in windowed and "190 earlier" in windowed
    with pytest.raises(InputError):
        to_rich(attr, max_tokens=0)


def test_console_empty_attribution() -> None:
    attr = Attribution(tokens=[], scores=np.zeros((0, 0)), target_tokens=[], target_positions=[])
    assert "empty attribution" in console_text(attr)


# ------------------------------------------------------------------------------------------------ HTML
class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _parse(page: str) -> _Collector:
    parser = _Collector()
    parser.feed(page)
    return parser


def test_html_escapes_tokens_and_metadata() -> None:
    page = render_html([causal_attr(), classifier_attr()], title="Report <i>x</i>")
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Report &lt;i&gt;x&lt;/i&gt;</title>" in page
    assert '<b class="evil">' not in page and "&lt;b class=" in page  # options escaped
    assert "tiny&quot;gpt&lt;2&gt;" in page
    parsed = _parse(page)
    script_tags = [a for t, a in parsed.tags if t == "script"]
    assert len(script_tags) == 2  # the JSON data block and the page's own script, nothing from tokens
    assert not any("alert" in s for s in parsed.scripts[1:])


def test_html_has_no_network_references() -> None:
    page = render_html([causal_attr(), classifier_attr()])
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:|//|ftp:)""", page, re.I)
    assert "@import" not in page and "url(" not in page
    for tag, attrs in _parse(page).tags:
        assert "src" not in attrs, tag
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src &#x27;none&#x27;" in csp.group(1)


def test_html_script_hash_matches_csp() -> None:
    page = render_html(causal_attr())
    body = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(body) == 1
    digest = base64.b64encode(hashlib.sha256(body[0].encode("utf-8")).digest()).decode()
    assert f"sha256-{digest}" in page


def test_html_embedded_json_is_safe_and_complete() -> None:
    attr = causal_attr()
    page = render_html(attr)
    block = re.search(r'<script type="application/json" id="seqexplain-data">(.*?)</script>', page, re.S)
    assert block
    raw = block.group(1)
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    scores = data["attributions"][0]["scores"]
    assert scores[1][1] is None  # the inf cell is flagged: left out of the script's colour scale
    assert scores[0][2] is None
    assert scores[2][3] == 0.75


def test_html_hover_values_and_markers() -> None:
    page = render_html([causal_attr(), classifier_attr()])
    assert 'title="input 3: &lt;script&gt;alert(1)&lt;/script&gt;\nscore 0.75\nshown 1.000 (row_max_abs)' in page
    assert "score -0.25" in page and "score 0.5" in page
    assert "not visible to this target" in page
    assert "NON-FINITE score inf" in page
    assert 'class="warn"' in page and "1 non-finite score(s)" in page
    assert 'class="tok bad"' in page and 'class="tok nv tgt"' in page
    assert 'class="tok sc rat"' in page
    assert 'href="#attr-0"' in page and 'href="#attr-1"' in page  # table of contents
    assert "log p = -2.2500" in page
    assert 'rationale (<span class="rstat">reached</span>), in order' in page
    assert '<span class="rstat fail">not reached · bound hit</span>' in page
    assert page.count('class="row"') == 4


def test_html_single_attribution_has_no_toc_and_no_warning() -> None:
    page = render_html(classifier_attr())
    assert 'class="toc"' not in page and 'class="warn"' not in page
    with pytest.raises(InputError):
        render_html([])
    with pytest.raises(InputError):
        render_html(classifier_attr(), normalize="bogus")


def test_save_html_writes_atomically(tmp_path: Path) -> None:
    out = save_html(causal_attr(), tmp_path / "sub" / "r.html", title="t")
    assert out.read_text(encoding="utf-8") == render_html(causal_attr(), title="t")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


# -------------------------------------------------------------------------------------------- markdown
def test_markdown_table_exact() -> None:
    rows = [{"method": "ig", "auc": 0.51234, "n": 3}, {"method": "a|b<c>", "auc": NAN, "ok": True}]
    expected = (
        "| method        |   auc |   n | ok   |\n"
        "| :------------ | ----: | --: | :--- |\n"
        "| ig            | 0.512 |   3 |      |\n"
        "| a\\|b&lt;c&gt; |   nan |     | True |\n"
    )
    assert markdown_table(rows) == expected
    assert markdown_table(rows, columns=["n"], floatfmt=".1f") == "|   n |\n| --: |\n|   3 |\n|     |\n"
    assert markdown_table([], columns=["a"]) == "| a   |\n| :-- |\n"
    with pytest.raises(InputError):
        markdown_table([])


def test_attribution_markdown_exact() -> None:
    attr = Attribution(
        tokens=["a", "Ġ*b*", "c"],
        scores=np.array([[0.5, NAN, NAN], [0.25, -1.0, NAN]]),
        target_tokens=["Ġ*b*", "c"],
        target_positions=[1, 2],
        rationale=Rationale(positions=[[0], [1, 0]], reached=[True, True]),
    )
    expected = (
        "|   # | token  |  t0 ␣\\*b\\* |        t1 c |\n"
        "| --: | :----- | ---------: | ----------: |\n"
        "|   0 | a      | 0.500 (r1) |  0.250 (r2) |\n"
        "|   1 | ␣\\*b\\* |     target | -1.000 (r1) |\n"
        "|   2 | c      |            |      target |\n"
    )
    assert attribution_markdown(attr) == expected


def test_attribution_markdown_flags_nonfinite() -> None:
    text = attribution_markdown(causal_attr())
    assert "**inf**" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
    assert "\\[bold\\]x" in text


# ----------------------------------------------------------------------------------------------- plots
def test_plot_saves_png_svg_pdf(tmp_path: Path) -> None:
    fig = plot_heatmap(causal_attr(), tmp_path / "h.png")
    assert fig.axes
    data = (tmp_path / "h.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    plot_heatmap(classifier_attr(), tmp_path / "h.svg", normalize="none")
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()
    plot_heatmap(classifier_attr(), tmp_path / "h.pdf")
    assert (tmp_path / "h.pdf").read_bytes().startswith(b"%PDF")


def test_plot_masks_nan_and_rejects_bad_input(tmp_path: Path) -> None:
    fig = plot_heatmap(causal_attr())
    image = fig.axes[0].images[0].get_array()
    assert np.ma.is_masked(image) and bool(image.mask[0, 5]) and bool(image.mask[1, 1])
    with pytest.raises(InputError):
        plot_heatmap(causal_attr(), tmp_path / "h.bmp")
    with pytest.raises(InputError):
        plot_heatmap(Attribution(tokens=[], scores=np.zeros((0, 0)), target_tokens=[], target_positions=[]))


# ---------------------------------------------------------------------------------------- layering
def test_report_imports_only_attribution_and_errors() -> None:
    root = Path(__file__).resolve().parents[1] / "src" / "seqexplain" / "report"
    allowed = {"seqexplain.attribution", "seqexplain.errors", "seqexplain.atomic"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqexplain"):
                assert node.module in allowed or node.module.startswith("seqexplain.report"), (path, node.module)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("seqexplain") or alias.name in allowed, (path, alias.name)


def test_html_scores_are_reachable_by_keyboard_and_the_legend_states_the_scale() -> None:
    """A token's score was only in its tooltip and the status bar followed the mouse alone; and the legend said
    −1 … +1 while raw scores (0.109 drawn as full blue) are scaled by the largest |value| shown. Every token is a
    Tab stop, the script updates the status bar on focus too, and the legend says how colours are scaled."""
    page = render_html([causal_attr(), classifier_attr()])
    tokens = [attrs for tag, attrs in _parse(page).tags if tag == "span" and "tok" in (attrs.get("class") or "").split()
              and attrs.get("data-j") is not None]
    assert tokens and all(attrs.get("tabindex") == "0" for attrs in tokens)
    assert 'addEventListener("focusin", show)' in page
    assert "colour = value ÷ the largest |value| shown" in page and "+1 (positive)" not in page
