"""Audit of the native adapters against brute force on the raw modules: attention views, precomputed vectors and
module state (train mode, requires_grad) around every call. Each test failed before its fix (see git log)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.rnn import Vocab
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    SoftAttentionLSTMAdapter,
    WordCharEmbedding,
    char_table,
)

torch.set_num_threads(1)
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "log"]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(WORDS)


def _soft_lstm(vocab: Vocab) -> SoftAttentionLSTMAdapter:
    torch.manual_seed(0)
    table, index = char_table(vocab, 8)
    emb = WordCharEmbedding(len(vocab), 4, table, len(index), 3, 3)
    net = SoftAttentionBiLSTM(emb, hidden=4, word_hidden=4, dropout=0.5,
                              head={"evidence_size": 4, "final_hidden": 4, "dropout": 0.5}).double()
    return SoftAttentionLSTMAdapter(net, NormalisingWordTokenizer(vocab))


def test_pooling_attention_of_a_model_in_train_mode_is_the_eval_mode_alpha(vocab):
    """A pooling classifier with dropout left in train mode (e.g. right after training): attention methods read
    the eval-mode ``α`` of the raw module (not a dropout sample) and the module comes back in train mode."""
    ad = _soft_lstm(vocab)
    net = ad.model
    ex = ad.encode("the cat sat on a mat", 1)
    with torch.no_grad():
        net.eval()
        alpha = net(ex.input_ids.unsqueeze(0))[1][0].numpy()
    net.train()
    for _ in range(3):
        got = se.explain_example(ad, ex, "attention_last").scores[0]
        np.testing.assert_allclose(got, alpha, rtol=1e-12, atol=1e-12)
    assert net.training and all(m.training for m in net.modules())
