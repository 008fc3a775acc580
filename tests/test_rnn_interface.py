"""The native RNN language model behind the core model interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.errors import UnsupportedError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig, Vocab, WordTokenizer

TEXT = "the cat sat on the mat and the dog sat on the log"


@pytest.fixture(scope="module")
def rnn():
    torch.manual_seed(0)
    vocab = Vocab.build(TEXT.split())
    model = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12, init_scale=0.5))
    return se.load_model(model.eval(), WordTokenizer(vocab))


def test_kind_offsets_and_unknown_words(rnn):
    ex = rnn.encode("the cat sat on zebra", " the mat")
    assert rnn.kind == "causal"
    assert ex.tokens == ["<bos>", "the", "cat", "sat", "on", "<unk>", "the", "mat"]
    assert ex.offsets[5] == (15, 20) and ex.offsets[0] is None
    assert ex.target_positions == [6, 7]


def test_occlusion_equals_deleting_the_word(rnn):
    """For an RNN a dropped position is removed from the input: occlusion = rerun without the word."""
    text, target = "the cat sat on the", " mat"
    attr = se.explain(rnn, text, target, method="occlusion")
    full = rnn.score(rnn.encode(text, target))[0, 0].item()
    words = text.split()
    for k in range(len(words)):
        shorter = " ".join(words[:k] + words[k + 1 :])
        without = rnn.score(rnn.encode(shorter, target))[0, 0].item()
        assert attr.scores[0, k + 1] == pytest.approx(full - without, abs=1e-5)


def test_integrated_gradients_equals_captum(rnn):
    from captum.attr import IntegratedGradients

    ex = rnn.encode("the cat sat on the", " mat and")
    ours = se.explain_example(rnn, ex, "integrated_gradients", steps=16).scores
    e = rnn.embed(ex).detach()
    for i in range(ex.n_targets):
        ig = IntegratedGradients(lambda x, i=i: rnn.score(ex, embeds=x)[:, i])
        ref = ig.attribute(e, baselines=torch.zeros_like(e), n_steps=16)[0].sum(-1).double().numpy()
        vis = ex.visible()[i].numpy()
        np.testing.assert_allclose(ours[i][vis], ref[vis], rtol=1e-4, atol=1e-6)


def test_attention_methods_refused(rnn):
    with pytest.raises(UnsupportedError, match="attention"):
        se.explain(rnn, "the cat sat", " on", method="attention_last")


def test_generation_and_greedy_rationale(rnn):
    attr = se.explain(rnn, "the cat sat on the", method="greedy", max_new_tokens=2)
    assert attr.rationale is not None and len(attr.rationale.positions) == len(attr.target_tokens)
    for i, r in enumerate(attr.rationale.positions):
        assert r[0] == attr.target_positions[i] - 1  # the most recent token comes first


def test_saved_rnn_loads_from_its_directory(rnn, tmp_path):
    rnn.model.save(tmp_path / "lm", vocab=rnn.tokenizer.vocab)
    again = se.load_model(tmp_path / "lm")
    ex = again.encode("the cat sat on the", " mat")
    torch.testing.assert_close(again.score(ex), rnn.score(rnn.encode("the cat sat on the", " mat")))
