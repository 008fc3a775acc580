"""seqexplain's own transformer LM: keep-mask semantics against hand-computed attention, 4-D masks, attentions,
save/load, and use through load_model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqexplain import load_model
from seqexplain.data.majority_class import MajorityClassVocab
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.transformer import TransformerLM, TransformerLMConfig, load_transformer_lm
from seqexplain.training.word_dropout import causal_attention_mask


def _model(norm: str = "pre", **kw: object) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerLMConfig(vocab_size=13, d_model=16, n_layers=2, n_heads=2, ffn_dim=32,
                                             max_position_embeddings=32, norm=norm, **kw)).eval()  # type: ignore[arg-type]


def _by_hand(m: TransformerLM, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Forward pass written out with plain tensor operations on the kept tokens only (no masks but causal)."""
    c = m.config
    h = m.embed_tokens.weight[ids] + m.embed_positions.weight[positions]
    n = ids.shape[0]
    dh = c.d_model // c.n_heads
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for layer in m.layers:
        x = F.layer_norm(h, (c.d_model,), layer.ln_attn.weight, layer.ln_attn.bias, c.layer_norm_eps) \
            if c.norm == "pre" else h
        q, k, v = (x @ layer.attn.qkv.weight.T + layer.attn.qkv.bias).split(c.d_model, dim=-1)
        heads = []
        for i in range(c.n_heads):
            sl = slice(i * dh, (i + 1) * dh)
            s = (q[:, sl] @ k[:, sl].T) / math.sqrt(dh)
            s = s.masked_fill(~causal, float("-inf"))
            heads.append(torch.softmax(s, -1) @ v[:, sl])
        a = torch.cat(heads, -1) @ layer.attn.out.weight.T + layer.attn.out.bias
        ffn = layer.ffn
        if c.norm == "pre":
            h = h + a
            y = F.layer_norm(h, (c.d_model,), layer.ln_ffn.weight, layer.ln_ffn.bias, c.layer_norm_eps)
            h = h + ffn[2](torch.relu(ffn[0](y)))
        else:
            h = F.layer_norm(h + a, (c.d_model,), layer.ln_attn.weight, layer.ln_attn.bias, c.layer_norm_eps)
            h = F.layer_norm(h + ffn[2](torch.relu(ffn[0](h))), (c.d_model,), layer.ln_ffn.weight,
                             layer.ln_ffn.bias, c.layer_norm_eps)
    if c.norm == "pre":
        h = m.final_norm(h)
    return h @ m.embed_tokens.weight.T


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_keep_mask_equals_deleting_tokens_by_hand(norm: str) -> None:
    m = _model(norm)
    torch.manual_seed(1)
    ids = torch.randint(0, 13, (10,))
    keep = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    with torch.no_grad():
        out = m(input_ids=ids[None], attention_mask=keep[None].long()).logits[0]
        full = m(input_ids=ids[None]).logits[0]
        kept = keep.nonzero().flatten()
        torch.testing.assert_close(out[kept], _by_hand(m, ids[kept], kept), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(full, _by_hand(m, ids, torch.arange(10)), atol=1e-5, rtol=1e-5)
        # a dropped position sees itself and the kept positions before it
        sub = torch.tensor([0, 2, 3, 4])
        torch.testing.assert_close(out[4], _by_hand(m, ids[sub], sub)[-1], atol=1e-5, rtol=1e-5)


def test_4d_masks_and_attentions() -> None:
    m = _model()
    ids = torch.randint(0, 13, (3, 8), generator=torch.Generator().manual_seed(2))
    keep = torch.rand(3, 8, generator=torch.Generator().manual_seed(3)) > 0.4
    with torch.no_grad():
        two_d = m(input_ids=ids, attention_mask=keep.long()).logits
        four_bool = m(input_ids=ids, attention_mask=causal_attention_mask(keep)).logits
        four_add = m(input_ids=ids, attention_mask=causal_attention_mask(keep, torch.float32)).logits
        plain = m(input_ids=ids).logits
        all_kept = m(input_ids=ids, attention_mask=causal_attention_mask(torch.ones(3, 8, dtype=torch.bool))).logits
        out = m(input_ids=ids, attention_mask=keep.long(), output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(two_d, four_bool)
    torch.testing.assert_close(two_d, four_add)
    torch.testing.assert_close(plain, all_kept)
    torch.testing.assert_close(out.logits, two_d, atol=1e-5, rtol=1e-5)  # eager path == SDPA path
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 8, 8)
    assert len(out.hidden_states) == 3
    w = out.attentions[0]
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 8))
    allowed = causal_attention_mask(keep)
    assert (w[~allowed.expand_as(w)] == 0).all()
    with pytest.raises(InputError):
        m(input_ids=ids, attention_mask=torch.ones(3, 8, 8))
    with pytest.raises(InputError):
        m(input_ids=ids, inputs_embeds=m.embed_tokens(ids))


