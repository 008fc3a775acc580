"""The report of a run: corpus numbers checked against plain loops over results.parquet, a self-contained HTML
page (embedded PNGs, no script, nothing loaded) and a markdown summary; the page in headless Chromium (screenshot,
no console errors)."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from run_helpers import config_dict, corpus, tiny_classifier, write_config

from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run
from seqexplain.runs.store import RunStore
from seqexplain.runs.summary import summarize

CHROMIUM = os.environ.get("SEQEXPLAIN_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    model, data = tiny_classifier(base / "model"), corpus(base / "data.jsonl", 8)
    cfg = read_config(write_config(base / "run.yaml", config_dict(
        model, data, base / "out", output={"dir": str(base / "out"), "report": True, "report_examples": 3})))
    result = run(cfg, progress=False)
    return cfg, result, base / "out"


def test_summary_numbers_match_plain_loops(finished):
    cfg, result, out = finished
    rows = pq.read_table(out / "results.parquet").to_pylist()
    summary = summarize(RunStore(out, result.config_hash, 8, 4), cfg, 2)
    methods = ["gradient_norm", "grad_x_input", "occlusion"]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        assert summary.faithfulness[m]["aopc_comprehensiveness"] == pytest.approx(
            np.mean([r["aopc_comprehensiveness"] for r in mine]))
        assert summary.curves[m]["sufficiency"] == pytest.approx(
            np.mean([r["sufficiency"][0] for r in mine], axis=0).tolist())
        # token F1, micro: pooled over examples
        tp = sum(len(set(r["predicted_rationale"]) & set(r["gold_positions"])) for r in mine)
        p = tp / sum(len(r["predicted_rationale"]) for r in mine)
        rec = tp / sum(len(r["gold_positions"]) for r in mine)
        f1 = 0.0 if tp == 0 else 2 * p * rec / (p + rec)
        assert summary.plausibility[m]["token_f1_micro"] == pytest.approx(f1)
        assert summary.plausibility[m]["examples"] == 8
    a, b = methods.index("grad_x_input"), methods.index("occlusion")
    values = [json.loads(r["agreement"])["kendall_tau"]["occlusion"] for r in rows if r["method"] == "grad_x_input"]
    assert summary.agreement["kendall_tau"][a, b] == pytest.approx(np.nanmean(values))
    assert summary.agreement["kendall_tau"][a, a] == 1.0
    assert [e.index for e in summary.examples] == [0, 1]
    assert list(summary.examples[0].attributions) == methods and summary.examples[0].gold == [1]


def test_non_finite_values_left_out_of_the_means_are_counted(finished, monkeypatch):
    """A NaN AOPC was left out of its method's mean with no word: the table read as a mean over every example."""
    import pyarrow as pa

    cfg, result, out = finished
    store = RunStore(out, result.config_hash, 8, 4)
    shards = [store.read_shard(s) for s in range(store.n_shards)]
    rows = shards[0].to_pylist()
    first = next(r for r in rows if r["method"] == "occlusion")
    first["aopc_comprehensiveness"] = float("nan")
    shards[0] = pa.Table.from_pylist(rows, schema=shards[0].schema)
    monkeypatch.setattr(RunStore, "tables", lambda self, columns=None: iter(
        [t.select(columns) if columns else t for t in shards]))
    summary = summarize(store, cfg, 0)
    assert summary.info["non-finite values left out of the means"] == "occlusion aopc_comprehensiveness: 1 of 8"
    mine = [r for t in shards for r in t.to_pylist() if r["method"] == "occlusion"]
    assert summary.faithfulness["occlusion"]["aopc_comprehensiveness"] == pytest.approx(
        np.nanmean([r["aopc_comprehensiveness"] for r in mine]))
    monkeypatch.undo()
    assert "non-finite values left out of the means" not in summarize(store, cfg, 0).info


def test_the_run_folder_holds_the_warnings_of_the_run(finished):
    cfg, result, out = finished
    saved = json.loads((out / "warnings.json").read_text(encoding="utf-8"))
    assert isinstance(saved["warnings"], list) and "command" in saved


def test_html_is_self_contained_and_markdown_has_the_tables(finished):
    _, result, out = finished
    assert result.reports == [out / "report.html", out / "summary.md"]
    page = (out / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 + 3  # perturbation curves + one agreement heatmap per metric
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert page.count('<div class="ex">') == 3 and page.count('class="tok gold"') == 3 * 3
    assert "random_aopc_comprehensiveness" in page
    assert "score, each method's row scaled by its largest |score|" in page  # the colours have a legend
    md = (out / "summary.md").read_text()
    assert "## Faithfulness" in md and "## Plausibility" in md and "## Agreement: kendall_tau" in md
    assert md.count("| grad_x_input") >= 4


def _chromium(tmp_path: Path, page: Path, shot: Path) -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run this")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-extensions",
           "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
           page.resolve().as_uri()]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


