"""Models with local or block attention (Longformer, LED, LongT5) return attention weights over a window, not over
positions: attention methods refuse what they cannot read (they used to write window slots into positions, or crash
in rollout), and gradient methods run on a Longformer classifier (its global attention on the first token, which it
finds through input_ids, is given with input vectors). Oracles: the raw module's attentions and autograd through its
own embedding layer on the token-id path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.errors import UnsupportedError

TEXT = "The quick brown fox jumps over the lazy dog."


def test_longformer_classifier(bpe):
    from transformers import LongformerConfig, LongformerForSequenceClassification

    torch.manual_seed(0)
    model = LongformerForSequenceClassification(LongformerConfig(
        vocab_size=len(bpe), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        attention_window=4, max_position_embeddings=130, num_labels=2, pad_token_id=bpe.pad_token_id)).eval()
    w = se.load_model(model, bpe)
    with pytest.raises(UnsupportedError, match="local or block-sparse"):
        se.explain(w, TEXT, None, "attention_last")
    attr = se.explain(w, TEXT, None, "gradient_norm")
    ids = torch.tensor([bpe(TEXT)["input_ids"]])
    grabbed = []

    def keep_grad(_module, _inputs, out):
        out.retain_grad()
        grabbed.append(out)

    handle = model.get_input_embeddings().register_forward_hook(keep_grad)
    try:
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        logp[int(logp.argmax())].backward()
    finally:
        handle.remove()
    expected = grabbed[0].grad[0, : ids.shape[1]].norm(dim=-1).numpy()
    np.testing.assert_allclose(attr.scores[0], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["led", "longt5"])
def test_local_encoder_attention(bpe, name):
    import transformers

    torch.manual_seed(0)
    if name == "led":
        model = transformers.LEDForConditionalGeneration(transformers.LEDConfig(
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=len(bpe), max_encoder_position_embeddings=128,
            max_decoder_position_embeddings=128, attention_window=[4], pad_token_id=bpe.pad_token_id,
            eos_token_id=bpe.eos_token_id, decoder_start_token_id=bpe.eos_token_id)).eval()
    else:
        model = transformers.LongT5ForConditionalGeneration(transformers.LongT5Config(
            d_model=32, d_kv=16, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=len(bpe),
            pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id,
            decoder_start_token_id=bpe.pad_token_id)).eval()
    w = se.load_model(model, bpe)
    ex = w.encode("The quick brown fox jumps.", "The dog sat")
    with pytest.raises(UnsupportedError, match="rollout is not defined"):
        se.explain_example(w, ex, "attention_rollout")
    got = se.explain_example(w, ex, "attention_last").scores
    s = ex.n_source
    with torch.no_grad():
        out = model(input_ids=ex.input_ids[None, :s], decoder_input_ids=ex.input_ids[None, s:-1],
                    output_attentions=True)
    np.testing.assert_allclose(got[:, :s], out.cross_attentions[-1][0].mean(0).numpy(), rtol=1e-5, atol=1e-6)
