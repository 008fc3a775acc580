"""The position ids adapters pass are the model's own: the RoBERTa family (RoBERTa, XLM-R, Longformer, CamemBERT)
numbers positions from ``padding_idx + 1``, and position ids counted from 0 explained another model (the adapters
pass ``index + offset``, the offset found by running the model without and with position ids). Oracles: the raw
module on token ids without position ids (deleted tokens: with its own ids of the kept positions), and a plain
argmax loop."""

from __future__ import annotations

import numpy as np
import torch

import seqexplain as se

TEXT = "The quick brown fox jumps over the lazy dog."


def _roberta(bpe, cls_name: str, **extra):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.RobertaConfig(vocab_size=len(bpe), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=130, pad_token_id=bpe.pad_token_id,
                                     **extra)
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # trained-size position embeddings, so that an offset matters
        model.roberta.embeddings.position_embeddings.weight.normal_(0.0, 1.0)
    return model


def test_roberta_classifier_rows_are_the_model_itself(bpe):
    model = _roberta(bpe, "RobertaForSequenceClassification", num_labels=2)
    w = se.load_model(model, bpe)
    assert w.position_offset() == bpe.pad_token_id + 1
    ex = w.encode(TEXT)
    keep = torch.ones(3, ex.length, dtype=torch.bool)
    keep[1, [2, 3, 5]] = False
    keep[2, 0] = False
    with torch.no_grad():
        got = w.logits(ex, keep)[:, 0]
        for r in range(3):
            kept = torch.nonzero(keep[r]).flatten()
            expected = model(input_ids=ex.input_ids[None, kept], attention_mask=torch.ones(1, len(kept)).long(),
                             position_ids=(kept + bpe.pad_token_id + 1)[None]).logits[0]  # (no mask: "packed")
            torch.testing.assert_close(got[r], expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[0], model(input_ids=ex.input_ids[None]).logits[0], rtol=1e-5, atol=1e-6)


def test_roberta_causal_lm_scores_and_decoding(bpe):
    model = _roberta(bpe, "RobertaForCausalLM", is_decoder=True)
    w = se.load_model(model, bpe)
    ex = w.encode("The quick brown fox", " jumps over")
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ex.input_ids[None]).logits[0], -1)
    reads = [p - 1 for p in ex.target_positions]
    expected = logp[reads].gather(1, ex.target_ids.view(-1, 1)).squeeze(1)
    with torch.no_grad():
        np.testing.assert_allclose(w.score(ex)[0].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    prompts = ["The quick brown fox", "Paris is the capital of France and"]
    decoded = w.encode_many([(p, None) for p in prompts], max_new_tokens=4)  # several prompts: the cached path
    for prompt, got in zip(prompts, decoded, strict=True):
        ids, new = torch.tensor(bpe(prompt)["input_ids"]), []
        for _ in range(4):
            with torch.no_grad():
                nxt = int(model(input_ids=ids[None]).logits[0, -1].argmax())
            if nxt == bpe.eos_token_id and new:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([nxt])])
            if nxt == bpe.eos_token_id:
                break
        assert got.target_ids.tolist() == new
