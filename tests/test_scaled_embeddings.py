"""Models that scale their token embeddings only when they read token ids (Marian — the opus-mt translation
models — and Pegasus: ``embed_scale = √d_model``, Falcon-H1: ``embedding_multiplier``, inside ``if inputs_embeds is
None``): the methods that feed input vectors (gradients, IG, precomputed vectors) must explain the model that reads
the ids. Oracles: the raw module on token ids, and IG's completeness against the raw module's logits."""

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


def test_causal_vectors_feed_the_model_that_reads_ids(bpe):
    from transformers import FalconH1Config, FalconH1ForCausalLM

    torch.manual_seed(0)
    cfg = FalconH1Config(vocab_size=len(bpe), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, mamba_d_ssm=32, mamba_n_heads=2,
                         mamba_d_head=16, mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=8,
                         max_position_embeddings=64, embedding_multiplier=4.0, pad_token_id=bpe.pad_token_id,
                         eos_token_id=bpe.eos_token_id, bos_token_id=bpe.bos_token_id)
    model = FalconH1ForCausalLM(cfg).eval()
    w = se.load_model(model, bpe)
    ex = w.encode("The quick brown fox", " jumps over")
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ex.input_ids[None]).logits[0], -1)
        by_vectors = torch.log_softmax(w.logits(ex, embeds=w.embed(ex))[0], -1)
        at_zero = torch.log_softmax(model(inputs_embeds=torch.zeros(1, ex.length, 32)).logits[0], -1)
    reads = [p - 1 for p in ex.target_positions]
    expected = logp[reads].gather(1, ex.target_ids.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(by_vectors.gather(1, ex.target_ids.view(-1, 1)).squeeze(1), expected, rtol=1e-4,
                               atol=1e-5)
    ig = se.explain_example(w, ex, "integrated_gradients", baseline="zero", steps=64)
    zero = at_zero[reads].gather(1, ex.target_ids.view(-1, 1)).squeeze(1)
    np.testing.assert_allclose(np.nansum(ig.scores, 1), (expected - zero).numpy(), rtol=1e-2, atol=1e-2)


def test_a_model_whose_ids_path_the_adapter_does_not_know_is_refused(bpe):
    """The safety net for architectures not covered above: with the adapter's knowledge of Marian's scale switched
    off (as for an unknown model), feeding vectors no longer reproduces the ids, and gradient methods refuse rather
    than explain another function; methods that feed no vectors still run."""
    from seqexplain.errors import UnsupportedError

    w = se.load_model(_model("marian", bpe), bpe)
    w._scales = {"encoder": 1.0, "decoder": 1.0}
    ex = w.encode(SOURCE, TARGET)
    with pytest.raises(UnsupportedError, match="input embeddings than when it reads the token ids"):
        se.explain_example(w, ex, "gradient_norm")
    assert np.isfinite(se.explain_example(w, ex, "occlusion").scores[ex.visible().numpy()]).all()
    # an adapter that has only ever seen precomputed vectors checks them against token ids of its own choosing,
    # before the first forward that feeds them (a gradient method or an attention map)
    for method in ("gradient_norm", "attention_last"):
        fresh = se.load_model(w.model, bpe)
        fresh._scales = {"encoder": 1.0, "decoder": 1.0}
        vec = ex.replace(input_ids=None, input_vectors=fresh.embed(ex)[0].detach())
        with pytest.raises(UnsupportedError, match="input embeddings than when it reads the token ids"):
            se.explain_example(fresh, vec, method)
