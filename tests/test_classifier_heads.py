"""Classifier heads that read a position of the padded batch itself (XLNet's ``sequence_summary``, summary type
"last"): the adapter reads the last token, and rows of different lengths never share a right-padded forward (the
head would read padding). Oracles: the raw module on one input alone, and autograd on its input embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.models.example import Part

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Paris is nice", "The cat sat on the mat."]


@pytest.fixture(scope="module")
def xlnet(bpe):
    from transformers import XLNetConfig, XLNetForSequenceClassification

    torch.manual_seed(0)
    cfg = XLNetConfig(vocab_size=len(bpe), d_model=32, n_layer=2, n_head=2, d_inner=64, num_labels=2,
                      pad_token_id=bpe.pad_token_id)
    return XLNetForSequenceClassification(cfg).eval(), bpe


def _alone(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids[None]).logits[0]


def test_xlnet_reads_its_last_token_and_never_pads(xlnet):
    model, tok = xlnet
    w = se.load_model(model, tok)
    assert w.head_position == "last" and not w.can_pad()
    exs = [w.encode(t) for t in TEXTS]
    with torch.no_grad():
        shared = w.logits_parts([Part(ex) for ex in exs])
    for ex, got in zip(exs, shared, strict=True):
        torch.testing.assert_close(got[0, 0], _alone(model, ex.input_ids), rtol=1e-5, atol=1e-6)
    # rows of one example with different numbers of kept tokens: each as the module on the kept tokens alone
    keep = torch.ones(3, exs[0].length, dtype=torch.bool)
    keep[0, [1, 2, 3]] = False
    keep[1, -1] = False  # the head's token dropped: the last kept one is read
    with torch.no_grad():
        rows = w.logits(exs[0], keep)[:, 0]
    for r in range(3):
        torch.testing.assert_close(rows[r], _alone(model, exs[0].input_ids[keep[r]]), rtol=1e-5, atol=1e-6)


def test_xlnet_explain_many_gradient_norm_equals_autograd(xlnet):
    model, tok = xlnet
    w = se.load_model(model, tok)
    got = list(se.explain_many(w, TEXTS, "gradient_norm", progress=False))
    for text, attr in zip(TEXTS, got, strict=True):
        ids = torch.tensor(tok(text)["input_ids"])
        x = model.get_input_embeddings()(ids[None]).detach().requires_grad_(True)
        logp = torch.log_softmax(model(inputs_embeds=x).logits[0], -1)
        label = int(logp.argmax())
        (grad,) = torch.autograd.grad(logp[label], x)
        assert attr.target_tokens == [w.label_names()[label]]
        np.testing.assert_allclose(attr.scores[0], grad[0].norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def bart_classifier():
    """A BART sequence classifier (as facebook/bart-large-mnli) with a tokenizer that wraps inputs in <s> … </s>:
    its head reads the decoder at the last </s> it finds in input_ids; its forward takes no position ids."""
    from conftest import bpe_tokenizer
    from tokenizers import processors
    from transformers import BartConfig, BartForSequenceClassification

    tok = bpe_tokenizer()
    bos, eos = tok.bos_token_id, tok.eos_token_id
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                                 special_tokens=[("<s>", bos), ("</s>", eos)])
    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                     pad_token_id=tok.pad_token_id, bos_token_id=bos, eos_token_id=eos, decoder_start_token_id=eos,
                     id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    return BartForSequenceClassification(cfg).eval(), tok


def test_bart_classifier_rows_labels_and_refusals(bart_classifier):
    """Rows that keep the </s> equal the module on the kept tokens; labels of inputs of different lengths predicted
    together equal each input alone; what cannot run (input vectors, dropping the </s>) says so instead of raising
    the module's NotImplementedError / ValueError."""
    from seqexplain.errors import UnsupportedError

    model, tok = bart_classifier
    w = se.load_model(model, tok)
    assert w.head_position == "last"
    exs = w.encode_many([(t, None) for t in TEXTS])
    for ex in exs:
        assert ex.target_ids.item() == int(_alone(model, ex.input_ids).argmax())
        assert any("takes no position_ids" in m for m in ex.keep_warnings)
    ex = exs[0]
    keep = torch.ones(3, ex.length, dtype=torch.bool)
    keep[0, [2, 3]] = False
    keep[1, 1:-1] = False
    with torch.no_grad():
        rows = w.logits(ex, keep)[:, 0]
    for r in range(3):
        torch.testing.assert_close(rows[r], _alone(model, ex.input_ids[keep[r]]), rtol=1e-5, atol=1e-6)
    with pytest.raises(UnsupportedError, match="takes no input vectors"):
        se.explain_example(w, ex, "gradient_norm")
    with pytest.raises(UnsupportedError, match="cannot drop it"):
        se.explain_example(w, ex, "occlusion")
    assert se.explain_example(w, ex, "greedy").rationale is not None
