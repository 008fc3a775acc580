"""The native RNN language model behind the core model interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.errors import ModelLoadError, UnsupportedError
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


def test_saved_rnn_without_vocabulary_is_refused_with_both_fixes(rnn, tmp_path):
    """The message names the command line's fix (save the vocabulary), not only the Python one."""
    rnn.model.save(tmp_path / "lm")
    with pytest.raises(ModelLoadError, match=r"holds no vocabulary \(vocab.json\); save the model with its "
                       r"vocabulary, or from Python pass tokenizer=WordTokenizer"):
        se.load_model(tmp_path / "lm")
    again = se.load_model(tmp_path / "lm", rnn.tokenizer)
    assert again.kind == "causal"


def test_explain_many_decodes_prompts_together(monkeypatch):
    """A causal LM without a key/value cache decodes several prompts in shared right-padded forwards: the
    continuations equal a plain argmax loop over the raw module, one prompt at a time (end-of-sequence ends a
    continuation, kept only as its first token), in far fewer forwards than prompts × steps; the scores equal one
    explain call per prompt. Larger random weights than the ``rnn`` fixture's, whose continuations are all alike."""
    torch.manual_seed(0)
    vocab = Vocab.build(TEXT.split())
    module = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12, init_scale=3.0))
    rnn = se.load_model(module.eval(), WordTokenizer(vocab))
    texts = ["the cat sat on the", "the dog", "on the mat and the dog sat", "the", "log"]
    eos = rnn.tokenizer.eos_token_id
    expected = []
    for text in texts:
        ids = rnn.encode(text, " the").input_ids[:-1].tolist()  # <bos> and the prompt's words
        new: list[int] = []
        with torch.no_grad():
            for _ in range(3):
                nxt = int(rnn.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt == eos and new:
                    break
                new.append(nxt)
                if nxt == eos:
                    break
        expected.append(new)
    assert len({tuple(e) for e in expected}) >= 4  # the prompts continue differently
    calls: list[int] = []
    original = rnn.model.forward
    monkeypatch.setattr(rnn.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    examples = rnn.encode_many([(t, None) for t in texts], max_new_tokens=3)
    assert [ex.target_ids.tolist() for ex in examples] == expected
    assert len(calls) <= 3 + len(texts)  # one shared forward per step (plus any near tie taken alone)
    monkeypatch.setattr(rnn.model, "forward", original)
    ones = [se.explain(rnn, t, method="grad_x_input", max_new_tokens=3) for t in texts]
    many = list(se.explain_many(rnn, texts, "grad_x_input", progress=False, max_new_tokens=3))
    for m, o in zip(many, ones, strict=True):
        assert m.target_tokens == o.target_tokens
        np.testing.assert_allclose(m.scores, o.scores, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(o.scores)))
