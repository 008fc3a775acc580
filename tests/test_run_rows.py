"""Rows of a corpus run: the rationale searches' ``rationale_reached`` flags (stored, merged, counted in the
reports) and faithfulness that evaluates the full input once per example with values equal to direct calls."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from run_helpers import config_dict, corpus, tiny_classifier, write_config

from seqexplain import explain, load_model
from seqexplain.metrics import faithfulness, random_baseline
from seqexplain.models.rows import evaluate_rows
from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run

N = 6
faith_module = importlib.import_module("seqexplain.metrics.faithfulness")  # the package re-exports the function


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("runrows")
    return tiny_classifier(base / "model"), corpus(base / "data.jsonl", N), base


def _run(tmp_path, setup, name="out", **overrides):
    model, data, _ = setup
    cfg = read_config(write_config(tmp_path / f"{name}.yaml", config_dict(model, data, tmp_path / name, **overrides)))
    return cfg, run(cfg, progress=False)


def _texts(setup):
    return [json.loads(line) for line in setup[1].read_text().splitlines()]


def test_rationale_reached_is_a_column_of_shards_merged_file_and_reports(tmp_path, setup):
    """Greedy rationales of the data's labels (half of them not the model's prediction): each row's flag equals
    the method's own and, independently, whether the model shown only the stored rationale (keep-row) predicts the
    label. Unbounded, a search reaches exactly the labels the full input predicts; capped at ``max_size=3`` (the
    classifier's start set is [CLS] and [SEP], so one word) the unreachable ones stop at the bound, stored False."""
    methods = [{"name": "greedy", "label": "greedy_free"},
               {"name": "greedy", "label": "greedy_3", "options": {"max_size": 3}},
               {"name": "gradient_norm"}]
    _run(tmp_path, setup, methods=methods,
         metrics={"faithfulness": {"enabled": False}, "plausibility": {"enabled": False}},
         output={"dir": str(tmp_path / "out"), "report": True, "report_examples": 1})
    out = tmp_path / "out"
    merged = pq.read_table(out / "results.parquet")
    assert pa.types.is_boolean(merged.schema.field("rationale_reached").type.value_type)
    rows = {(r["index"], r["method"]): r for r in merged.to_pylist()}
    shard_rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(shard_rows, key=lambda r: (r["index"], r["method"])) == sorted(rows.values(), key=lambda r: (
        r["index"], r["method"]))
    wrapped = load_model(str(setup[0]))
    texts = _texts(setup)
    flags = []
    for i in range(N):
        assert rows[(i, "gradient_norm")]["rationale_reached"] is None
        ex = wrapped.encode(texts[i]["text"], texts[i]["label"])
        label = int(ex.target_ids[0])
        for key in ("greedy_free", "greedy_3"):
            row = rows[(i, key)]
            shown = evaluate_rows(wrapped, ex, [(0, row["rationale"][0])], 4096)
            assert row["rationale_reached"] == [int(shown.argmax[0]) == label], (i, key)
        full = evaluate_rows(wrapped, ex, [(0, ex.visible_positions(0))], 4096)
        assert rows[(i, "greedy_free")]["rationale_reached"] == [int(full.argmax[0]) == label]
        flag = rows[(i, "greedy_3")]["rationale_reached"]
        oracle = explain(wrapped, texts[i]["text"], texts[i]["label"], "greedy", max_size=3)
        assert oracle.rationale is not None and flag == oracle.rationale.reached
        if not flag[0]:
            assert len(rows[(i, "greedy_3")]["rationale"][0]) == 3 < ex.length  # it stopped at the bound
        flags.append(flag[0])
    assert True in flags and False in flags
    summary = (out / "summary.md").read_text()
    page = (out / "report.html").read_text()
    assert "## Rationale searches" in summary and "<h2>Rationale searches</h2>" in page
    for key in ("greedy_free", "greedy_3"):
        n_reached = sum(rows[(i, key)]["rationale_reached"][0] for i in range(N))
        line = f"{key}: {n_reached} of {N} searches reached the target"
        assert line in summary and line in page
        assert (f"{line} (the others used the whole context" in summary) == (n_reached < N)
    assert "gradient_norm:" not in summary.split("## Rationale searches")[1]


def test_no_rationale_section_without_rationale_methods(tmp_path, setup):
    _run(tmp_path, setup, methods=[{"name": "gradient_norm"}],
         metrics={"faithfulness": {"enabled": False}},
         output={"dir": str(tmp_path / "out"), "report": True, "report_examples": 1})
    assert "Rationale searches" not in (tmp_path / "out" / "summary.md").read_text()
    assert "Rationale searches" not in (tmp_path / "out" / "report.html").read_text()


def test_full_input_is_evaluated_once_per_example_and_values_equal_direct_calls(tmp_path, setup, monkeypatch):
    full_rows: list[int] = []
    real = faith_module._removed_logp

    def spy(model, example, rows, *args, **kwargs):
        full_rows.append(sum(1 for _, removed in rows if not list(removed)))  # rows removing nothing: the full input
        return real(model, example, rows, *args, **kwargs)

    monkeypatch.setattr(faith_module, "_removed_logp", spy)
    cfg, _ = _run(tmp_path, setup)  # 3 methods, random baseline with 2 repeats: 5 rankings per example
    assert sum(full_rows) == N  # one full-input row per example (1 target each), not one per ranking
    full_rows.clear()
    _run(tmp_path, setup, name="nobase", metrics={"faithfulness": {"random_baseline": False, "bins": [10.0, 50.0]},
                                                  "agreement": {"enabled": False}, "plausibility": {"enabled": False}})
    assert sum(full_rows) == N  # without the baseline the first method evaluates it, the others reuse it
    monkeypatch.setattr(faith_module, "_removed_logp", real)
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    wrapped = load_model(str(setup[0]))
    texts = _texts(setup)
    fcfg = cfg.metrics.faithfulness
    for row in rows:
        ex = wrapped.encode(texts[row["index"]]["text"], texts[row["index"]]["label"])
        f = faithfulness(wrapped, ex, np.array(row["scores"]), fcfg.bins, fcfg.token_budget)  # full input here
        assert row["comprehensiveness"] == f.comprehensiveness.tolist()  # bit-identical
        assert row["sufficiency"] == f.sufficiency.tolist()
        assert row["aopc_comprehensiveness"] == float(f.aopc_comprehensiveness.mean())
        base = random_baseline(wrapped, ex, fcfg.bins, seed=cfg.seed + row["index"], repeats=fcfg.random_repeats,
                               token_budget=fcfg.token_budget)
        assert row["random_comprehensiveness"] == base.comprehensiveness.tolist()
        assert row["random_aopc_sufficiency"] == float(base.aopc_sufficiency.mean())


def test_full_logprob_given_skips_those_rows_and_is_checked(setup):
    from seqexplain.errors import InputError

    wrapped = load_model(str(setup[0]))
    ex = wrapped.encode(_texts(setup)[0]["text"], 1)
    scores = np.arange(ex.length, dtype=np.float64)[None, :]
    plain = faithfulness(wrapped, ex, scores, [10.0, 50.0])
    reused = faithfulness(wrapped, ex, scores, [10.0, 50.0], full_logprob=plain.full_logprob)
    assert reused.comprehensiveness.tolist() == plain.comprehensiveness.tolist()
    assert reused.full_logprob.tolist() == plain.full_logprob.tolist()
    shifted = faithfulness(wrapped, ex, scores, [10.0, 50.0], full_logprob=plain.full_logprob + 1.0)
    np.testing.assert_allclose(shifted.comprehensiveness, plain.comprehensiveness + 1.0)  # it is used, not ignored
    with pytest.raises(InputError, match="full_logprob has shape"):
        faithfulness(wrapped, ex, scores, [10.0, 50.0], full_logprob=np.zeros(3))


def test_faithfulness_that_drops_tokens_carries_the_models_position_warning(tmp_path, bpe):
    """XLNet takes no position ids: deleting a token moves the kept ones left. A gradient method drops nothing, so
    its own result has no such warning; faithfulness with ``removal="drop"`` does drop tokens, so the row says so
    (prefixed ``faithfulness:``); with ``removal="replace"`` nothing is dropped and the row has no such warning."""
    import torch
    from transformers import XLNetConfig, XLNetForSequenceClassification

    torch.manual_seed(0)
    cfg = XLNetConfig(vocab_size=len(bpe), d_model=16, n_layer=1, n_head=2, d_inner=32, num_labels=2,
                      pad_token_id=bpe.pad_token_id)
    model_dir = tmp_path / "xlnet"
    XLNetForSequenceClassification(cfg).eval().save_pretrained(model_dir)
    bpe.save_pretrained(model_dir)
    data = corpus(tmp_path / "data.jsonl", 2, rationales=False)
    position = "XLNetForSequenceClassification.forward() takes no position_ids"
    for removal, expected in (("drop", True), ("replace", False)):
        out = tmp_path / removal
        cfg_run = read_config(write_config(tmp_path / f"{removal}.yaml", config_dict(
            model_dir, data, out, methods=[{"name": "gradient_norm"}], data={"rationale_field": None},
            metrics={"faithfulness": {"removal": removal, "random_baseline": False},
                     "plausibility": {"enabled": False}})))
        run(cfg_run, progress=False)
        rows = pq.read_table(out / "results.parquet").to_pylist()
        assert len(rows) == 2
        for row in rows:
            assert not any(w.startswith(position) for w in row["warnings"]), row["warnings"]
            assert any(w.startswith(f"faithfulness: {position}") for w in row["warnings"]) == expected, row["warnings"]


def test_an_example_without_finite_scores_is_left_out_of_plausibility(tmp_path):
    """A word whose embedding is NaN makes every score of its examples NaN: with no ranking there is no predicted
    rationale, yet it was scored as an empty one and pulled the token and IOU F1 means towards 0 (AUPRC left it
    out). It is left out of every plausibility mean, with a warning on its row and a count in the summary; the
    means equal those over the other examples (oracle: the metric functions on their rows)."""
    import torch
    from conftest import wordpiece_tokenizer
    from transformers import BertForSequenceClassification

    from seqexplain.metrics import token_prf_corpus

    model_dir = tiny_classifier(tmp_path / "model")
    model = BertForSequenceClassification.from_pretrained(model_dir)
    tok = wordpiece_tokenizer()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[tok.convert_tokens_to_ids("film")] = float("nan")
    model.save_pretrained(model_dir)
    data = tmp_path / "data.jsonl"
    texts = ["the film is a delight", "too long and too loud", "it drags in the middle"]
    data.write_text("".join(json.dumps({"text": t, "label": 1, "id": f"e{i}", "rationale": [[0, 3]]}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    cfg = read_config(write_config(tmp_path / "c.yaml", config_dict(
        model_dir, data, tmp_path / "out", methods=[{"name": "gradient_norm"}],
        metrics={"faithfulness": {"enabled": False}}, output={"dir": str(tmp_path / "out"), "report": True})))
    result = run(cfg, progress=False)
    rows = sorted(pq.read_table(tmp_path / "out" / "results.parquet").to_pylist(), key=lambda r: r["index"])
    assert rows[0]["predicted_rationale"] is None and rows[0]["auprc"] is None
    assert "plausibility: not scored, the first target has no finite score" in rows[0]["warnings"]
    kept = rows[1:]
    assert all(r["predicted_rationale"] is not None for r in kept)
    macro = token_prf_corpus([r["predicted_rationale"] for r in kept], [r["gold_positions"] for r in kept], "macro")
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "examples with gold left out of plausibility (see their warnings): gradient_norm: 1" in summary
    from seqexplain.runs.store import RunStore
    from seqexplain.runs.summary import summarize

    got = summarize(RunStore(tmp_path / "out", result.config_hash, 3, cfg.shard_size), cfg)
    assert got.plausibility["gradient_norm"]["examples"] == 2
    assert got.plausibility["gradient_norm"]["token_f1_macro"] == pytest.approx(macro.f1)
