"""Gradient methods against captum run on the raw Hugging Face forward, not on seqexplain's ``score``.

``tests/test_methods_oracle.py`` gives captum seqexplain's own ``score(example, embeds=...)``, so a mistake in how
the wrapper builds its forward (masks, position ids, decoder inputs, reading positions, the embedding space) would
be on both sides. Here the attributed function is written out with the model alone:

* causal LM:   ``f_i(e) = log_softmax(model(inputs_embeds=e, attention_mask=1).logits[:, p_i - 1])[:, t_i]``
* classifier:  ``f(e)   = log_softmax(model(inputs_embeds=e, attention_mask=1).logits)[:, label]``
* encoder-decoder: ``f_i(e_src, e_dec) = log_softmax(model(inputs_embeds=e_src, decoder_inputs_embeds=e_dec,
  ...).logits[:, i])[:, t_i]``, the decoder inputs being the start token and the targets before the last.

**The embedding space.** Attributions are over what the model calls ``inputs_embeds``: the output of its word
embedding layer, before position / token-type embeddings (added inside the model) — for BART *after* its
``embed_scale`` (``BartScaledWordEmbedding`` multiplies by ``sqrt(d_model)`` when ``scale_embedding=True`` and
``model(input_ids=...)`` passes ``embed_tokens(input_ids)`` on as ``inputs_embeds``). The oracle computes these
embeddings from the weight matrix itself (``weight[ids] * embed_scale``), checks that the model's forward from
them equals its forward from the ids (so this is the space the model's own forward starts in), and then compares
the attributions. A BART with ``scale_embedding=True`` (scale √32) is included so that the scale matters.

Both sides use the token ids of ``wrapped.encode(text, target)``. Tolerance: 1e-4 relative, per target row (the
absolute part is 1e-4 of the row's largest oracle value, so float32 rounding near zero does not count).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se

INPUTS = {
    "gpt2": ("The cat sat on the mat.", " The dog sat"),
    "bert": ("The quick brown fox jumps over the lazy dog.", "positive"),
    "bart": ("The quick brown fox jumps.", "The dog sat on"),
    "bart_scaled": ("Paris is the capital of France.", "Berlin is the"),
}
MODELS = list(INPUTS)


@pytest.fixture(scope="module")
def bart_scaled(bpe):
    """The BART of ``conftest.py`` with ``scale_embedding=True``: embeddings enter the model times √d_model."""
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(bpe), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
                     pad_token_id=bpe.pad_token_id, bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id,
                     decoder_start_token_id=bpe.eos_token_id, forced_bos_token_id=None, scale_embedding=True)
    return BartForConditionalGeneration(cfg).eval(), bpe


def _word_embeddings(layer: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """``[1, n, D]``: the model's ``inputs_embeds`` for ``ids``, from the weight matrix and the layer's scale."""
    scale = float(getattr(layer, "embed_scale", 1.0))
    return (layer.weight.detach()[ids] * scale).unsqueeze(0).requires_grad_(True)  # captum differentiates them


class RawOracle:
    """The attributed functions of an encoded example, written against the Hugging Face model directly.

    ``inputs``: the tuple of embedding tensors captum attributes over (one, or source and decoder for an
    encoder-decoder); ``function(i)``: ``f_i`` of those tensors (batched); ``to_axis``: captum's per-tensor
    ``[1, n, D]`` results → seqexplain's input axis ``[L, D]`` (positions the model never sees get zeros)."""

    def __init__(self, model: torch.nn.Module, ex: se.Example) -> None:
        self.model, self.ex = model, ex
        ids = ex.input_ids
        if ex.kind == "seq2seq":
            s, n_t = ex.n_source, ex.n_targets
            enc, dec = model.get_encoder().embed_tokens, model.get_decoder().embed_tokens
            self.inputs = (_word_embeddings(enc, ids[:s]), _word_embeddings(dec, ids[s : s + n_t]))
            with torch.no_grad():
                from_ids = model(input_ids=ids[None, :s], decoder_input_ids=ids[None, s : s + n_t]).logits
                from_embeds = model(inputs_embeds=self.inputs[0], decoder_inputs_embeds=self.inputs[1]).logits
        else:
            self.inputs = (_word_embeddings(model.get_input_embeddings(), ids),)
            with torch.no_grad():
                from_ids = model(input_ids=ids[None]).logits
                from_embeds = model(inputs_embeds=self.inputs[0]).logits
        # the oracle's embeddings are what the model's own forward computes from the ids
        torch.testing.assert_close(from_embeds, from_ids, rtol=1e-5, atol=1e-6)

    def function(self, i: int):
        ex, model = self.ex, self.model
        t = int(ex.target_ids[i])

        def f(*embeds: torch.Tensor) -> torch.Tensor:
            n_b = embeds[0].shape[0]
            if ex.kind == "seq2seq":
                src, dec = embeds
                logits = model(inputs_embeds=src, attention_mask=torch.ones(n_b, src.shape[1], dtype=torch.long),
                               decoder_inputs_embeds=dec,
                               decoder_attention_mask=torch.ones(n_b, dec.shape[1], dtype=torch.long)).logits[:, i]
            else:
                (x,) = embeds
                logits = model(inputs_embeds=x, attention_mask=torch.ones(n_b, x.shape[1], dtype=torch.long)).logits
                if ex.kind == "causal":
                    logits = logits[:, ex.target_positions[i] - 1]
            return logits.log_softmax(-1)[:, t]

        return f

    def to_axis(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        axis = torch.zeros(self.ex.length, parts[0].shape[-1], dtype=torch.float64)
        at = 0
        for p in parts:
            axis[at : at + p.shape[1]] = p[0].detach().double()
            at += p.shape[1]
        return axis

    def rows(self, algo_cls, reduce, **attr_kwargs) -> np.ndarray:
        out = []
        for i in range(self.ex.n_targets):
            parts = algo_cls(self.function(i)).attribute(self.inputs, **attr_kwargs)
            out.append(reduce(self.to_axis(tuple(parts))).numpy())
        return np.stack(out)


def _explain(request, name: str, method: str, **options) -> tuple[se.Attribution, se.Example, RawOracle]:
    """seqexplain's attribution (``se.explain`` on the Hugging Face model and tokenizer) and the raw oracle of the
    same encoded example."""
    model, tok = request.getfixturevalue(name)
    text, target = INPUTS[name]
    attr = se.explain(model, text, target, method=method, tokenizer=tok, **options)
    ex = se.load_model(model, tok).encode(text, target)
    assert attr.tokens == ex.tokens and attr.target_tokens == ex.target_tokens  # the same ids on both sides
    oracle = RawOracle(model, ex)
    return attr, ex, oracle


def _assert_rows_close(ex: se.Example, ours: np.ndarray, oracle: np.ndarray) -> None:
    visible = ex.visible().numpy()
    assert ours.shape == oracle.shape == visible.shape
    assert np.isnan(ours[~visible]).all() and np.isfinite(ours[visible]).all()
    for i in range(ex.n_targets):
        o, r = ours[i, visible[i]], oracle[i, visible[i]]
        scale = float(np.abs(r).max())
        assert scale > 0
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4 * scale, err_msg=f"target {i}")


