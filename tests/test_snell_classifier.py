"""The Snell et al. BiLSTM attention classifier and its adapter, checked against hand computations on the raw module
(α normalisation, exact uniformity, ``s = Σ α β``, BCE equivalence) and with every registered method, occlusion
and greedy rationales compared with deleting tokens by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.methods.registry import available_methods
from seqexplain.models.rnn import Vocab
from seqexplain.models.snell_classifier import (
    BosEosTokenizer,
    SnellClassifier,
    SnellClassifierAdapter,
    SnellClassifierConfig,
    pad_batch,
)

WORDS = ["the", "movie", "was", "good", "bad", "not", "plot", "great"]
TEXTS = ["the movie was good", "bad plot", "the plot was not great"]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(WORDS)


def make(vocab: Vocab, n_classes: int = 2, uniform: bool = False, seed: int = 0) -> SnellClassifier:
    torch.manual_seed(seed)
    return SnellClassifier(SnellClassifierConfig(len(vocab), n_classes, 6, 5, 4, uniform)).double().eval()


def ids_of(vocab: Vocab, text: str) -> list[int]:
    return BosEosTokenizer(vocab).encode_words(text.split())


def raw_logp(net: SnellClassifier, ids: list[int], subset: list[int]) -> torch.Tensor:
    """Log-probabilities of the raw module on the tokens at ``subset`` (the others deleted by hand)."""
    with torch.no_grad():
        z, _ = net(torch.tensor([[ids[j] for j in sorted(subset)]]))
    return torch.log_softmax(z[0], -1)


def test_tokenizer_wraps_bos_eos(vocab):
    tok = BosEosTokenizer(vocab)
    ids, tokens, offsets = tok.tokenize_with_offsets("the movie")
    assert tokens == ["<bos>", "the", "movie", "<eos>"] and offsets == [None, (0, 3), (4, 9), None]
    assert ids == tok.encode_words(["the", "movie"])


@pytest.mark.parametrize("n_classes", [2, 4])
def test_alpha_sums_to_one_and_s_is_alpha_beta(vocab, n_classes):
    net = make(vocab, n_classes)
    seqs = [ids_of(vocab, t) for t in TEXTS]
    ids, lengths = pad_batch(seqs)
    with torch.no_grad():
        p = net.parts(net.embedding(ids), lengths)
        z, alpha = net(ids, lengths)
    for r, seq in enumerate(seqs):
        n = len(seq)
        assert abs(float(p.alpha[r, :n].sum()) - 1) < 1e-12 and float(p.alpha[r, n:].abs().sum()) == 0
        # one example alone (no padding) gives the same α, β: padding is never read
        with torch.no_grad():
            alone = net.parts(net.embedding(torch.tensor([seq])))
        np.testing.assert_allclose(alone.alpha[0].numpy(), p.alpha[r, :n].numpy(), atol=1e-12)
        # hand: e_t = w₂ᵀ ReLU(W₁ h_t + b₁) + b₂, α = softmax(e), s = Σ α_t β_t
        with torch.no_grad():
            h = net.lstm(net.embedding(torch.tensor([seq])))[0][0]
            e = torch.relu(h @ net.attn_in.weight.T + net.attn_in.bias) @ net.attn_out.weight[0] + net.attn_out.bias
            a = torch.exp(e - e.max()) / torch.exp(e - e.max()).sum()
            s = (a.unsqueeze(-1) * (h @ net.beta.weight.T + net.beta.bias)).sum(0)
        np.testing.assert_allclose(p.alpha[r, :n].numpy(), a.numpy(), atol=1e-12)
        want = torch.cat([torch.zeros(1, dtype=s.dtype), s]) if n_classes == 2 else s
        np.testing.assert_allclose(z[r].numpy(), want.numpy(), atol=1e-12)
        assert torch.equal(alpha[r], p.alpha[r])


def test_uniform_flag_gives_exactly_uniform_alpha(vocab):
    net = make(vocab, uniform=True)
    seqs = [ids_of(vocab, t) for t in TEXTS]
    ids, lengths = pad_batch(seqs)
    with torch.no_grad():
        alpha = net.parts(net.embedding(ids), lengths).alpha
    for r, seq in enumerate(seqs):
        n = len(seq)  # <bos> and <eos> included
        assert torch.equal(alpha[r, :n], torch.full((n,), 1.0 / n, dtype=alpha.dtype))


def test_binary_cross_entropy_is_bce(vocab):
    net = make(vocab)
    ids, lengths = pad_batch([ids_of(vocab, t) for t in TEXTS])
    y = torch.tensor([1, 0, 1])
    with torch.no_grad():
        z, _ = net(ids, lengths)
        s = net.parts(net.embedding(ids), lengths).s[:, 0]
    ce = torch.nn.functional.cross_entropy(z, y)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(s, y.double())
    assert abs(float(ce - bce)) < 1e-12


def test_config_rejects_one_class():
    with pytest.raises(InputError, match="at least 2 classes"):
        SnellClassifierConfig(10, 1)


@pytest.fixture(scope="module", params=[False, True], ids=["normal", "uniform"])
def adapter(request, vocab) -> SnellClassifierAdapter:
    return SnellClassifierAdapter(make(vocab, uniform=request.param, seed=3), BosEosTokenizer(vocab), ["neg", "pos"])


def test_every_registered_method_runs(adapter):
    for method in available_methods():
        if method.name == "attention_rollout":
            with pytest.raises(UnsupportedError):
                seqexplain.explain(adapter, TEXTS[0], 1, method=method.name)
            continue
        options = {"steps": 8} if method.name == "integrated_gradients" else {}
        got = seqexplain.explain(adapter, TEXTS[0], 1, method=method.name, **options)
        assert got.scores.shape == (1, 6), method.name
        if method.family != "rationale":
            assert np.isfinite(got.scores).all(), method.name


@pytest.mark.parametrize("text", TEXTS)
def test_occlusion_and_greedy_delete_tokens(adapter, vocab, text):
    net, ids = adapter.model, ids_of(vocab, text)
    every = list(range(len(ids)))
    got = seqexplain.explain(adapter, text, 1, method="occlusion").scores[0]
    base = raw_logp(net, ids, every)[1]
    want = [float(base - raw_logp(net, ids, [k for k in every if k != j])[1]) for j in every]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    greedy = seqexplain.explain(adapter, text, 1, method="greedy").rationale.positions[0]
    s = [0, len(ids) - 1]  # the start set: the special tokens <bos> and <eos>
    while int(raw_logp(net, ids, s).argmax()) != 1 and len(s) < len(ids):
        cands = [j for j in every if j not in s]
        s.append(cands[int(np.argmax([float(raw_logp(net, ids, [*s, j])[1]) for j in cands]))])
    assert greedy == s


def test_attention_view_is_alpha(adapter, vocab):
    ids = torch.tensor([ids_of(vocab, TEXTS[2])])
    with torch.no_grad():
        alpha = adapter.model(ids)[1][0].numpy()
    got = seqexplain.explain(adapter, TEXTS[2], method="attention_last").scores[0]
    np.testing.assert_allclose(got, alpha, atol=1e-12)
    if adapter.model.config.uniform_attention:
        assert np.all(got == 1.0 / len(got))


def test_gradient_matches_autograd(adapter, vocab):
    ids, net = ids_of(vocab, TEXTS[0]), adapter.model
    e = net.embedding(torch.tensor(ids)).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.log_softmax(net.forward_embeds(e.unsqueeze(0))[0][0], -1)[1], e)
    got = seqexplain.explain(adapter, TEXTS[0], 1, method="grad_x_input").scores[0]
    np.testing.assert_allclose(got, (g * e).sum(-1).detach().numpy(), rtol=1e-4, atol=1e-6)
