"""Precision and placement asked of a model are what its results were computed with: ``load_model`` applies
``device``, ``dtype`` and ``autocast`` to a wrapper it is given (they were ignored), attention methods run their
forward under the autocast their results are labelled with (they ran in float32), and an operation that has no
kernel under the asked autocast is an :class:`UnsupportedError`, not a torch traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.errors import InputError, UnsupportedError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig, Vocab, WordTokenizer


def test_load_model_applies_what_it_is_asked_to_a_wrapper(gpt2):
    model, tok = gpt2
    wrapped = se.load_model(model, tok)
    assert se.load_model(wrapped, autocast="bf16") is wrapped and wrapped.autocast == torch.bfloat16
    model.train()
    try:
        assert se.load_model(wrapped).autocast == torch.bfloat16  # nothing asked: left as it is, modes too
        assert model.training
    finally:
        model.eval()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            se.load_model(wrapped, device="cuda")
    with pytest.raises(InputError, match="explains a causal model, not a classifier"):
        se.load_model(wrapped, kind="classifier")
    wrapped.autocast = None


@pytest.mark.parametrize("method", ["attention_last", "attention_rollout"])
def test_attention_runs_under_the_autocast_it_is_labelled_with(gpt2, method):
    model, tok = gpt2
    plain = se.explain(se.load_model(model, tok), "The cat sat on the", " mat", method)
    cast = se.explain(se.load_model(model, tok, autocast="bf16"), "The cat sat on the", " mat", method)
    assert cast.meta["autocast"] == "bfloat16"
    seen = ~np.isnan(plain.scores)
    assert not np.array_equal(cast.scores[seen], plain.scores[seen])  # bf16 rounding shows in the weights
    np.testing.assert_allclose(cast.scores[seen], plain.scores[seen], atol=2e-2)


def test_an_operation_without_a_kernel_under_autocast_is_unsupported_not_a_traceback():
    torch.manual_seed(0)
    vocab = Vocab.build(["the", "cat", "sat", "on", "mat"])
    net = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12)).eval()
    x = net.get_input_embeddings()(torch.tensor([[1, 2, 3]])).detach().requires_grad_(True)
    try:  # whether this torch build has a float16 LSTM kernel on the CPU
        with torch.autocast("cpu", dtype=torch.float16):
            net(inputs_embeds=x)
    except RuntimeError:
        pass
    else:
        pytest.skip("this torch build runs LSTMs under float16 autocast on the CPU")
    wrapped = se.load_model(net, WordTokenizer(vocab), autocast="fp16")
    with pytest.raises(UnsupportedError, match="cannot run under float16 autocast on cpu .*autocast='bf16'"):
        se.explain(wrapped, "the cat sat on the", " mat", "gradient_norm")
    assert se.explain(se.load_model(net, WordTokenizer(vocab), autocast="bf16"), "the cat sat on the", " mat",
                      "gradient_norm").meta["autocast"] == "bfloat16"


def test_a_model_whose_logits_overflow_is_explained_with_its_cells_flagged(gpt2, tmp_path):
    """Token embeddings scaled to 1e38 make the logits NaN: the kind check at loading and the vectors check of the
    gradient methods compared them with a NaN tolerance and ended in a torch traceback."""
    import copy

    model, tok = gpt2
    broken = copy.deepcopy(model)
    ids = tok("a z b", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        broken.transformer.wte.weight[3:10] *= 1e38  # tokens the loading's kind check probes with
        broken.transformer.wte.weight[ids[1]] *= 1e38
    broken.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    wrapped = se.load_model(tmp_path / "m")
    attr = se.explain(wrapped, "a z b", " c", "gradient_norm")
    assert attr.nonfinite_cells() and any("NaN or infinite" in w for w in attr.warnings), attr.warnings