@pytest.mark.parametrize("name", MODELS)
def test_oracle_embeddings_are_the_wrappers(request, name):
    """The wrapper's ``embed`` returns the model's ``inputs_embeds`` (BART: after ``embed_scale``)."""
    model, tok = request.getfixturevalue(name)
    wrapped = se.load_model(model, tok)
    ex = wrapped.encode(*INPUTS[name])
    oracle = RawOracle(model, ex)
    ours = wrapped.embed(ex)[0].detach()
    theirs = torch.cat([x[0] for x in oracle.inputs])
    torch.testing.assert_close(ours[: theirs.shape[0]], theirs, rtol=0, atol=0)
    scales = {float(getattr(m, "embed_scale", 1.0)) for m in model.modules() if hasattr(m, "embed_scale")}
    assert scales == ({32**0.5} if name == "bart_scaled" else {1.0} if name == "bart" else set())


@pytest.mark.parametrize("name", MODELS)
def test_gradient_norm_equals_captum_saliency_on_the_raw_model(request, name):
    from captum.attr import Saliency

    attr, ex, oracle = _explain(request, name, "gradient_norm")
    theirs = oracle.rows(Saliency, lambda g: g.norm(dim=-1), abs=False)  # raw gradients, then their L2 norm
    _assert_rows_close(ex, attr.scores, theirs)


@pytest.mark.parametrize("name", MODELS)
def test_grad_x_input_equals_captum_on_the_raw_model(request, name):
    from captum.attr import InputXGradient

    attr, ex, oracle = _explain(request, name, "grad_x_input")
    theirs = oracle.rows(InputXGradient, lambda a: a.sum(-1))
    _assert_rows_close(ex, attr.scores, theirs)


@pytest.mark.parametrize("name", MODELS)
def test_integrated_gradients_equals_captum_on_the_raw_model(request, name):
    from captum.attr import IntegratedGradients

    steps = 32
    attr, ex, oracle = _explain(request, name, "integrated_gradients", steps=steps, rule="gausslegendre",
                                baseline="zero")
    zeros = tuple(torch.zeros_like(x) for x in oracle.inputs)
    theirs = oracle.rows(IntegratedGradients, lambda a: a.sum(-1), baselines=zeros, n_steps=steps,
                         method="gausslegendre")
    _assert_rows_close(ex, attr.scores, theirs)
