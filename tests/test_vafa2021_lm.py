"""Vafa et al. (2021) LM recipes: aggregation, result store, and the pipelines in quick mode."""

from __future__ import annotations

import json

import pytest

import seqexplain
from seqexplain.data.paths import data_root
from seqexplain.experiments import vafa2021_lm as V
from seqexplain.experiments.vafa2021_lm_eval import analogy_summary, lambada_summary, word_rationale
from seqexplain.experiments.vafa2021_lm_models import leakage_check
from seqexplain.experiments.vafa2021_lm_settings import DEFAULT_LIMITS, example_limit, settings
from seqexplain.models.hf import HFModel


def _need(*folders: str):
    root = data_root()
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        pytest.skip(f"needs the data folder(s) {', '.join(missing)} under {root}")
    return root


def test_word_rationale_and_lambada_summary(llama):
    model, tok = llama
    ex = HFModel(model, tok, "causal").encode("The cat sat on the", " mat and log")
    first = ex.target_positions[0]
    union = word_rationale(ex, [[first - 1, 2], [first, 0, 2], [first + 1, first - 1]])
    assert union == [0, 2, first - 1]  # target positions dropped, union sorted
    recs = [
        {"kind": "rationale", "method": "greedy", "length": 2, "gold": [1, 2, 3], "tp": 2, "iou": 2 / 3,
         "reached": True, "n_targets": 1, "seconds": 1.0},
        {"kind": "rationale", "method": "greedy", "length": 4, "gold": [5], "tp": 1, "iou": 1 / 4,
         "reached": False, "n_targets": 2, "seconds": 3.0},
        {"kind": "check", "method": "greedy"},
    ]
    (row,) = lambada_summary(recs, ["greedy"])
    # pooled F1 over both passages: P = 3/6, R = 3/4
    assert row["n"] == 2 and row["Length"] == 3.0 and row["IOU"] == pytest.approx((2 / 3 + 1 / 4) / 2)
    assert row["F1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    assert row["reached"] == 0.5 and row["s/token"] == pytest.approx(4.0 / 3)


def test_analogy_summary_ratio_uses_found_exhaustive():
    base = {"kind": "rationale", "antecedent": [3], "distractor": [5, 6], "seconds": 1.0}
    recs = [
        {**base, "id": "a", "method": "greedy", "rationale": [3, 9]},
        {**base, "id": "b", "method": "greedy", "rationale": [1, 5, 9]},
        {**base, "id": "a", "method": "exhaustive", "rationale": [3, 9]},
        {**base, "id": "b", "method": "exhaustive", "rationale": []},  # bound hit: no Ratio for b
    ]
    greedy, exhaustive = analogy_summary(recs, ["greedy", "exhaustive"])
    assert greedy["n"] == 2 and greedy["Length"] == 2.5 and greedy["Ratio"] == 1.0 and greedy["n Ratio"] == 1
    assert greedy["Ante"] == 0.5 and greedy["No D"] == 0.5
    assert exhaustive["n"] == 1 and exhaustive["Ratio"] == 1.0
    ex_row = analogy_summary(recs, ["exhaustive"], exhaustive_max_size=2)[0]
    assert ex_row["n"] == 1 and ex_row["n searched"] == 2  # the search that gave up is counted as searched
    greedy = analogy_summary(recs, ["greedy"], exhaustive_max_size=2)[0]
    assert greedy["n searched"] == 2 and greedy["Ratio ≤"] == pytest.approx((2 / 2 + 3 / 3) / 2)


def test_leakage_check():
    train = "the quick brown fox jumps over the lazy dog every single day"
    got = leakage_check(["a quick brown fox jumps over the lazy dog every morning", "nothing shared here"],
                        train, n=8)
    assert got == {"texts": 2, "with_shared_window": 1, "window_words": 8}


def test_settings_and_limits():
    s = settings(False, max_size=7)
    assert s.max_size == 7 and s.ig_steps == 8
    name, opts = s.method_options("integrated_gradients")
    assert name == "baseline_rationale" and opts["order_options"] == {"steps": 8}
    assert example_limit("lambada", None, False) == DEFAULT_LIMITS["lambada"]
    assert example_limit("lambada", 0, False) is None
    with pytest.raises(seqexplain.errors.InputError):
        s.method_options("nope")


def test_lambada_quick_pipeline(tmp_path):
    root = _need("annotated_lambada")
    methods = ["greedy", "gradient_norm", "attention_last"]
    out = V.run_lambada(tmp_path, quick=True, data_root=root, limit=2, methods=methods, progress=False)
    assert out["passages"] == 2 and out["of"] == 107
    assert [r["method"] for r in out["table"]] == ["greedy", "gradient norm", "last attention"]
    for row in out["table"]:
        assert row["n"] == 2 and 0.0 <= row["IOU"] <= 1.0 and 0.0 <= row["F1"] <= 1.0 and row["Length"] >= 1
    md = (tmp_path / "lambada_shipped.md").read_text(encoding="utf-8")
    assert "Annotated LAMBADA" in md and "| greedy" in md
    lines = (tmp_path / "lambada_shipped.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 6
    summary = json.loads((tmp_path / "lambada_shipped.json").read_text(encoding="utf-8"))
    assert summary["keys"] == sorted(r["key"] for r in recs)  # what the paired view reads
    for r in recs:
        assert r["gold"] and all(j < r["n_context"] for j in r["rationale"])
    # a rerun resumes: nothing is recomputed
    V.run_lambada(tmp_path, quick=True, data_root=root, limit=2, methods=methods, progress=False)
    assert len((tmp_path / "lambada_shipped.jsonl").read_text(encoding="utf-8").splitlines()) == 6
    # another option that these methods use: computed again; one they do not use: reused
    V.run_lambada(tmp_path, quick=True, data_root=root, limit=2, methods=methods, progress=False, max_size=2)
    V.run_lambada(tmp_path, quick=True, data_root=root, limit=2, methods=methods, progress=False, max_size=2,
                  ig_steps=3)
    again = [json.loads(x) for x in (tmp_path / "lambada_shipped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(again) == 12 and all(len(r["rationales"][0]) <= 2 for r in again[6:])


def test_analogies_and_timing_quick(tmp_path):
    root = _need("questions_words")
    out = V.run_analogies(tmp_path, quick=True, data_root=root, limit=2, methods=["greedy", "exhaustive"],
                          progress=False)
    assert out["rationalized"] == 2 and out["checked"] == 2 and not out["require_correct"]
    greedy = out["table"][0]
    assert greedy["n"] == 2 and 0.0 <= greedy["Ante"] <= 1.0 and 0.0 <= greedy["No D"] <= 1.0
    assert (tmp_path / "analogies_shipped.md").is_file()
    timing = V.run_timing(tmp_path, quick=True, data_root=root, limit=1, methods=["greedy", "occlusion"],
                          progress=False)
    rows = {r["method"]: r for r in timing["table"]}
    assert rows["greedy"]["n"] == 1 and rows["occlusion"]["n"] == 1
    assert rows["greedy"]["mean s/token"] > 0 and rows["greedy"]["forwards"] >= 1


def test_cli_quick_and_errors(tmp_path):
    from typer.testing import CliRunner

    from seqexplain.cli import app

    root = _need("annotated_lambada")
    runner = CliRunner()
    base = ["reproduce", "vafa2021", "lambada", "--out", str(tmp_path), "--quick", "--data-root", str(root),
            "--no-progress"]
    result = runner.invoke(app, [*base, "--limit", "1", "--methods", "greedy"])
    assert result.exit_code == 0, result.output
    assert "Annotated LAMBADA" in result.stdout
    result = runner.invoke(app, [*base, "--methods", "bogus"])
    assert result.exit_code == 2 and "'bogus' is not one of" in result.stderr


def test_compatible_quick(tmp_path):
    root = _need("annotated_lambada", "wikitext2")
    pytest.importorskip("peft")
    out = V.run_lambada(tmp_path, quick=True, data_root=root, limit=1, compatible=True, methods=["greedy"],
                        progress=False)
    assert out["variant"] == "compatible" and out["model_info"]["compatible"]["steps"] == 3
    assert out["leakage"]["with_shared_window"] == 0
    assert (tmp_path / "compatible-3steps" / "checkpoints" / "latest.json").is_file()
    held_out = out["model_info"]["compatible"]["held_out"]
    for variant in ("shipped", "compatible"):
        got = held_out[variant]
        assert got["rows"] == 4 and got["loss_word_dropout"] > 0 and got["loss_full"] > 0
    saved = json.loads((tmp_path / "compatible-3steps" / "compatibility.json").read_text(encoding="utf-8"))
    assert saved == held_out