def test_labels_logits_to_keep_and_embeds() -> None:
    m = _model()
    ids = torch.randint(0, 13, (2, 6), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = m(input_ids=ids, labels=ids)
        ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, 13), ids[:, 1:].reshape(-1))
        torch.testing.assert_close(out.loss, ref)
        assert out[0] is out.loss and out["logits"] is out.logits
        last = m(input_ids=ids, logits_to_keep=1).logits
        torch.testing.assert_close(last[:, 0], out.logits[:, -1])
        idx = m(input_ids=ids, logits_to_keep=torch.tensor([1, 4])).logits
        torch.testing.assert_close(idx, out.logits[:, [1, 4]])
        emb = m(inputs_embeds=m.get_input_embeddings()(ids)).logits
        torch.testing.assert_close(emb, out.logits)


def test_save_load_round_trip(tmp_path) -> None:
    m = _model("post", tie_embeddings=False, activation="gelu")
    m.save(tmp_path / "lm")
    back = load_transformer_lm(tmp_path / "lm")
    assert back.config == m.config
    ids = torch.randint(0, 13, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids).logits, m(input_ids=ids).logits, atol=0, rtol=0)
    tied = _model()
    tied.save(tmp_path / "tied")
    t2 = TransformerLM.load(tmp_path / "tied")
    assert t2.lm_head.weight is t2.embed_tokens.weight
    with pytest.raises(ModelLoadError):
        load_transformer_lm(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "other"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError):
        load_transformer_lm(tmp_path / "bad")


def test_through_load_model_score_and_attentions() -> None:
    vocab = MajorityClassVocab()
    torch.manual_seed(0)
    m = TransformerLM(TransformerLMConfig(vocab_size=len(vocab), d_model=16, n_layers=2, n_heads=2, ffn_dim=32,
                                          max_position_embeddings=32)).eval()
    wrapped = load_model(m, vocab)
    assert wrapped.kind == "causal" and wrapped.max_positions() == 32
    ex = wrapped.encode("0 1 1 0 1 =", "1")
    assert ex.tokens[0] == "<s>" and ex.target_positions == [7]
    keep = torch.ones(2, ex.length, dtype=torch.bool)
    keep[1, 2] = False
    with torch.no_grad():
        s = wrapped.score(ex, keep)
        ids = ex.input_ids
        kept = keep[1].nonzero().flatten()[:-1]  # drop position 2; the target itself is not input
        ref = torch.log_softmax(m(input_ids=ids[kept][None], position_ids=kept[None]).logits[0, -1], -1)
    torch.testing.assert_close(s[1, 0], ref[ex.target_ids[0]], atol=1e-5, rtol=1e-5)
    (view,) = wrapped.attention_view(ex)
    assert len(view.maps) == 2 and view.maps[0].shape == (ex.length, ex.length)
    assert view.rows == [p - 1 for p in ex.target_positions]
