"""RNN and transformer memory on one plot: the state-gradient pipeline for both model families end to end."""

from __future__ import annotations

import numpy as np
import torch

from seqexplain.analysis.plots import plot_curves
from seqexplain.analysis.spectra import EmbeddingNormalizer, summarize
from seqexplain.analysis.state_gradient_stats import accumulate
from seqexplain.analysis.state_gradients import iter_rnn_state_gradients, iter_transformer_state_gradients
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig


def test_rnn_and_transformer_memory_on_one_plot(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    ids = torch.randint(0, 50, (120,))
    rnn = RNNLanguageModel(RNNLMConfig(vocab_size=50, embedding_size=8, hidden_size=12)).eval()
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=8, n_head=2, vocab_size=50, n_positions=64)).eval()
    max_delay = 6
    rstats = accumulate(iter_rnn_state_gradients(rnn, ids, state="hidden", max_delay=max_delay, segment_length=20,
                                                 batch_size=2))
    tstats = accumulate(iter_transformer_state_gradients(gpt2, ids, layer=-1, max_delay=max_delay,
                                                         segment_length=20))
    curves = {
        "LSTM": summarize(rstats, EmbeddingNormalizer.fit(rnn.get_input_embeddings().weight.detach())).total[0],
        "GPT-2": summarize(tstats, EmbeddingNormalizer.fit(gpt2.get_input_embeddings().weight.detach())).total[0],
    }
    for values in curves.values():
        arr = np.asarray(values, dtype=float)
        assert arr.shape == (max_delay + 1,) and np.isfinite(arr).all() and (arr >= 0).all()
    out = plot_curves(curves, tmp_path / "memory.png", "Memory against delay", "sum of singular values", logy=True)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
