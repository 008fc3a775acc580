"""The native adapters (LSTM attention-pooling classifier, BiLSTM token labeller) under every registered method,
each compared with a brute-force oracle that runs the raw torch module on hand-deleted token lists (or
``torch.autograd`` / captum over the raw module's forward), never the adapter's code."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.explain import explain_example
from seqexplain.models.example import Part
from seqexplain.models.native_heads import AttentionPoolingLSTM, PoolingClassifierAdapter
from seqexplain.models.native_tagger import BiLSTMTagger, TokenLabellerAdapter
from seqexplain.models.rnn import Vocab, WordTokenizer

WORDS = ["the", "movie", "film", "was", "good", "great", "bad", "awful", "not", "very", "plot"]
POS, NEG = {"good", "great"}, {"bad", "awful"}
TEXTS = ["the movie was not good", "very bad plot", "great film", "the plot was very awful"]  # no repeated words
ATOL, RTOL = 1e-6, 1e-4


def _sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.sample(WORDS, rng.randint(2, 7)) for _ in range(n)]


def _batch(vocab: Vocab, sents: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in sents)
    ids = torch.stack([torch.cat([vocab.encode(s), torch.full((n - len(s),), vocab.eos_id)]) for s in sents])
    return ids, torch.tensor([len(s) for s in sents])


def _sentiment(s: list[str]) -> int:
    return int(sum(w in POS for w in s) > sum(w in NEG for w in s))


def _tags(s: list[str]) -> list[int]:  # 1: a sentiment word not negated, or a word right before "very"
    return [int((w in POS | NEG and (k == 0 or s[k - 1] != "not")) or (k + 1 < len(s) and s[k + 1] == "very"))
            for k, w in enumerate(s)]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(WORDS)


@pytest.fixture(scope="module")
def clf(vocab: Vocab) -> PoolingClassifierAdapter:
    torch.manual_seed(0)
    net = AttentionPoolingLSTM(len(vocab), 2, emb_dim=8, hidden=8, attn_dim=8).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for step in range(40):
        sents = _sentences(16, step)
        ids, lens = _batch(vocab, sents)
        loss = torch.nn.functional.cross_entropy(net(ids, lens)[0], torch.tensor([_sentiment(s) for s in sents]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return PoolingClassifierAdapter(net.eval(), WordTokenizer(vocab, add_bos=False), ["neg", "pos"], "pool-lstm")


@pytest.fixture(scope="module")
def tagger(vocab: Vocab) -> TokenLabellerAdapter:
    torch.manual_seed(1)
    net = BiLSTMTagger(len(vocab), 2, emb_dim=8, hidden=8).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for step in range(40):
        sents = _sentences(16, 100 + step)
        ids, lens = _batch(vocab, sents)
        gold = torch.tensor([_tags(s) + [-100] * (ids.shape[1] - len(s)) for s in sents])
        loss = torch.nn.functional.cross_entropy(net(ids, lens).flatten(0, 1), gold.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return TokenLabellerAdapter(net.eval(), WordTokenizer(vocab, add_bos=False), ["O", "X"], "bilstm-tagger")


# --------------------------------------------------------------------------- oracles (raw module only)
def ids_of(vocab: Vocab, text: str) -> list[int]:
    return vocab.encode(text.split()).tolist()


def clf_logp(net: AttentionPoolingLSTM, ids: list[int], subset: list[int]) -> torch.Tensor:
    """``[C]`` log-probabilities of the classifier on the tokens at ``subset`` (others deleted by hand)."""
    with torch.no_grad():
        z, _ = net(torch.tensor([[ids[j] for j in sorted(subset)]]))
    return torch.log_softmax(z[0], -1)


def tag_logp(net: BiLSTMTagger, ids: list[int], subset: list[int], i: int) -> torch.Tensor:
    """``[C]`` log-probabilities of token ``i``'s label on the tokens at ``subset`` (which holds ``i``)."""
    kept = sorted(subset)
    with torch.no_grad():
        z = net(torch.tensor([[ids[j] for j in kept]]))
    return torch.log_softmax(z[0, kept.index(i)], -1)


