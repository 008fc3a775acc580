"""The HTML report in a real browser: headless Chromium, networking disabled, DOM dumped after scripts ran.

Tokens carry script-injection payloads that would mutate the DOM if they ever executed (set ``data-pwned`` on
``<body>``, add an ``<img>``); the dumped DOM must show them as text only. The page's own script must run
(it enables the normalisation selector and honours ``?norm=``), which shows the CSP hash is right and that a
silent page is not mistaken for a safe one.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when ``/usr/bin/chromium`` (or
``$SEQEXPLAIN_CHROMIUM``) is missing.
"""

from __future__ import annotations

import os
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.report import save_html
from seqexplain.report._common import cell_rgb, display_matrix

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SEQEXPLAIN_CHROMIUM", "/usr/bin/chromium")
SCRIPT_TOKEN = "<script>alert(1)</script>"
PAYLOADS = [
    SCRIPT_TOKEN,
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">",
    "</script><script>document.body.setAttribute('data-pwned','close')</script>",
    "\"><script>document.body.setAttribute('data-pwned','attr')</script>",
]
NAN = float("nan")


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run this")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _attributions() -> list[Attribution]:
    tokens = ["<s>", "Hello", "Ġwörld", *PAYLOADS, "Ċ", "Ġend"]
    n = len(tokens)
    rng = np.random.default_rng(0)
    positions = [2, n - 1]
    scores = np.full((2, n), NAN)
    for i, p in enumerate(positions):
        scores[i, :p] = rng.normal(size=p)
    scores[1, 1] = np.inf
    first = Attribution(
        tokens=tokens,
        scores=scores,
        target_tokens=["Ġwörld", "Ġend"],
        target_positions=positions,
        method="saliency",
        model_id=PAYLOADS[3],
        model_kind="causal",
        options={"x": PAYLOADS[2]},
        target_logprobs=[-1.0, -2.0],
        rationale=Rationale(positions=[[1, 0], [3, 4, 1]], reached=[True, False]),
    )
    second = Attribution(
        tokens=tokens[:5],
        scores=np.abs(rng.normal(size=(1, 5))),
        target_tokens=[PAYLOADS[1]],
        target_positions=[None],
        method="occlusion",
        model_id="clf",
        model_kind="classifier",
    )
    return [first, second]


class _Dom(HTMLParser):
    """Collects elements, the text of every ``span.tok``, and script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.tok_texts: list[str] = []
        self.tok_styles: list[tuple[str, str, str]] = []  # (section k, row i, j) -> style
        self._tok_depth = 0
        self._buf: list[str] = []
        self._section = ""
        self._row = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        classes = (a.get("class") or "").split()
        if tag == "section" and "attr" in classes:
            self._section = a.get("data-k") or ""
        if tag == "div" and "row" in classes:
            self._row = a.get("data-i") or ""
        if tag == "span" and "tok" in classes and "data-j" in a:
            self._tok_depth, self._buf = 1, []
            if "sc" in classes:
                self.tok_styles.append((f"{self._section}/{self._row}/{a['data-j']}", a.get("style") or "", ""))
        elif self._tok_depth:
            self._tok_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._tok_depth:
            self._tok_depth -= 1
            if self._tok_depth == 0:
                self.tok_texts.append("".join(self._buf))

    def handle_data(self, data: str) -> None:
        if self._tok_depth:
            self._buf.append(data)


def _dump(tmp_path: Path, page: Path, query: str = "") -> _Dom:
    result = _chromium(tmp_path, "--dump-dom", page.resolve().as_uri() + query)
    dom = _Dom()
    dom.feed(result.stdout)
    assert dom.elements, "chromium returned an empty DOM"
    return dom


def test_tokens_render_as_text_and_never_execute(tmp_path: Path) -> None:
    _require_chromium()
    page = save_html(_attributions(), tmp_path / "report.html", title=PAYLOADS[0])
    dom = _dump(tmp_path, page)

    # every payload is shown as literal text in the heatmap
    for payload in PAYLOADS:
        assert payload in dom.tok_texts, payload
    # nothing from the data became an element or ran
    scripts = [a for tag, a in dom.elements if tag == "script"]
    assert len(scripts) == 2, scripts  # the JSON data block and the page's own script
    assert sorted(a.get("type") or "" for a in scripts) == ["", "application/json"]
    assert not [a for tag, a in dom.elements if tag == "img"]
    body = [a for tag, a in dom.elements if tag == "body"][0]
    assert "data-pwned" not in body, body
    # ... while the page's own script did run (it enables the selectors)
    selects = [a for tag, a in dom.elements if tag == "select"]
    assert len(selects) == 2 and all("disabled" not in a for a in selects)
    # target positions, not-visible and non-finite cells are marked
    classes = [(a.get("class") or "") for tag, a in dom.elements if tag == "span"]
    assert any("bad" in c.split() for c in classes)
    assert any("nv" in c.split() for c in classes)
    assert any("tgt" in c.split() for c in classes)


def test_script_recolours_like_python(tmp_path: Path) -> None:
    """``?norm=max_abs`` makes the page's script recolour every cell; it must match the Python colours."""
    _require_chromium()
    attrs = _attributions()
    page = save_html(attrs, tmp_path / "report.html", normalize="row_max_abs")
    dom = _dump(tmp_path, page, "?norm=max_abs")
    expected: dict[str, tuple[int, int, int]] = {}
    for k, attr in enumerate(attrs):
        dm = display_matrix(attr, "max_abs")
        for i, j in zip(*np.nonzero(np.isfinite(dm.intensity)), strict=True):
            expected[f"{k}/{i}/{j}"] = cell_rgb(float(dm.intensity[i, j]))
    seen = {key: style for key, style, _ in dom.tok_styles}
    assert set(seen) == set(expected)
    for key, rgb in expected.items():
        assert f"background-color: rgb({rgb[0]}, {rgb[1]}, {rgb[2]})" in seen[key], (key, seen[key], rgb)


def test_screenshot_is_a_png(tmp_path: Path) -> None:
    _require_chromium()
    page = save_html(_attributions(), tmp_path / "report.html", title="seqexplain browser test")
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", page.resolve().as_uri())
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 900)


def test_script_leaves_flagged_finite_cells_out_of_the_scale(tmp_path: Path) -> None:
    """An aggregated cell can hold a finite value yet be flagged (a member was a NaN at a visible position):
    Python leaves it out of the colour scale, and the page's script must too, or every other cell paled when
    the reader switched the normalisation."""
    _require_chromium()
    base = Attribution(tokens=["a", "b", "c", "d"], scores=np.array([[1.0, NAN, 2.0, -0.5]]), target_tokens=["y"],
                       target_positions=[None], meta={"nonfinite_cells": [[0, 1]]})
    attr = base.aggregate("sum", by=[[0, 1]])  # the group {a, b}: value 1.0, flagged
    attr.scores[0, 0] = 100.0
    assert attr.nonfinite_cells() == [(0, 0)]
    page = save_html(attr, tmp_path / "report.html", normalize="row_max_abs")
    for how in ("max_abs", "row_sum_abs"):
        dom = _dump(tmp_path, page, f"?norm={how}")
        dm = display_matrix(attr, how)
        seen = {key: style for key, style, _ in dom.tok_styles}
        for j in (1, 2):
            rgb = cell_rgb(float(dm.intensity[0, j]))
            assert f"background-color: rgb({rgb[0]}, {rgb[1]}, {rgb[2]})" in seen[f"0/0/{j}"], (how, j, seen)
