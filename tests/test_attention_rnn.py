"""The attention RNNs of Ger et al. (avg and hierarchical decoders) and their adapter under every registered method,
each checked against the raw torch module run on hand-deleted inputs, autograd, or formulas computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.methods.registry import available_methods
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig, masked_softmax
from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument

D, K = 6, 3
EVENTS = ["a", "b", "c"]


def _doc(rng: np.random.Generator, n: int) -> VectorDocument:
    x = torch.tensor(rng.normal(size=(n, D)))
    types = [int(t) for t in rng.integers(0, K, size=n)]
    label = int(float(sum(x[j, 0] for j in range(n) if types[j] == 1)) > 0)
    return VectorDocument([f"w{j}" for j in range(n)], x, types, label)


def _train(decoder: str, seed: int) -> AttentionRNNAdapter:
    torch.manual_seed(seed)
    cfg = AttentionRNNConfig(input_dim=D, hidden=[8, 6], fc_dim=5, decoder=decoder, n_event_types=K, dropout=0.2)
    net = AttentionRNN(cfg).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    rng = np.random.default_rng(seed)
    for _ in range(30):
        docs = [_doc(rng, int(rng.integers(2, 8))) for _ in range(16)]
        n = max(len(d.tokens) for d in docs)
        x = torch.stack([torch.cat([d.vectors, torch.zeros(n - len(d.tokens), D, dtype=torch.double)]) for d in docs])
        types = torch.tensor([d.event_types + [0] * (n - len(d.tokens)) for d in docs])
        z, _ = net(x, torch.tensor([len(d.tokens) for d in docs]), types)
        loss = torch.nn.functional.cross_entropy(z, torch.tensor([d.label for d in docs]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return AttentionRNNAdapter(net.eval(), ["neg", "pos"], EVENTS, f"ger-{decoder}")


@pytest.fixture(scope="module", params=["avg", "hier"])
def adapter(request) -> AttentionRNNAdapter:
    return _train(request.param, 0)


@pytest.fixture(scope="module")
def docs() -> list[VectorDocument]:
    rng = np.random.default_rng(7)
    return [_doc(rng, n) for n in (5, 3, 7)]


def raw_logp(net: AttentionRNN, doc: VectorDocument, subset: list[int]) -> torch.Tensor:
    """Log-probabilities of the raw module on the tokens at ``subset`` (the others deleted by hand)."""
    kept = sorted(subset)
    with torch.no_grad():
        z, _ = net(doc.vectors[kept].unsqueeze(0), None, torch.tensor([[doc.event_types[j] for j in kept]]))
    return torch.log_softmax(z[0], -1)


def close(got, want, rtol=1e-4, atol=1e-6) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- attention
def test_avg_attention_is_the_formula_and_sums_to_one_over_real_positions():
    ad = _train("avg", 1)
    net = ad.model
    rng = np.random.default_rng(3)
    a, b = _doc(rng, 5), _doc(rng, 2)
    x = torch.stack([a.vectors, torch.cat([b.vectors, torch.full((3, D), 1e3, dtype=torch.double)])])
    with torch.no_grad():
        _, att = net(x, torch.tensor([5, 2]))
        for row, doc in enumerate((a, b)):  # the formula, by hand, on the unpadded input
            hs, h0, _, _ = net.encode(doc.vectors.unsqueeze(0), None)
            e = [float(net.v_a.weight[0] @ torch.tanh(net.W_a.weight @ h0[0] + net.U_a.weight @ hs[0, s]
                                                      + net.U_a.bias)) for s in range(hs.shape[1])]
            want = np.exp(e) / np.exp(e).sum()
            close(att["alpha"][row, : len(want)], want)
            assert float(att["alpha"][row, len(want):].abs().sum()) == 0.0
    close(att["alpha"].sum(1), [1.0, 1.0], atol=1e-12)


def test_hier_attention_sums_to_one_over_present_event_types(docs):
    ad = _train("hier", 2)
    doc = VectorDocument(["x"] * 5, docs[0].vectors, [0, 2, 0, 2, 2])  # type 1 absent
    ex = ad.encode(doc)
    att = ad.attention_weights(ex)
    beta = att["beta"].numpy()
    assert beta[1] == 0.0 and abs(beta.sum() - 1) < 1e-12
    with torch.no_grad():
        _, full = ad.model(doc.vectors.unsqueeze(0), None, torch.tensor([doc.event_types]))
    word = full["word"][0].numpy()
    close(word.sum(0), [1.0, 0.0, 1.0], atol=1e-12)  # within each present type
    for s, t in enumerate(doc.event_types):
        assert all(word[s, k] == 0 for k in range(K) if k != t)
    # the position weights of attention_last, summed per event type, are β
    attr = seqexplain.explain(ad, doc, method="attention_last")
    close(attr.scores[0].sum(), 1.0, atol=1e-12)
    agg = attr.aggregate("sum", by="events")
    by_type = {doc.event_types[m[0]]: agg.scores[0, g] for g, m in enumerate(attr.partition("events"))}
    close([by_type[0], by_type[2]], [beta[0], beta[2]], atol=1e-12)


def test_original_numerics_agree_when_small_and_overflow_when_large():
    e = torch.tensor([[1.0, 2.0, 3.0, -1.0]], dtype=torch.double)
    mask = torch.tensor([[True, True, True, False]])
    stable, orig = masked_softmax(e, mask, 1, "stable"), masked_softmax(e, mask, 1, "original")
    want = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    close(stable[0, :3], want, atol=1e-7)
    close(orig[0, :3], want, atol=1e-6)
    assert float(stable[0, 3]) == 0.0 and float(orig.sum()) < 1.0
    big = torch.tensor([[100.0, 99.0]])
    both = torch.ones(1, 2, dtype=torch.bool)
    assert torch.isfinite(masked_softmax(big, both, 1, "stable")).all()
    assert not torch.isfinite(masked_softmax(big, both, 1, "original")).all()
    assert float(masked_softmax(e, torch.zeros_like(mask), 1, "stable").abs().sum()) == 0.0  # nothing present


# --------------------------------------------------------------------------- keep-mask = deletion
def test_predicted_labels_of_many_documents_share_a_forward(adapter, docs, monkeypatch):
    one = [adapter.encode(d).target_tokens for d in docs]
    calls: list[int] = []
    original = adapter.model.forward
    monkeypatch.setattr(adapter.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    assert [ex.target_tokens for ex in adapter.encode_many([(d, None) for d in docs])] == one
    assert len(calls) == 1


def test_occlusion_is_deleting_tokens(adapter, docs):
    net = adapter.model
    for doc in docs:
        label = int(adapter.encode(doc).target_ids[0])
        got = seqexplain.explain(adapter, doc, label, method="occlusion").scores[0]
        every = list(range(len(doc.tokens)))
        base = raw_logp(net, doc, every)[label]
        want = [float(base - raw_logp(net, doc, [k for k in every if k != j])[label]) for j in every]
        close(got, want)


def test_nothing_kept_reads_position_zero(adapter, docs):
    doc = docs[2]
    ex = adapter.encode(doc)
    keep = torch.zeros(2, len(doc.tokens), dtype=torch.bool)
    keep[1, [2, 4]] = True
    with torch.no_grad():
        got = torch.log_softmax(adapter.logits(ex, keep)[:, 0], -1)
    close(got[0], raw_logp(adapter.model, doc, [0]), atol=1e-12)
    close(got[1], raw_logp(adapter.model, doc, [2, 4]), atol=1e-12)


# --------------------------------------------------------------------------- gradients
def _f(net: AttentionRNN, doc: VectorDocument, label: int):
    types = torch.tensor([doc.event_types])

    def f(x: torch.Tensor) -> torch.Tensor:  # x [B, L, D] -> [B]
        z, _ = net(x, None, types.expand(x.shape[0], -1))
        return torch.log_softmax(z, -1)[:, label]

    return f


def test_gradients_match_autograd(adapter, docs):
    doc = docs[0]
    label = int(adapter.encode(doc).target_ids[0])
    x = doc.vectors.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_f(adapter.model, doc, label)(x.unsqueeze(0))[0], x)
    close(seqexplain.explain(adapter, doc, label, method="gradient_norm").scores[0], g.norm(dim=-1))
    close(seqexplain.explain(adapter, doc, label, method="grad_x_input").scores[0], (g * doc.vectors).sum(-1))
    unk = torch.linspace(-0.5, 0.5, D, dtype=torch.double)  # a view with origin u: same gradient, input x − u
    view = adapter.with_origin(unk)
    close(seqexplain.explain(view, doc, label, method="gradient_norm").scores[0], g.norm(dim=-1))
    close(seqexplain.explain(view, doc, label, method="grad_x_input").scores[0], (g * (doc.vectors - unk)).sum(-1))


@pytest.mark.parametrize("origin", ["zero", "unk"])
def test_integrated_gradients_completeness(adapter, docs, origin):
    doc = docs[2]
    label = int(adapter.encode(doc).target_ids[0])
    unk = torch.linspace(-0.5, 0.5, D, dtype=torch.double)
    view = adapter if origin == "zero" else adapter.with_origin(unk)
    attr = seqexplain.explain(view, doc, label, method="integrated_gradients", steps=64)
    f = _f(adapter.model, doc, label)
    base = torch.zeros_like(doc.vectors) if origin == "zero" else unk.expand_as(doc.vectors)
    with torch.no_grad():
        gap = float(f(doc.vectors.unsqueeze(0))[0] - f(base.unsqueeze(0))[0])
    assert abs(attr.scores[0].sum() - gap) < 1e-3 * max(1.0, abs(gap))


def test_dropout_at_eval_is_an_option(docs):
    ad = _train("avg", 4)
    doc = docs[2]
    a = seqexplain.explain(ad, doc, 1, method="gradient_norm").scores[0]
    assert np.array_equal(a, seqexplain.explain(ad, doc, 1, method="gradient_norm").scores[0])
    ad.model.dropout_at_eval = True
    torch.manual_seed(0)
    b = seqexplain.explain(ad, doc, 1, method="gradient_norm").scores[0]
    ad.model.dropout_at_eval = False
    assert not np.allclose(a, b)


def test_every_registered_method_runs(adapter, docs):
    doc = docs[1]
    for spec in available_methods():
        if spec.name == "attention_rollout":
            with pytest.raises(UnsupportedError, match="rollout"):
                seqexplain.explain(adapter, doc, method=spec.name)
            continue
        attr = seqexplain.explain(adapter, doc, method=spec.name)
        assert attr.scores.shape == (1, 3)


def test_explain_many_matches_explain(adapter, docs):
    items = [{"text": d} for d in docs]
    many = list(seqexplain.explain_many(adapter, items, method="integrated_gradients", steps=8, progress=False))
    for doc, got in zip(docs, many, strict=True):
        close(got.scores, seqexplain.explain(adapter, doc, method="integrated_gradients", steps=8).scores)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs(adapter, docs):
    doc = docs[0]
    with pytest.raises(InputError, match="width 6"):
        adapter.encode(VectorDocument(doc.tokens, torch.zeros(5, 4), doc.event_types))
    with pytest.raises(InputError, match="one type per token"):
        adapter.encode(VectorDocument(doc.tokens, doc.vectors, [0, 1]))
    with pytest.raises(InputError, match="0..2"):
        adapter.encode(VectorDocument(doc.tokens, doc.vectors, [0, 1, 5, 0, 0]))
    with pytest.raises(InputError, match="VectorDocument"):
        adapter.encode("a text")
    if adapter.model.config.decoder == "avg":
        with pytest.raises(InputError, match="event set is empty"):
            AttentionRNNAdapter(adapter.model, ["neg", "pos"]).encode(doc)
    else:
        with pytest.raises(InputError, match="one name per event type"):
            AttentionRNNAdapter(adapter.model, ["neg", "pos"])
    with pytest.raises(InputError, match="empty event set"):
        AttentionRNNConfig(input_dim=D, decoder="hier", n_event_types=0).check()
    if adapter.model.config.decoder == "hier":
        with pytest.raises(InputError, match="event type of every token"):
            adapter.encode(VectorDocument(doc.tokens, doc.vectors))



@pytest.mark.parametrize(("method", "options"), [("occlusion", {"replace_with": "unk"}),
                                                 ("integrated_gradients", {"baseline": "pad", "steps": 2})])
def test_a_token_in_place_of_vectors_is_refused_for_what_it_is(adapter, docs, method, options):
    """The model has no tokenizer: the error said "the tokenizer has no unk token" instead of naming the vectors."""
    with pytest.raises(InputError, match="holds precomputed vectors, not tokens"):
        seqexplain.explain(adapter, docs[0], method=method, **options)
