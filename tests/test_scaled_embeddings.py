"""Encoder-decoders that scale their token embeddings only when they read token ids (Marian — the opus-mt
translation models —, Pegasus: ``embed_scale = √d_model`` inside ``if inputs_embeds is None``): the methods that
feed input vectors (gradients, IG, precomputed vectors) must explain the model that reads the ids. Oracles: the raw
module on token ids, and IG's completeness against the raw module's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se

SOURCE, TARGET = "The quick brown fox jumps.", "The dog sat on"


def _model(name: str, bpe):
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=len(bpe), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
                  pad_token_id=bpe.pad_token_id, eos_token_id=bpe.eos_token_id,
                  decoder_start_token_id=bpe.pad_token_id, scale_embedding=True)
    config_cls, model_cls = {"marian": ("MarianConfig", "MarianMTModel"),
                             "pegasus": ("PegasusConfig", "PegasusForConditionalGeneration")}[name]
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**common)).eval()
    with torch.no_grad():  # trained-size token embeddings, so that the √d scale matters
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    return model


def _raw_logprobs(model, ex, src_embeds=None, dec_embeds=None) -> torch.Tensor:
    s = ex.n_source
    kwargs = ({"input_ids": ex.input_ids[None, :s], "decoder_input_ids": ex.input_ids[None, s:-1]}
              if src_embeds is None else {"inputs_embeds": src_embeds, "decoder_inputs_embeds": dec_embeds})
    with torch.no_grad():
        logits = model(**kwargs).logits[0]
    return torch.log_softmax(logits, -1).gather(1, ex.target_ids.view(-1, 1)).squeeze(1)


@pytest.mark.parametrize("name", ["marian", "pegasus"])
def test_vectors_feed_the_model_that_reads_ids(bpe, name):
    model = _model(name, bpe)
    w = se.load_model(model, bpe)
    ex = w.encode(SOURCE, TARGET)
    with torch.no_grad():
        by_vectors = w.logits(ex, embeds=w.embed(ex))[0]
    expected = _raw_logprobs(model, ex)
    torch.testing.assert_close(torch.log_softmax(by_vectors, -1).gather(1, ex.target_ids.view(-1, 1)).squeeze(1),
                               expected, rtol=1e-4, atol=1e-5)
    # IG from the zero vector: attributions sum to log p(target | ids) − log p(target | zero vectors)
    ig = se.explain_example(w, ex, "integrated_gradients", baseline="zero", steps=64)
    s, n_d = ex.n_source, ex.n_targets
    zero = _raw_logprobs(model, ex, torch.zeros(1, s, 32), torch.zeros(1, n_d, 32))
    np.testing.assert_allclose(np.nansum(ig.scores, 1), (expected - zero).numpy(), rtol=1e-2, atol=1e-2)
    # an example over precomputed vectors (the input layer's output) gives what the token ids give
    vec = ex.replace(input_ids=None, input_vectors=w.embed(ex)[0].detach())
    for method in ("occlusion", "attention_last"):
        np.testing.assert_allclose(se.explain_example(w, vec, method).scores,
                                   se.explain_example(w, ex, method).scores, rtol=1e-5, atol=1e-6)
