"""Per-event explanation vectors of a corpus (against a hand loop over seqexplain.explain) and the evaluation of
explanations along a path."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.analysis.low_loss_paths import flat_weights, straight_line
from seqexplain.analysis.path_explanations import along_path, explanation_vectors, plot_paths
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig
from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument
from seqexplain.training.attention_rnn import evaluate

D, K = 4, 3


def _docs(n: int, seed: int) -> list[VectorDocument]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        x = torch.tensor(rng.normal(size=(k, D)))
        out.append(VectorDocument([f"w{j}" for j in range(k)], x, [int(t) for t in rng.integers(0, K, size=k)],
                                  int(float(x[:, 0].sum()) > 0)))
    return out


def _model(seed: int, decoder: str = "hier") -> AttentionRNN:
    torch.manual_seed(seed)
    return AttentionRNN(AttentionRNNConfig(input_dim=D, hidden=[5], decoder=decoder, n_event_types=K)).double().eval()


def test_explanation_vectors_match_a_hand_loop():
    docs = _docs(5, 0)
    ad = AttentionRNNAdapter(_model(0), ["n", "p"], ["a", "b", "c"])
    got = explanation_vectors(ad, docs, "grad_x_input")
    assert got.warnings == {}
    for row, d in zip(got.vectors, docs, strict=True):
        scores = seqexplain.explain(ad, d, d.label, method="grad_x_input").scores[0]
        want = [sum(s for s, t in zip(scores, d.event_types, strict=True) if t == k) for k in range(K)]
        np.testing.assert_allclose(row, want, atol=1e-12)
    beta = explanation_vectors(ad, docs, "attention_last").vectors
    for row, d in zip(beta, docs, strict=True):
        np.testing.assert_allclose(row, ad.attention_weights(ad.encode(d))["beta"].numpy(), atol=1e-12)


def test_along_a_path(tmp_path):
    docs = _docs(12, 1)
    m1, m2, work = _model(1), _model(2), _model(3)
    line = straight_line(_objective(work, docs), flat_weights(m1), flat_weights(m2), n=5)
    recs = along_path(line, work, docs, lambda m: {"attention_last": AttentionRNNAdapter(m, ["n", "p"], list("abc"))},
                      {"attention_last": {}}, k=2, n_points=3)
    assert [r["index"] for r in recs] == [0, 2, 4]
    assert recs[0]["attention_last_ari_start"] == 1.0 and recs[-1]["attention_last_ari_end"] == 1.0
    assert abs(recs[0]["loss"] - evaluate(m1, docs)["loss"]) < 1e-9
    assert abs(recs[-1]["accuracy"] - evaluate(m2, docs)["accuracy"]) < 1e-12
    out = plot_paths({"line": line}, recs, ["attention_last"], tmp_path / "p.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


NONFINITE = "1 score(s) are NaN or infinite where the target can see the input"


def _overflowing_doc() -> VectorDocument:
    """A document whose token 1 has an infinite coordinate: the LSTM's gates saturate (the forward pass stays
    finite) but grad×input there is ∞ · 0 = NaN; token 2 shares its event type, so the per-type sum (which skips
    NaN members) stays finite and the vector alone would not show that a score was lost."""
    x = torch.tensor(np.random.default_rng(7).normal(size=(4, D)))
    x[1, 2] = float("inf")
    return VectorDocument(["w0", "w1", "w2", "w3"], x, [0, 1, 1, 2], 1)


def test_explanation_vectors_keep_the_explanations_warnings():
    docs = [*_docs(4, 0), _overflowing_doc(), _overflowing_doc()]
    ad = AttentionRNNAdapter(_model(0, "avg"), ["n", "p"], ["a", "b", "c"])
    with pytest.warns(RuntimeWarning, match=re.escape(f"grad_x_input: 2 of 6 documents: {NONFINITE}")):
        got = explanation_vectors(ad, docs, "grad_x_input")
    assert np.isfinite(got.vectors).all() and list(got.warnings) == [f"{NONFINITE} (the model overflowed, or a "
                                                                     "target has probability 0)"]
    assert list(got.warnings.values()) == [2]  # counted per document, listed once
    assert got.warning_lines("avg") == [f"avg: 2 of 6 documents: {next(iter(got.warnings))}"]
    scores = seqexplain.explain(ad, docs[4], 1, method="grad_x_input").scores[0]
    assert np.isnan(scores[1]) and got.vectors[4][1] == pytest.approx(scores[2])  # the NaN member was skipped


def test_along_a_path_records_the_explanations_warnings():
    docs = [*_docs(10, 1), _overflowing_doc()]
    m1, m2, work = _model(1, "avg"), _model(2, "avg"), _model(3, "avg")
    line = straight_line(_objective(work, docs), flat_weights(m1), flat_weights(m2), n=3)
    with pytest.warns(RuntimeWarning, match="grad_x_input: 1 of 11 documents"):
        recs = along_path(line, work, docs, lambda m: {"grad_x_input": AttentionRNNAdapter(m, ["n", "p"], list("abc"))},
                          {"grad_x_input": {}}, k=2, n_points=2)
    assert [list(r["grad_x_input_warnings"].values()) for r in recs] == [[1], [1]]
    assert all(next(iter(r["grad_x_input_warnings"])).startswith(NONFINITE) for r in recs)


def test_ger2021_stores_the_explanations_warnings(tmp_path):
    """compare_models (what results.json's decoders hold) and the path records carry each distinct warning with its
    count, as lines that run() adds to the result's warnings (shown in results.md)."""
    from seqexplain.experiments.ger2021 import Settings, compare_models, path_warnings

    docs = [*_docs(10, 2), _overflowing_doc()]
    models = [_model(4, "avg"), _model(5, "avg")]
    with pytest.warns(RuntimeWarning, match="integrated_gradients: 1 of 11 documents"):
        res = compare_models("avg", models, docs, ["a", "b", "c"], None, tmp_path, Settings(k_max=3, ig_steps=4), 0)
    lines = [w for w in res["warnings"] if NONFINITE in w]
    assert len(lines) == 2  # integrated gradients of both models; attention and gradient norm stay finite
    assert lines[0].startswith("avg model 0 integrated_gradients: 1 of 11 documents: 1 score(s)")
    recs = [{"t": 0.5, "gradient_norm_warnings": {"m": 3}}]
    assert path_warnings("avg", {"line": recs}, ["gradient_norm"], 11) == [
        "avg along the line at t = 0.50 gradient_norm: 3 of 11 documents: m"]


def _objective(model: AttentionRNN, docs):
    from seqexplain.analysis.low_loss_paths import ModelObjective

    return ModelObjective(model, docs)


def test_warnings_that_differ_only_in_figures_are_counted_as_one():
    """An integrated-gradients completeness miss names each document's δ, so 40 documents gave 40 "1 of 40
    documents" lines; warnings that differ only in their figures count as one, with the first one's figures and a
    note. Hand-computed: documents 0 and 2 miss with other δ, document 1 has another warning, document 3 none."""
    from seqexplain.runs.warning_log import tally_warnings

    ig = "integrated_gradients: target 0 (δ=0.209, f(x)−f(b)=1.73) misses by more than 5 %"
    per_doc = [[ig], ["2 score(s) are NaN"], [ig.replace("0.209", "-0.273").replace("1.73", "1.68")], []]
    assert tally_warnings(per_doc) == {
        ig + " (the figures are the first such document's; the others' differ)": 2, "2 score(s) are NaN": 1}
    assert tally_warnings([[ig], [ig]]) == {ig: 2}  # the same message: no note
