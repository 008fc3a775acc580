"""Rationale methods against brute-force reimplementations of Vafa et al.'s loops with plain HF forwards."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from seqexplain import explain, load_model
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.methods.rationale import (
    baseline_rationale,
    exhaustive,
    greedy,
    ranked_positions,
    rationale_from_scores,
)
from seqexplain.methods.registry import get_method

CAUSAL_TEXT = "The cat sat on the mat. The dog"
SEQ2SEQ_TEXT = "The cat sat on the mat."
CLS_TEXT = "the quick brown fox jumps over the lazy dog"


# --------------------------------------------------------------------------- oracles (plain HF forward)
@torch.no_grad()
def causal_logp(module, ids: torch.Tensor, p: int, subsets: list[list[int]]) -> torch.Tensor:
    """``[R, V]`` log-distribution predicting position ``p`` from each subset, the paper's way: the subset's tokens
    only, with their original position ids."""
    x = torch.stack([ids[s] for s in subsets])
    pos = torch.tensor(subsets)
    out = module(input_ids=x, attention_mask=torch.ones_like(x), position_ids=pos).logits[:, -1]
    return out.float().log_softmax(-1)


@torch.no_grad()
def seq2seq_logp(module, ids: torch.Tensor, n_src: int, p: int, subsets: list[list[int]]) -> torch.Tensor:
    """``[R, V]``: encoder over the source with ``attention_mask`` = subset, decoder over ``[S, p)`` with
    ``decoder_attention_mask`` = subset, read at decoder index ``p − 1 − S``."""
    n = len(subsets)
    mask = torch.zeros(n, p, dtype=torch.long)
    for r, s in enumerate(subsets):
        mask[r, s] = 1
    src = ids[:n_src].expand(n, -1)
    dec = ids[n_src:p].expand(n, -1)
    out = module(input_ids=src, attention_mask=mask[:, :n_src], decoder_input_ids=dec,
                 decoder_attention_mask=mask[:, n_src:]).logits[:, p - 1 - n_src]
    return out.float().log_softmax(-1)


@torch.no_grad()
def classifier_logp(module, ids: torch.Tensor, subsets: list[list[int]]) -> torch.Tensor:
    n = len(subsets)
    mask = torch.zeros(n, ids.shape[0], dtype=torch.long)
    for r, s in enumerate(subsets):
        mask[r, s] = 1
    return module(input_ids=ids.expand(n, -1), attention_mask=mask).logits.float().log_softmax(-1)


def reference_greedy(logp_fn, start: list[int], visible: list[int], target: int) -> tuple[list[int], bool]:
    """Vafa et al.'s greedy loop for one target: one step's candidates in one batch, strict ``>`` scan in
    increasing position (ties to the lowest)."""
    rationale = list(start)
    best_logits = logp_fn([sorted(rationale)])[0]
    while int(best_logits.argmax()) != target:
        cands = [j for j in visible if j not in rationale]
        if not cands:
            return rationale, False
        lp = logp_fn([sorted([*rationale, j]) for j in cands])
        best = 0
        for k in range(1, len(cands)):
            if lp[k, target] > lp[best, target]:
                best = k
        rationale.append(cands[best])
        best_logits = lp[best]
    return rationale, True


def reference_exhaustive(logp_fn, start: list[int], visible: list[int], target: int, max_size: int) -> list[int]:
    cands = [j for j in visible if j not in start]
    for n_add in range(0, max_size - len(start) + 1):
        for combo in itertools.combinations(cands, n_add):
            if int(logp_fn([sorted([*start, *combo])])[0].argmax()) == target:
                return [*start, *combo]
    return []


def _oracle(wrapped, ex):
    ids = ex.input_ids
    if ex.kind == "causal":
        return lambda i: (lambda subs: causal_logp(wrapped.model, ids, ex.target_positions[i], subs))
    if ex.kind == "seq2seq":
        return lambda i: (lambda subs: seq2seq_logp(wrapped.model, ids, ex.n_source, ex.target_positions[i], subs))
    return lambda i: (lambda subs: classifier_logp(wrapped.model, ids, subs))


def _starts(ex, i):
    if ex.kind == "classifier":
        return [j for j, s in enumerate(ex.segments) if s == "special"]
    return [ex.target_positions[i] - 1]


def sharpened(pair, factor: float = 6.0):
    """A copy of a tiny random model with every weight matrix scaled up, so its predictions depend on the
    context (tiny random models predict almost uniformly from the last token alone)."""
    module, tok = pair
    module = copy.deepcopy(module)
    with torch.no_grad():
        for param in module.parameters():
            if param.dim() == 2:
                param.mul_(factor)
    return load_model(module, tok)


def with_subset_targets(wrapped, ex):
    """Replace each target by a token the model predicts from a two-position subset but not from the start set
    alone (so greedy has to search), choosing targets left to right since later targets see earlier ones."""
    ex = copy.deepcopy(ex)
    ids = ex.input_ids
    for i in range(ex.n_targets):
        p = ex.target_positions[i]
        if ex.kind == "causal":
            fn = lambda subs, p=p: causal_logp(wrapped.model, ids, p, subs)  # noqa: E731
        else:
            fn = lambda subs, p=p: seq2seq_logp(wrapped.model, ids, ex.n_source, p, subs)  # noqa: E731
        alone = int(fn([[p - 1]])[0].argmax())
        pairs = fn([[j, p - 1] for j in range(p - 1)]).argmax(-1).tolist()
        choice = next((t for t in pairs if t != alone), pairs[0])
        ids[p] = choice
        ex.target_ids[i] = choice
    ex.target_tokens = wrapped.tokenizer.convert_ids_to_tokens(ex.target_ids.tolist())
    return ex


def _check_greedy(wrapped, ex, token_budget=16384):
    res = greedy(wrapped, ex, token_budget=token_budget)
    oracle = _oracle(wrapped, ex)
    vis = ex.visible()
    for i in range(ex.n_targets):
        visible = [int(j) for j in torch.nonzero(vis[i]).flatten()]
        ref, reached = reference_greedy(oracle(i), _starts(ex, i), visible, int(ex.target_ids[i]))
        assert res.rationales[i] == ref, f"target {i}"
        assert res.meta["reached"][i] == reached
        assert res.rationale_log[i][-1]["reached"] == reached
        assert [e["size"] for e in res.rationale_log[i]] == list(range(len(_starts(ex, i)), len(ref) + 1))
    return res


# --------------------------------------------------------------------------- greedy vs the oracle
@pytest.mark.parametrize("fixture", ["gpt2", "llama"])
def test_greedy_causal_matches_reference(request, fixture):
    wrapped = sharpened(request.getfixturevalue(fixture))
    ex = with_subset_targets(wrapped, wrapped.encode(CAUSAL_TEXT, None, max_new_tokens=4))
    res = _check_greedy(wrapped, ex)
    sizes = [len(r) for r in res.rationales]
    assert max(sizes) >= 2 and any(res.meta["reached"])  # the searches are not trivial
    # never reached: the whole context is used, every step compared with the oracle
    fixed = wrapped.encode("The cat sat on", " the mat")
    res_fixed = _check_greedy(wrapped, fixed)
    assert any(len(r) == p for r, p in zip(res_fixed.rationales, fixed.target_positions, strict=True))
    # a small budget packs the rows differently and must not change anything
    small = greedy(wrapped, ex, token_budget=40)
    assert small.rationales == res.rationales
    assert small.meta["forwards"] > res.meta["forwards"]


def test_greedy_seq2seq_matches_reference(bart):
    wrapped = sharpened(bart)
    ex = with_subset_targets(wrapped, wrapped.encode(SEQ2SEQ_TEXT, None, max_new_tokens=4))
    res = _check_greedy(wrapped, ex)
    s = ex.n_source
    assert res.rationales[0][0] == s  # the decoder start comes first for the first target
    assert max(len(r) for r in res.rationales) >= 2
    # decoder and source candidates compete in the same step
    picked = {j for r in res.rationales for j in r[1:]}
    assert any(j < s for j in picked)
    _check_greedy(wrapped, wrapped.encode("The cat", " sat on the"))


def test_greedy_classifier_matches_reference(bert):
    wrapped = sharpened(bert)
    specials = None
    for label in range(3):
        ex = wrapped.encode(CLS_TEXT, label)
        res = _check_greedy(wrapped, ex)
        specials = [j for j, s in enumerate(ex.segments) if s == "special"]
        assert res.rationales[0][: len(specials)] == specials
        assert res.rationale_log[0][0]["added"] == specials


def test_greedy_ties_go_to_the_lowest_position(gpt2):
    module, tok = gpt2
    module = copy.deepcopy(module)
    with torch.no_grad():
        module.transformer.wpe.weight.zero_()  # no position information: equal tokens give equal rows
    wrapped = load_model(module, tok)
    a = tok.convert_tokens_to_ids("a") if "a" in tok.get_vocab() else 10
    b = a + 1
    ids = [b, a, a, b, a, b, b, a]
    ex = wrapped.encode(tok.decode(ids), tok.decode([b]))
    ex_ids = ex.input_ids.tolist()
    p = ex.target_positions[0]
    res = greedy(wrapped, ex, max_size=2)
    added = res.rationales[0][1]
    # every candidate holding the same token as `added` gives exactly the same row: the lowest must win
    same = [j for j in range(p - 1) if ex_ids[j] == ex_ids[added]]
    assert len(same) > 1
    assert added == min(same)
    # and the tie really is exact in the scores the oracle sees
    lp = causal_logp(module, ex.input_ids, p, [[j, p - 1] for j in same])[:, int(ex.target_ids[0])]
    assert torch.all(lp == lp[0])


def test_greedy_log_and_scores(gpt2):
    wrapped = load_model(*gpt2)
    attr = explain(wrapped, CAUSAL_TEXT, None, method="greedy", max_new_tokens=2)
    assert attr.rationale is not None
    for i, rat in enumerate(attr.rationale.positions):
        n = len(rat)
        for rank, j in enumerate(rat):
            assert attr.scores[i, j] == pytest.approx((n - rank) / n)
        p = attr.target_positions[i]
        others = [j for j in range(p) if j not in rat]
        assert np.all(attr.scores[i, others] == 0)
        assert np.all(np.isnan(attr.scores[i, p:]))
        entry = attr.rationale.log[i][-1]
        assert set(entry) >= {"size", "added", "predicted_id", "predicted", "predicted_prob", "target_prob",
                              "reached", "elapsed_s"}
        assert 0 <= entry["target_prob"] <= entry["predicted_prob"] <= 1


def test_greedy_reaches_with_full_context_for_own_predictions(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode(CAUSAL_TEXT, None, max_new_tokens=3)
    res = greedy(wrapped, ex)
    assert all(res.meta["reached"])  # the model's own argmax continuation is reached at the latest with everything


# --------------------------------------------------------------------------- exhaustive
@pytest.mark.parametrize("fixture", ["gpt2", "bart", "bert"])
def test_exhaustive_matches_brute_force(request, fixture):
    wrapped = sharpened(request.getfixturevalue(fixture))
    if wrapped.kind == "classifier":
        ex = wrapped.encode("the quick brown fox")
    else:
        ex = wrapped.encode("The cat sat", None, max_new_tokens=3)
    res = exhaustive(wrapped, ex, max_size=3)
    oracle = _oracle(wrapped, ex)
    vis = ex.visible()
    for i in range(ex.n_targets):
        visible = [int(j) for j in torch.nonzero(vis[i]).flatten()]
        ref = reference_exhaustive(oracle(i), _starts(ex, i), visible, int(ex.target_ids[i]), 3)
        assert res.rationales[i] == ref
        bounded = ref == [] and len(visible) > 3  # [] with the whole context tried is no bound hit
        assert (i in res.meta["bound_hit"]) == bounded
        if ref == []:
            assert res.rationale_log[i][-1]["bound_hit"] == bounded


def test_exhaustive_never_longer_than_greedy(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode("The cat sat on", None, max_new_tokens=3)
    g = greedy(wrapped, ex)
    e = exhaustive(wrapped, ex, max_size=ex.length)
    for i in range(ex.n_targets):
        if g.meta["reached"][i]:
            assert 0 < len(e.rationales[i]) <= len(g.rationales[i])


# --------------------------------------------------------------------------- baseline orders
def test_ranked_positions_order_and_ties():
    scores = np.array([0.5, 2.0, 0.5, np.nan, 1.0, 9.0])
    assert ranked_positions(scores, [0, 1, 2, 3, 4, 5], [5]) == [5, 1, 4, 0, 2, 3]


def test_rationale_from_scores_matches_reference(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode(CAUSAL_TEXT, None, max_new_tokens=3)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(ex.n_targets, ex.length))
    res = rationale_from_scores(wrapped, ex, scores)
    oracle = _oracle(wrapped, ex)
    for i in range(ex.n_targets):
        p = ex.target_positions[i]
        order = ranked_positions(scores[i], list(range(p)), [p - 1])
        fn = oracle(i)
        ref = order
        for k in range(1, len(order) + 1):
            if int(fn([sorted(order[:k])])[0].argmax()) == int(ex.target_ids[i]):
                ref = order[:k]
                break
        assert res.rationales[i] == ref


@pytest.mark.parametrize("order_by", ["gradient_norm", "attention_last", "occlusion"])
def test_baseline_rationale_uses_the_method_order(gpt2, order_by):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode(CAUSAL_TEXT, None, max_new_tokens=2)
    res = baseline_rationale(wrapped, ex, order_by=order_by)
    ranks = get_method(order_by).fn(wrapped, ex).scores
    for i, rat in enumerate(res.rationales):
        p = ex.target_positions[i]
        order = ranked_positions(ranks[i], list(range(p)), [p - 1])
        assert rat == order[: len(rat)]
    assert res.meta["order_by"] == order_by


def test_baseline_rationale_rejects_bad_order(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode("The cat", " sat")
    with pytest.raises(InputError):
        baseline_rationale(wrapped, ex, order_by="greedy")
    with pytest.raises(InputError):
        baseline_rationale(wrapped, ex, order_by="gradient_norm", order_options={"nope": 1})


def test_registered_and_explainable(gpt2):
    names = {"greedy", "exhaustive", "baseline_rationale"}
    for n in names:
        assert get_method(n).family == "rationale"
    attr = explain(load_model(*gpt2), "The cat", " sat", method="baseline_rationale", order_by="grad_x_input")
    assert attr.rationale is not None and len(attr.rationale.positions) == len(attr.target_tokens)


# --------------------------------------------------------------------------- unsupported models
class _NoMask(torch.nn.Module):
    """A causal LM wrapper whose forward cannot take an attention mask."""

    seqexplain_kind = "causal"

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.inner(input_ids=input_ids, inputs_embeds=inputs_embeds)


def test_model_without_attention_mask_is_rejected(gpt2):
    module, tok = gpt2
    wrapped = load_model(_NoMask(module), tok)
    ex = wrapped.encode("The cat", " sat")
    for fn in (greedy, exhaustive):
        with pytest.raises(UnsupportedError, match="attention_mask"):
            fn(wrapped, ex)
    with pytest.raises(UnsupportedError, match="attention_mask"):
        baseline_rationale(wrapped, ex)


def test_bad_options(gpt2):
    wrapped = load_model(*gpt2)
    ex = wrapped.encode("The cat", " sat")
    with pytest.raises(InputError):
        greedy(wrapped, ex, token_budget=0)
    with pytest.raises(InputError):
        greedy(wrapped, ex, max_size=0)


def test_keep_mask_support_is_checked_by_the_model_interface(gpt2):
    """Dropping positions needs an attention mask: the interface refuses it (occlusion too), while methods that
    keep every position still run on such a module."""
    import seqexplain as se

    module, tok = gpt2
    wrapped = load_model(_NoMask(module), tok)
    assert "attention_mask" in wrapped.keep_mask_problem()
    with pytest.raises(UnsupportedError, match="attention_mask"):
        se.explain(wrapped, "The cat sat", " on", method="occlusion")
    attr = se.explain(wrapped, "The cat sat", " on", method="gradient_norm")
    reference = se.explain(load_model(module, tok), "The cat sat", " on", method="gradient_norm")
    np.testing.assert_allclose(attr.scores, reference.scores, rtol=1e-5, atol=1e-7)
    assert load_model(module, tok).keep_mask_problem() is None