@pytest.mark.browser
def test_report_in_chromium_screenshot_and_no_console_errors(finished, tmp_path):
    _, _, out = finished
    # the check can fail: a page that logs to the console is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('seqexplain-broken')</script></body></html>")
    assert "seqexplain-broken" in _chromium(tmp_path, bad, tmp_path / "bad.png")
    shot = tmp_path / "report.png"
    log = _chromium(tmp_path, out / "report.html", shot)
    assert "CONSOLE" not in log and "Refused to" not in log, log[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and struct.unpack(">II", data[16:24]) == (1200, 1600)
    assert len(data) > 50_000  # tables, plots and heatmaps drawn, not a blank page


def test_run_whose_examples_are_all_skipped_reports_without_crashing(tmp_path):
    """Every example longer than ``data.max_length`` (no rows at all): the reports used to crash in matplotlib (a
    method's curve was one NaN, not one per bin); now they are written, counting the skipped examples, with the
    faithfulness curves NaN at every bin and no plausibility section."""
    model, data = tiny_classifier(tmp_path / "model"), corpus(tmp_path / "data.jsonl", 3)
    cfg = read_config(write_config(tmp_path / "run.yaml", config_dict(
        model, data, tmp_path / "out", data={"max_length": 3}, output={"dir": str(tmp_path / "out"), "report": True})))
    result = run(cfg, progress=False)
    assert result.manifest["n_rows"] == 0 and result.manifest["n_skipped"] == 3
    summary = summarize(RunStore(result.folder, result.config_hash, 3, cfg.shard_size), cfg)
    bins = cfg.metrics.faithfulness.bins
    for curve in summary.curves.values():
        assert all(len(v) == len(bins) and np.isnan(v).all() for v in curve.values())
    assert summary.plausibility == {} and summary.examples == []
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "- skipped (too long): 3\n" in md and "- rows: 0\n" in md
    assert (tmp_path / "out" / "report.html").stat().st_size > 0


def test_an_example_heatmap_flags_a_non_finite_cell():
    """A +inf score was drawn grey, as a not-visible or special token, with no flag or tooltip."""
    import numpy as np

    from seqexplain.attribution import Attribution
    from seqexplain.report.run_report import ExampleView, _example_html

    a = Attribution(tokens=["a", " b", " c"], scores=np.array([[np.inf, 0.2, np.nan]]), target_tokens=["x"],
                    target_positions=[None], offsets=[(0, 1), (1, 3), (3, 5)], segments=["source"] * 3,
                    text="a b c", method="m")
    html = _example_html(ExampleView(index=0, id="e0", attributions={"m": a}, gold=None))
    assert '<span class="tok bad" title="inf (non-finite)">a!</span>' in html
    assert '<span class="tok" style="color:#6e6e6e">␣c</span>' in html  # a not-visible cell stays grey


@pytest.mark.parametrize("intensity", [i / 20 for i in range(-20, 21)])
def test_token_text_contrast_meets_wcag_aa_on_every_colour(intensity):
    """White text on mid-blue (intensity ≈ +0.69) had a contrast of 3.15:1. Oracle: the WCAG 2 contrast formula,
    written out here; AA asks 4.5:1 for body text."""
    from seqexplain.report._common import cell_rgb, text_rgb

    def luminance(rgb):
        chan = [c / 255 for c in rgb]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in chan]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    bg = cell_rgb(intensity)
    a, b = sorted((luminance(bg), luminance(text_rgb(bg))))
    assert (b + 0.05) / (a + 0.05) >= 4.5


def test_an_example_with_several_targets_names_the_one_drawn():
    """A causal LM's run report headed an example "target Ġm" (the byte-level token) and drew its first target of 7
    without saying so."""
    from seqexplain.attribution import Attribution
    from seqexplain.report.run_report import ExampleView, _example_html

    text, target = "The cat", " sat on"
    attr = Attribution(tokens=["The", "Ġcat", "Ġsat", "Ġon"], scores=np.array([[0.1, 0.2, np.nan, np.nan],
                                                                              [0.3, 0.1, 0.5, np.nan]]),
                       target_tokens=["Ġsat", "Ġon"], target_positions=[2, 3],
                       offsets=[(0, 3), (3, 7), (0, 4), (4, 7)], segments=["source", "source", "target", "target"],
                       text=text, target_text=target)
    html = _example_html(ExampleView(0, "a", {"gradient_norm": attr}, None))
    assert "target 1 of 2 (␣sat; the others' scores are in results.parquet)" in html and "Ġ" not in html


def test_a_run_in_reduced_precision_says_so_in_both_reports(tmp_path):
    """A run with ``model.dtype = "bfloat16"`` wrote reports that never said so (only run.json held it), while a
    single result's views name their precision. The reports say what the shards were computed in (recorded by
    the invocation that wrote each), not what the configuration asked."""
    model = tiny_classifier(tmp_path / "model")
    data = corpus(tmp_path / "d.jsonl", 2)
    cfg = read_config(write_config(tmp_path / "c.yaml", config_dict(
        model, data, tmp_path / "out", model={"path": str(model), "dtype": "bfloat16", "autocast": "bf16"},
        methods=[{"name": "gradient_norm"}], metrics={"faithfulness": {"enabled": False}},
        output={"dir": str(tmp_path / "out"), "report": True})))
    run(cfg, progress=False)
    for name, said in (("summary.md", "- precision: bfloat16 autocast, bfloat16 weights"),
                       ("report.html", "<td>precision</td><td>bfloat16 autocast, bfloat16 weights</td>")):
        assert said in (tmp_path / "out" / name).read_text(encoding="utf-8"), name
