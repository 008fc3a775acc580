"""Decisions for many inputs taken in shared forwards equal those taken one input at a time: greedy continuations
of many prompts (against a plain one-prompt loop, and on tiny GPT-2, Llama, BART and T5), and the grouping and tie
rules they stand on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.batching import (
    AUTOCAST_TIE_MARGIN,
    TIE_MARGIN,
    consecutive_groups,
    length_groups,
    near_tie,
    tie_margin,
)
from seqexplain.models.greedy import greedy_cached, greedy_many

V, EOS = 7, 0


def fake_logits(seq: list[int]) -> torch.Tensor:
    """A deterministic 'model': the next token is (sum of the sequence + its length) mod V, end-of-sequence (0)
    included; token 3 is always a near second."""
    row = torch.zeros(V)
    best = (sum(seq) + len(seq)) % V
    row[best] = 2.0
    row[3] = max(float(row[3]), 2.0 - 1e-6) if best != 3 else 2.0
    return row


def reference(prompt: list[int], limit: int) -> list[int]:
    """The one-prompt loop, written out: at most max(1, limit) tokens; EOS ends, kept only as the first token."""
    seq, new = list(prompt), []
    for _ in range(max(1, limit)):
        nxt = int(fake_logits(seq).argmax())
        if nxt == EOS and new:
            break
        new.append(nxt)
        seq.append(nxt)
        if nxt == EOS:
            break
    return new


def test_greedy_many_equals_the_one_prompt_loop():
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(1, V, size=int(n))) for n in rng.integers(1, 9, size=40)]
    limits = [int(n) for n in rng.integers(0, 8, size=40)]
    calls = {"many": 0, "one": 0}

    def next_many(ks, seqs):
        calls["many"] += 1
        rows = torch.stack([fake_logits(q) for q in seqs])
        rows[:, 3] += 2e-6  # a shared forward's rounding, deciding every near tie the other way
        return rows

    def next_one(k, seq):
        calls["one"] += 1
        return fake_logits(seq)

    expected = [reference(p, n) for p, n in zip(prompts, limits, strict=True)]
    # the cases the stopping rule distinguishes all occur: EOS first (kept), EOS later (dropped), the limit
    assert [EOS] in expected
    assert any(0 < len(e) < max(1, n) and EOS not in e for e, n in zip(expected, limits, strict=True))
    assert any(len(e) == max(1, n) for e, n in zip(expected, limits, strict=True))
    got = greedy_many(prompts, limits, EOS, next_many, next_one, pack_tokens=40, margin=TIE_MARGIN)
    assert got == expected
    assert calls["many"] < 40 and calls["one"] > 0  # shared forwards, and the near ties taken alone


def test_greedy_cached_equals_the_one_prompt_loop():
    """The cached driver: a group's state advances by the token fed for each sequence (finished ones included)."""
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(1, V, size=int(n))) for n in rng.integers(1, 9, size=40)]
    limits = [int(n) for n in rng.integers(0, 8, size=40)]
    starts: list[int] = []

    def shared(seqs):
        rows = torch.stack([fake_logits(q) for q in seqs])
        rows[:, 3] += 2e-6  # decides every near tie the other way
        return rows

    def start(ks, seqs):
        starts.append(len(seqs))
        return [list(q) for q in seqs], shared(seqs)

    def step(state, tokens):
        assert len(tokens) == len(state)
        state = [q + [int(t)] for q, t in zip(state, tokens, strict=True)]
        return state, shared(state)

    got = greedy_cached(prompts, limits, EOS, start, step, lambda k, q: fake_logits(q), pack_tokens=60,
                        margin=TIE_MARGIN)
    assert got == [reference(p, n) for p, n in zip(prompts, limits, strict=True)]
    assert 1 < len(starts) < 40 and sum(starts) <= 40  # groups share a cache


