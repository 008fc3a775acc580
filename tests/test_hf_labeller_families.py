"""Token classifiers of many Hugging Face families (tiny random models, ``family_models.py``'s builders with a
token-classification head): loaded as labellers; occlusion equals deleting the token by hand on the raw module (the
kept tokens with their original position ids, the model's own first position id added), or the result warns that
the family cannot keep positions; gradient norm equals autograd on the raw forward; ``explain_many`` equals one call
per item."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer, wordpiece_tokenizer
from family_models import _DEC, _ENC, SkipFamily, _make

import seqexplain as se

FAMILIES = {
    "bert": ("wordpiece", "BertConfig", "BertForTokenClassification", _ENC),
    "roberta": ("wordpiece", "RobertaConfig", "RobertaForTokenClassification", _ENC),
    "distilbert": ("wordpiece", "DistilBertConfig", "DistilBertForTokenClassification",
                   dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64, num_labels=2)),
    "albert": ("wordpiece", "AlbertConfig", "AlbertForTokenClassification", dict(embedding_size=16, **_ENC)),
    "electra": ("wordpiece", "ElectraConfig", "ElectraForTokenClassification", dict(embedding_size=16, **_ENC)),
    "deberta_v2": ("wordpiece", "DebertaV2Config", "DebertaV2ForTokenClassification", _ENC),
    "mpnet": ("wordpiece", "MPNetConfig", "MPNetForTokenClassification", _ENC),
    "convbert": ("wordpiece", "ConvBertConfig", "ConvBertForTokenClassification", dict(embedding_size=32, **_ENC)),
    "modernbert": ("wordpiece", "ModernBertConfig", "ModernBertForTokenClassification",
                   dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, local_attention=4, global_attn_every_n_layers=2, num_labels=2)),
    "xlnet": ("wordpiece", "XLNetConfig", "XLNetForTokenClassification",
              dict(d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=2)),
    "gpt2": ("bpe", "GPT2Config", "GPT2ForTokenClassification",
             dict(n_layer=2, n_embd=32, n_head=2, n_positions=64, num_labels=2)),
    "llama": ("bpe", "LlamaConfig", "LlamaForTokenClassification", dict(num_labels=2, **_DEC)),
}
ROBERTA_STYLE = ("roberta", "mpnet")
TEXTS = ["the cat sat on the mat", "paris is big", "john and mary went to the store"]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    name = request.param
    tok_name, config, cls, extra = FAMILIES[name]
    tok = wordpiece_tokenizer() if tok_name == "wordpiece" else bpe_tokenizer()
    try:
        model = _make(config, cls, **extra)(tok)
    except SkipFamily as exc:
        pytest.skip(str(exc))
    return name, model, tok


@torch.no_grad()
def _logp(model, ids: list[int], kept: list[int], first: int, positions: bool) -> torch.Tensor:
    x = torch.tensor([[ids[k] for k in kept]])
    kwargs = {"position_ids": torch.tensor([kept]) + first} if positions else {}
    return torch.log_softmax(model(input_ids=x, attention_mask=torch.ones_like(x), **kwargs).logits[0].double(), -1)


def test_a_token_classifier_family_is_explained_as_a_labeller(family):
    name, model, tok = family
    wrapped = se.load_model(model, tok)
    assert wrapped.kind == "labeller"
    ex = wrapped.encode(TEXTS[0])
    attr = se.explain_example(wrapped, ex, "occlusion")
    positions_warned = any("position" in w for w in attr.warnings)
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    first = model.base_model.embeddings.padding_idx + 1 if name in ROBERTA_STYLE else 0
    ids = ex.input_ids.tolist()
    n_l = len(ids)
    if not takes_positions or positions_warned:
        assert positions_warned, f"{name}: no position ids kept and no warning"
    else:
        full = _logp(model, ids, list(range(n_l)), first, True)
        for i, (p, y) in enumerate(zip(ex.target_positions, ex.target_ids.tolist(), strict=True)):
            for j in range(n_l):
                if not bool(ex.visibility[i, j]):
                    assert np.isnan(attr.scores[i, j])
                    continue
                kept = [k for k in range(n_l) if k != j or k == p]
                want = float(full[p, y] - _logp(model, ids, kept, first, True)[kept.index(p), y])
                assert attr.scores[i, j] == pytest.approx(want, abs=1e-4 * max(1.0, abs(want))), (name, i, j)
    # gradient norm against autograd on the raw forward
    grad = se.explain_example(wrapped, ex, "gradient_norm")
    emb = model.get_input_embeddings()(ex.input_ids.view(1, -1)).detach()
    for i, (p, y) in enumerate(zip(ex.target_positions, ex.target_ids.tolist(), strict=True)):
        e = emb.clone().requires_grad_(True)
        out = model(inputs_embeds=e, attention_mask=torch.ones(1, n_l, dtype=torch.long)).logits
        (g,) = torch.autograd.grad(torch.log_softmax(out[0, p], -1)[y], e)
        want = g[0].norm(dim=-1).double().numpy()
        seen = ex.visibility[i].numpy()
        np.testing.assert_allclose(grad.scores[i][seen], want[seen], rtol=1e-4, atol=1e-6 * float(want.max()))
    many = list(se.explain_many(wrapped, [(t, None) for t in TEXTS], "occlusion", progress=False))
    for text, m in zip(TEXTS, many, strict=True):
        np.testing.assert_allclose(m.scores, se.explain(wrapped, text, None, "occlusion").scores, rtol=1e-5,
                                   atol=1e-6)
