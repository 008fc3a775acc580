"""Per-event explanation vectors of a corpus (against a hand loop over seqexplain.explain) and the evaluation of
explanations along a path."""

from __future__ import annotations

import numpy as np
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
    for row, d in zip(got, docs, strict=True):
        scores = seqexplain.explain(ad, d, d.label, method="grad_x_input").scores[0]
        want = [sum(s for s, t in zip(scores, d.event_types, strict=True) if t == k) for k in range(K)]
        np.testing.assert_allclose(row, want, atol=1e-12)
    beta = explanation_vectors(ad, docs, "attention_last")
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


def _objective(model: AttentionRNN, docs):
    from seqexplain.analysis.low_loss_paths import ModelObjective

    return ModelObjective(model, docs)