def test_decoding_progress_counts_every_token_once():
    """The bar's total is the most tokens the continuations may take; a continuation that ends early reports the
    rest when it ends, so the bar ends full."""
    from seqexplain.progress import _BAR, progress_bar

    prompts = [[1, 2], [3], [2], [6]]  # [2]: a later end-of-sequence after 1 token; [6]: end-of-sequence first
    limits = [5, 1, 7, 4]
    with progress_bar("decoding"):
        got = greedy_many(prompts, limits, EOS, lambda ks, seqs: torch.stack([fake_logits(q) for q in seqs]),
                          lambda k, q: fake_logits(q), pack_tokens=40, margin=TIE_MARGIN)
        bar = _BAR.get()
        assert bar.total == 5 + 1 + 7 + 4 and bar.n == bar.total
    assert got == [reference(p, n) for p, n in zip(prompts, limits, strict=True)]
    assert got[2] == [3] and got[3] == [EOS]  # both ended early


def test_explain_many_shows_progress_while_predicting_targets(gpt2, capsys):
    w = se.load_model(*gpt2)
    list(se.explain_many(w, ["The cat sat on the", "Paris is"], "gradient_norm", max_new_tokens=3))
    assert "predicting the targets of 2 item(s)" in capsys.readouterr().err


def test_groups_and_ties():
    assert length_groups([5, 1, 3, 1], 4) == [[1, 3], [2], [0]]
    assert length_groups([9], 4) == [[0]]  # longer than the limit: a group of its own
    assert consecutive_groups([2, 2, 1, 5, 3, 1], 5) == [[0, 1, 2], [3], [4, 5]]  # in order, never re-sorted
    assert consecutive_groups([6, 1], 5) == [[0], [1]] and consecutive_groups([], 5) == []
    assert near_tie(torch.tensor([1.0, 1.0 - 5e-5, 0.0]), TIE_MARGIN)
    assert not near_tie(torch.tensor([1.0, 0.99, 0.0]), TIE_MARGIN)
    assert near_tie(torch.tensor([100.0, 100.0 - 5e-3]), TIE_MARGIN)  # relative to |best| above 1
    assert not near_tie(torch.tensor([2.0]), TIE_MARGIN)
    assert tie_margin(None) == TIE_MARGIN and tie_margin(torch.bfloat16) == AUTOCAST_TIE_MARGIN


@pytest.mark.parametrize("name,method", [("gpt2", "gradient_norm"), ("llama", "gradient_norm"),
                                         ("bart", "grad_x_input"), ("t5", "grad_x_input")])
def test_explain_many_decodes_targets_in_shared_forwards(request, name, method, monkeypatch):
    """Inputs without a target (prompts of a causal LM, sources of an encoder-decoder): explain_many's targets,
    decoded together, and its scores equal one explain call per input, with far fewer forwards than inputs × steps."""
    model, tok = request.getfixturevalue(name)
    w = se.load_model(model, tok)
    texts = ["The cat sat on the", "Paris is", "A dog and a cat sat on the mat in", "The", "It was a dark and"]
    ones = [se.explain(w, t, method=method, max_new_tokens=4) for t in texts]
    calls: list[int] = []
    original = model.forward

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    examples = w.encode_many([(t, None) for t in texts], max_new_tokens=4)
    assert [ex.target_tokens for ex in examples] == [o.target_tokens for o in ones]
    assert len(calls) <= 4 + len(texts)  # one shared forward per step (plus any near tie taken alone)
    monkeypatch.setattr(model, "forward", original)
    many = list(se.explain_many(w, texts, method, progress=False, max_new_tokens=4))
    for m, o in zip(many, ones, strict=True):
        assert m.target_tokens == o.target_tokens and m.tokens == o.tokens
        np.testing.assert_allclose(m.scores, o.scores, rtol=1e-5, atol=1e-6)


def test_a_decoded_target_capped_by_the_decoder_positions_says_so(bart):
    """BART's 128 positions leave 127 decoder tokens after the start token: asking for more warns in the result."""
    w = se.load_model(*bart)
    attr = se.explain(w, "the cat sat", method="gradient_norm", max_new_tokens=200)
    assert any("only 127 of the 200 requested tokens" in m for m in attr.warnings)
    assert not se.explain(w, "the cat sat", method="gradient_norm", max_new_tokens=3).warnings
