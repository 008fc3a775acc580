"""A target the vocabulary lacks is read as ``<unk>``: a word-level LM explained " zebra" as log p(<unk>) and the
console labelled the row "zebra", with no warning; a text foil was turned into <unk> silently while a list foil
was refused. Oracle: the raw module's log-softmax at the unknown token's id."""

from __future__ import annotations

import pytest
import torch

import seqexplain as se
from seqexplain.errors import InputError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig, Vocab, WordTokenizer

PROMPT = "the cat sat on the"


@pytest.fixture(scope="module")
def lm():
    vocab = Vocab.build(["the", "cat", "sat", "on", "the", "mat"])
    torch.manual_seed(0)
    net = RNNLanguageModel(RNNLMConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12)).eval()
    return net, vocab, se.load_model(net, WordTokenizer(vocab))


def test_an_unknown_target_word_is_explained_as_unk_with_a_warning(lm):
    net, vocab, wrapped = lm
    attr = se.explain(wrapped, PROMPT, " zebra", "occlusion")
    ids = torch.tensor([[vocab.bos_id, *(vocab.stoi[w] for w in PROMPT.split())]])
    with torch.no_grad():
        raw = torch.log_softmax(net(input_ids=ids).logits[0, -1], -1)
    assert attr.target_logprobs[0] == pytest.approx(float(raw[vocab.unk_id]), abs=1e-6)
    found = [w for w in attr.warnings if "not in the vocabulary" in w]
    assert len(found) == 1 and "' zebra': 1 of its 1 token(s)" in found[0] and "'<unk>'" in found[0], attr.warnings
    assert not [w for w in se.explain(wrapped, PROMPT, " mat", "occlusion").warnings if "vocabulary" in w]
    spelled = se.explain(wrapped, PROMPT, " <unk>", "occlusion")  # the unknown token asked for by name
    assert not [w for w in spelled.warnings if "vocabulary" in w]
    both = se.explain(wrapped, PROMPT, " <unk> zebra", "occlusion")  # spelling it once hid the other one
    assert any("1 of its 2 token(s) are not in the vocabulary" in w for w in both.warnings), both.warnings


def test_an_unknown_text_foil_is_refused_like_a_list_foil(lm):
    wrapped = lm[2]
    with pytest.raises(InputError, match="the foil 'zebra' is not in the vocabulary"):
        se.explain(wrapped, PROMPT, " mat", "occlusion", objective="contrast", foil="zebra")
    with pytest.raises(InputError, match="not one token"):
        se.explain(wrapped, PROMPT, " mat", "occlusion", objective="contrast", foil=["zebra"])
    attr = se.explain(wrapped, PROMPT, " mat", "occlusion", objective="contrast", foil="cat")
    assert attr.foil_tokens == ["cat"]


def test_the_console_decoder_reads_a_word_vocabularys_tokens(lm):
    """``convert_tokens_to_ids`` of a word vocabulary takes a list (a string was read as its characters), so the
    CLI's console view of a foil or label crashed for word-level LMs."""
    from seqexplain.models.tokenization import token_decoder

    decode = token_decoder(WordTokenizer(lm[1]))
    assert decode is not None and decode("cat") == "cat" and decode("<unk>") == "<unk>"
