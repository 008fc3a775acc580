"""Which adapter a saved Hugging Face model directory gets (``load_model``'s kind detection): the class the model
was saved as decides, before ``is_encoder_decoder`` (an encoder-decoder can be a sequence classifier)."""

from __future__ import annotations

import pytest
import torch

from seqexplain.models.loading import load_model

LABELS = {0: "neg", 1: "pos"}


def _bart_config(bpe):
    from transformers import BartConfig

    return BartConfig(vocab_size=len(bpe), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                      pad_token_id=bpe.pad_token_id, bos_token_id=bpe.bos_token_id, eos_token_id=bpe.eos_token_id,
                      decoder_start_token_id=bpe.eos_token_id, id2label=LABELS,
                      label2id={v: k for k, v in LABELS.items()})


def _saved(module, bpe, path):
    module.save_pretrained(path)
    bpe.save_pretrained(path)
    return path


def test_saved_bart_classifier_loads_as_its_classifier(bpe, tmp_path):
    """A BART sequence classifier is an encoder-decoder (``is_encoder_decoder`` in its config); it used to load as
    a translation model (its classification head dropped without a word)."""
    from transformers import BartForSequenceClassification

    torch.manual_seed(0)
    module = BartForSequenceClassification(_bart_config(bpe)).eval()
    wrapped = load_model(_saved(module, bpe, tmp_path))
    assert wrapped.kind == "classifier"
    assert type(wrapped.model).__name__ == "BartForSequenceClassification"
    assert wrapped.label_names() == ["neg", "pos"]
    ids = torch.tensor([bpe("The cat sat on the mat.")["input_ids"] + [bpe.eos_token_id]])
    with torch.no_grad():
        assert torch.allclose(wrapped.model(input_ids=ids).logits, module(input_ids=ids).logits, atol=1e-6)


@pytest.mark.parametrize(("cls", "kind"), [("BartForConditionalGeneration", "seq2seq"),
                                           ("GPT2ForSequenceClassification", "classifier"),
                                           ("GPT2LMHeadModel", "causal")])
def test_saved_models_keep_their_kind(bpe, tmp_path, cls, kind):
    import transformers

    torch.manual_seed(0)
    if cls.startswith("Bart"):
        config = _bart_config(bpe)
    else:
        config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(bpe), n_positions=32,
                                         pad_token_id=bpe.pad_token_id, id2label=LABELS,
                                         label2id={v: k for k, v in LABELS.items()})
    wrapped = load_model(_saved(getattr(transformers, cls)(config).eval(), bpe, tmp_path))
    assert (wrapped.kind, type(wrapped.model).__name__) == (kind, cls)