def greedy_oracle(logp, visible: list[int], start: list[int], label: int) -> list[int]:
    s = list(start)
    while int(logp(s).argmax()) != label and len(s) < len(visible):
        cands = [j for j in visible if j not in s]
        vals = [float(logp([*s, j])[label]) for j in cands]
        s.append(cands[int(np.argmax(vals))])  # first maximum: ties to the lowest position
    return s


def exhaustive_oracle(logp, visible: list[int], start: list[int], label: int, max_size: int) -> list[int]:
    cands = [j for j in visible if j not in start]
    for size in range(len(start), max_size + 1):
        for combo in itertools.combinations(cands, size - len(start)):
            if int(logp([*start, *combo]).argmax()) == label:
                return [*start, *combo]
    return []


def grad_oracle(f, e: torch.Tensor) -> torch.Tensor:
    x = e.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    return g


def ig_oracle(f_batched, e: torch.Tensor, steps: int) -> np.ndarray:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(f_batched).attribute(e.unsqueeze(0), baselines=torch.zeros_like(e).unsqueeze(0),
                                                    n_steps=steps, method="gausslegendre")
    return attr[0].sum(-1).detach().numpy()


def close(got: np.ndarray, want: np.ndarray | list, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- pooling classifier
def test_classifier_learned_and_encodes(clf):
    ex = clf.encode("the movie was good")
    assert ex.target_positions == [None] and ex.visible().all() and ex.tokens == ["the", "movie", "was", "good"]
    assert ex.offsets[1] == (4, 9)
    assert clf.encode("great film").target_tokens == ["pos"] and clf.encode("awful plot").target_tokens == ["neg"]
    with pytest.raises(InputError, match="unknown label"):
        clf.encode("great film", "maybe")


def test_classifier_predicts_labels_of_many_inputs_in_one_forward(clf, monkeypatch):
    texts = TEXTS + ["good", "the film was bad", "awful"]
    one = [clf.encode(t).target_tokens for t in texts]
    calls: list[int] = []
    original = clf.logits_many
    monkeypatch.setattr(clf, "logits_many", lambda parts: calls.append(len(parts)) or original(parts))
    assert [ex.target_tokens for ex in clf.encode_many([(t, None) for t in texts])] == one
    assert calls == [len(texts)]  # one forward of all the inputs
    assert [ex.target_tokens for ex in clf.encode_many([("great film", "neg"), ("awful", None)])] == [["neg"],
                                                                                                      ["neg"]]


@pytest.mark.parametrize("text", TEXTS)
def test_classifier_occlusion_is_deleting_tokens(clf, vocab, text):
    ids, net = ids_of(vocab, text), clf.model
    label = int(clf.encode(text).target_ids[0])
    got = seqexplain.explain(clf, text, label, method="occlusion").scores[0]
    every = list(range(len(ids)))
    base = clf_logp(net, ids, every)[label]
    want = [float(base - clf_logp(net, ids, [k for k in every if k != j])[label]) for j in every]
    close(got, want)


@pytest.mark.parametrize("text", TEXTS)
def test_classifier_gradients_match_autograd_and_captum(clf, vocab, text):
    ids, net = ids_of(vocab, text), clf.model
    label = int(clf.encode(text).target_ids[0])
    e = net.embedding(torch.tensor(ids)).detach()

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(net.forward_embeds(x.unsqueeze(0))[0][0], -1)[label]

    g = grad_oracle(f, e)
    close(seqexplain.explain(clf, text, label, method="gradient_norm").scores[0], g.norm(dim=-1).numpy())
    close(seqexplain.explain(clf, text, label, method="grad_x_input").scores[0], (g * e).sum(-1).numpy())
    got = seqexplain.explain(clf, text, label, method="integrated_gradients", steps=16).scores[0]
    close(got, ig_oracle(lambda x: torch.log_softmax(net.forward_embeds(x)[0], -1)[:, label], e, 16))


@pytest.mark.parametrize("text", TEXTS)
def test_classifier_rationales_match_brute_force(clf, vocab, text):
    ids, net = ids_of(vocab, text), clf.model
    every = list(range(len(ids)))
    for label in (0, 1):  # the predicted label and the other one (longer searches)
        def logp(s: list[int]) -> torch.Tensor:
            return clf_logp(net, ids, s)

        greedy = seqexplain.explain(clf, text, label, method="greedy")
        assert greedy.rationale.positions == [greedy_oracle(logp, every, [0], label)]
        exh = seqexplain.explain(clf, text, label, method="exhaustive", max_size=4)
        assert exh.rationale.positions == [exhaustive_oracle(logp, every, [0], label, 4)]


def test_classifier_baseline_rationale_follows_the_order(clf, vocab):
    text = TEXTS[0]
    ids, net = ids_of(vocab, text), clf.model
    occ = seqexplain.explain(clf, text, 1, method="occlusion").scores[0]
    got = seqexplain.explain(clf, text, 1, method="baseline_rationale", order_by="occlusion").rationale.positions[0]
    order = [0, *sorted(range(1, len(ids)), key=lambda j: (-occ[j], j))]  # start set first, then by score
    k = next((n for n in range(1, len(order) + 1) if int(clf_logp(net, ids, order[:n]).argmax()) == 1), len(order))
    assert got == order[:k]


def test_classifier_attention_is_the_pooling_alpha(clf, vocab):
    for text in TEXTS:
        ids = torch.tensor([ids_of(vocab, text)])
        with torch.no_grad():
            alpha = clf.model(ids)[1][0].numpy()
        close(seqexplain.explain(clf, text, method="attention_last").scores[0], alpha, atol=1e-12)
        close(seqexplain.explain(clf, text, method="attention_all").scores[0], alpha, atol=1e-12)
        assert abs(alpha.sum() - 1) < 1e-9
    with pytest.raises(UnsupportedError, match="rollout is not defined"):
        seqexplain.explain(clf, TEXTS[0], method="attention_rollout")


def test_classifier_nothing_kept_reads_position_zero(clf, vocab):
    text = TEXTS[0]
    ids, ex = ids_of(vocab, text), clf.encode(text)
    keep = torch.zeros(2, len(ids), dtype=torch.bool)
    keep[1, 3] = True
    with torch.no_grad():
        got = torch.log_softmax(clf.logits(ex, keep)[:, 0], -1)
    close(got[0].numpy(), clf_logp(clf.model, ids, [0]).numpy(), atol=1e-12)
    close(got[1].numpy(), clf_logp(clf.model, ids, [3]).numpy(), atol=1e-12)


def test_classifier_contrast_objective(clf, vocab):
    text = TEXTS[1]
    ids, net = ids_of(vocab, text), clf.model
    got = seqexplain.explain(clf, text, "pos", method="occlusion", objective="contrast", foil="neg").scores[0]
    every = list(range(len(ids)))

    def c(s: list[int]) -> float:
        lp = clf_logp(net, ids, s)
        return float(lp[1] - lp[0])

    close(got, [c(every) - c([k for k in every if k != j]) for j in every])


# --------------------------------------------------------------------------- token labeller
def test_labeller_every_position_is_a_target(tagger):
    text = TEXTS[0]
    ex = tagger.encode(text)
    n = ex.length
    assert ex.n_targets == n and ex.target_positions == list(range(n))
    assert ex.visible().all() and ex.visible().shape == (n, n)
    assert [tagger.start_positions(ex, i) for i in range(n)] == [[i] for i in range(n)]
    given = tagger.encode(text, "O X O O X")
    assert given.target_ids.tolist() == [0, 1, 0, 0, 1] and given.target_tokens[1] == "X"
    assert tagger.encode(text, [0, 1, 0, 0, 1]).target_ids.tolist() == [0, 1, 0, 0, 1]
    with pytest.raises(InputError, match="one label per token"):
        tagger.encode(text, "O X")
    # the toy task was learned: "not good" is not tagged, "good" elsewhere is
    assert tagger.encode("very good").target_ids.tolist() == [0, 1]


def test_labeller_keep_rule_own_token(tagger, vocab):
    text = TEXTS[3]
    ids, ex, net = ids_of(vocab, text), tagger.encode(text), tagger.model
    n = len(ids)
    keep = torch.ones(3, n, dtype=torch.bool)
    keep[0] = False  # nothing kept: each target sees its own token only
    keep[1, 2] = False  # token 2 dropped: target 2 still sees it, the others do not
    keep[2, [0, 4]] = False
    with torch.no_grad():
        got = torch.log_softmax(tagger.logits(ex, keep), -1)
    for r in range(3):
        kept = torch.nonzero(keep[r]).flatten().tolist()
        for i in range(n):
            close(got[r, i].numpy(), tag_logp(net, ids, sorted(set(kept) | {i}), i).numpy(), atol=1e-12)


@pytest.mark.parametrize("text", TEXTS)
def test_labeller_occlusion_is_deleting_tokens(tagger, vocab, text):
    ids, net = ids_of(vocab, text), tagger.model
    labels = tagger.encode(text).target_ids.tolist()
    got = seqexplain.explain(tagger, text, labels, method="occlusion").scores
    every = list(range(len(ids)))
    want = np.zeros((len(ids), len(ids)))
    for i, j in itertools.product(every, every):
        if i != j:  # j == i: the target still sees its own token, nothing changes
            want[i, j] = float(tag_logp(net, ids, every, i)[labels[i]]
                               - tag_logp(net, ids, [k for k in every if k != j], i)[labels[i]])
    close(got, want)
    assert np.all(np.diag(got) == 0.0)


@pytest.mark.parametrize("text", TEXTS)
def test_labeller_gradients_match_autograd_and_captum(tagger, vocab, text):
    ids, net = ids_of(vocab, text), tagger.model
    labels = tagger.encode(text).target_ids.tolist()
    e = net.embedding(torch.tensor(ids)).detach()
    norm = seqexplain.explain(tagger, text, labels, method="gradient_norm").scores
    gxi = seqexplain.explain(tagger, text, labels, method="grad_x_input").scores
    ig = seqexplain.explain(tagger, text, labels, method="integrated_gradients", steps=12).scores
    for i, y in enumerate(labels):
        g = grad_oracle(lambda x, i=i, y=y: torch.log_softmax(net.forward_embeds(x.unsqueeze(0))[0, i], -1)[y], e)
        close(norm[i], g.norm(dim=-1).numpy())
        close(gxi[i], (g * e).sum(-1).numpy())
        assert np.all(np.abs(g.norm(dim=-1).numpy()) > 0)  # bidirectional: every position reaches every target
        close(ig[i], ig_oracle(lambda x, i=i, y=y: torch.log_softmax(net.forward_embeds(x)[:, i], -1)[:, y], e, 12))


@pytest.mark.parametrize("text", TEXTS[:3])
def test_labeller_rationales_match_brute_force(tagger, vocab, text):
    ids, net = ids_of(vocab, text), tagger.model
    every = list(range(len(ids)))
    flipped = [1 - y for y in tagger.encode(text).target_ids.tolist()]  # explain the other label: longer searches
    greedy = seqexplain.explain(tagger, text, flipped, method="greedy").rationale.positions
    exh = seqexplain.explain(tagger, text, flipped, method="exhaustive", max_size=3).rationale.positions
    for i, y in enumerate(flipped):
        def logp(s: list[int], i: int = i) -> torch.Tensor:
            return tag_logp(net, ids, s, i)

        assert greedy[i] == greedy_oracle(logp, every, [i], y)
        assert exh[i] == exhaustive_oracle(logp, every, [i], y, 3)


def test_labeller_has_no_attention(tagger):
    for method in ("attention_last", "attention_all", "attention_rollout"):
        with pytest.raises(UnsupportedError, match="cannot return attention weights"):
            seqexplain.explain(tagger, TEXTS[0], method=method)


# --------------------------------------------------------------------------- both: batching and vectors
@pytest.mark.parametrize("which", ["clf", "tagger"])
@pytest.mark.parametrize("method", ["gradient_norm", "occlusion"])
def test_explain_many_equals_one_at_a_time(request, which, method):
    adapter = request.getfixturevalue(which)
    texts = ["the movie was not good at all", "very bad", "great", "the plot was very awful"]
    many = list(seqexplain.explain_many(adapter, texts, method=method, progress=False))
    for text, got in zip(texts, many, strict=True):
        want = seqexplain.explain(adapter, text, method=method)
        assert got.scores.shape == want.scores.shape
        close(got.scores, want.scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("which", ["clf", "tagger"])
def test_logits_of_padded_parts_equal_the_raw_module(request, which, vocab):
    adapter = request.getfixturevalue(which)
    exs = [adapter.encode(t) for t in TEXTS]
    keeps = [None, torch.tensor([[True, False, True]]), None, torch.ones(2, 5, dtype=torch.bool)]
    keeps[3][1, 1] = False
    with torch.no_grad():
        outs = adapter.logits_parts([Part(ex, keep=k) for ex, k in zip(exs, keeps, strict=True)])
    for k, out, text in zip(keeps, outs, TEXTS, strict=True):
        ids = ids_of(vocab, text)
        rows = [list(range(len(ids)))] if k is None else [torch.nonzero(r).flatten().tolist() for r in k]
        for r, kept in enumerate(rows):
            if which == "clf":
                close(torch.log_softmax(out[r, 0], -1).numpy(), clf_logp(adapter.model, ids, kept).numpy(),
                      atol=1e-12)
            else:
                for i in range(len(ids)):
                    close(torch.log_softmax(out[r, i], -1).numpy(),
                          tag_logp(adapter.model, ids, sorted(set(kept) | {i}), i).numpy(), atol=1e-12)


@pytest.mark.parametrize("which", ["clf", "tagger"])
@pytest.mark.parametrize("method", ["gradient_norm", "integrated_gradients", "occlusion", "greedy"])
def test_precomputed_vectors_equal_ids(request, which, method):
    adapter = request.getfixturevalue(which)
    ex = adapter.encode(TEXTS[0])
    vec = ex.replace(input_ids=None, input_vectors=adapter.embed(ex)[0].detach())
    got = explain_example(adapter, vec, method)
    want = explain_example(adapter, ex, method)
    close(got.scores, want.scores, rtol=1e-5, atol=1e-7)
    assert (got.rationale is None) == (want.rationale is None)
    if want.rationale is not None:
        assert got.rationale.positions == want.rationale.positions
    if which == "clf":
        close(explain_example(adapter, vec, "attention_last").scores, explain_example(adapter, ex,
                                                                                      "attention_last").scores)


def test_labeller_baseline_rationale_follows_the_order(tagger, vocab):
    text = TEXTS[3]
    ids, net = ids_of(vocab, text), tagger.model
    flipped = [1 - y for y in tagger.encode(text).target_ids.tolist()]
    occ = seqexplain.explain(tagger, text, flipped, method="occlusion").scores
    got = seqexplain.explain(tagger, text, flipped, method="baseline_rationale",
                             order_by="occlusion").rationale.positions
    for i, y in enumerate(flipped):
        order = [i, *sorted((j for j in range(len(ids)) if j != i), key=lambda j, i=i: (-occ[i, j], j))]
        k = next((n for n in range(1, len(order) + 1) if int(tag_logp(net, ids, order[:n], i).argmax()) == y),
                 len(order))
        assert got[i] == order[:k]
