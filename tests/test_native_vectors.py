"""Precomputed input vectors on the native word adapters (pooling classifier, token labeller, Snell classifier,
soft-attention BiLSTM) and the attention RNN. The word adapters reported no input width, so vectors of another width
went into the LSTM unchecked: scores with no warning one column short, and an aborted process (a double free) two
columns wide. Float64 vectors from numpy on a float32 model were a dtype traceback. Oracles: the same adapter on
the token ids (the embedding layer's vectors given as precomputed ones must explain the same function) and the
float32 vectors for float64 ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqexplain.errors import InputError
from seqexplain.explain import explain_example
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig
from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument
from seqexplain.models.native_heads import AttentionPoolingLSTM, PoolingClassifierAdapter
from seqexplain.models.native_tagger import BiLSTMTagger, TokenLabellerAdapter
from seqexplain.models.rnn import Vocab, WordTokenizer
from seqexplain.models.snell_classifier import (
    BosEosTokenizer,
    SnellClassifier,
    SnellClassifierAdapter,
    SnellClassifierConfig,
)
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    SoftAttentionLSTMAdapter,
    WordCharEmbedding,
)

METHODS = ["occlusion", "gradient_norm", "integrated_gradients", "greedy"]
ADAPTERS = ["pooling", "labeller", "snell", "soft_attention"]


def _adapter(name: str):
    vocab = Vocab.build(["the", "movie", "was", "good"])
    torch.manual_seed(0)
    if name == "pooling":
        return PoolingClassifierAdapter(AttentionPoolingLSTM(len(vocab), 2, emb_dim=6, hidden=4, attn_dim=3).eval(),
                                        WordTokenizer(vocab, add_bos=False), ["n", "p"])
    if name == "labeller":
        return TokenLabellerAdapter(BiLSTMTagger(len(vocab), 2, emb_dim=6, hidden=4).eval(),
                                    WordTokenizer(vocab, add_bos=False), ["O", "X"])
    if name == "snell":
        return SnellClassifierAdapter(SnellClassifier(SnellClassifierConfig(len(vocab), 2, 6, 4, 3)).eval(),
                                      BosEosTokenizer(vocab), ["n", "p"])
    net = SoftAttentionBiLSTM(WordCharEmbedding(len(vocab), 6), hidden=4, word_hidden=3,
                              head={"evidence_size": 3, "final_hidden": 3}).eval()
    return SoftAttentionLSTMAdapter(net, NormalisingWordTokenizer(vocab))


@pytest.mark.parametrize("name", ADAPTERS)
def test_the_input_width_is_the_embedding_width(name):
    adapter = _adapter(name)
    ex = adapter.encode("the movie was good")
    assert adapter.input_width() == int(adapter.embed(ex).shape[-1]) == 6


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ADAPTERS)
def test_vectors_of_another_shape_are_an_input_error(name, method):
    adapter = _adapter(name)
    ex = adapter.encode("the movie was good")
    e = adapter.embed(ex)[0].detach()
    n = len(ex.tokens)
    for bad in (torch.randn(n, 5), torch.randn(n, 8), e.unsqueeze(0), torch.randn(n + 1, 6)):
        with pytest.raises(InputError, match=rf"takes a float tensor \[{n}, 6\]"):
            explain_example(adapter, ex.replace(input_ids=None, input_vectors=bad), method)


@pytest.mark.parametrize("method", ["occlusion", "gradient_norm", "integrated_gradients"])
@pytest.mark.parametrize("name", ADAPTERS)
def test_embedding_vectors_as_float64_explain_what_the_ids_explain(name, method):
    adapter = _adapter(name)
    ex = adapter.encode("the movie was good")
    by_ids = explain_example(adapter, ex, method)
    vectors = torch.from_numpy(adapter.embed(ex)[0].detach().double().numpy())  # as numpy would hand them over
    by_vectors = explain_example(adapter, ex.replace(input_ids=None, input_vectors=vectors), method)
    np.testing.assert_allclose(by_vectors.scores, by_ids.scores, rtol=1e-5, atol=1e-6)


def _ger():
    torch.manual_seed(0)
    net = AttentionRNN(AttentionRNNConfig(input_dim=4, hidden=[5, 4], fc_dim=3, decoder="hier", n_event_types=3))
    return AttentionRNNAdapter(net.eval(), ["n", "p"], ["a", "b", "c"])


def test_attention_rnn_takes_numpy_vectors():
    adapter = _ger()
    x = np.random.default_rng(0).normal(size=(3, 4))
    from_numpy = adapter.encode(VectorDocument(["a", "b", "c"], x, [0, 2, 1]), 0)
    from_torch = adapter.encode(VectorDocument(["a", "b", "c"], torch.tensor(x, dtype=torch.float32), [0, 2, 1]), 0)
    assert torch.equal(from_numpy.input_vectors, from_torch.input_vectors)
    with pytest.raises(InputError, match="not an array of numbers"):
        adapter.encode(VectorDocument(["a"], [["x", "y", "z", "w"]], [0]), 0)


@pytest.mark.parametrize("types", [[0.5, 1.7], [0, float("nan")], [0, "x"]])
def test_attention_rnn_refuses_event_types_that_are_not_whole_numbers(types):
    """[0.5, 1.7] was read as types 0 and 1; a NaN type was a ValueError from int()."""
    with pytest.raises(InputError, match="whole numbers"):
        _ger().encode(VectorDocument(["a", "b"], torch.zeros(2, 4), types), 0)
