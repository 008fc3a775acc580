"""A Hugging Face module of a kind seqexplain does not explain (masked LM, question answering, multiple choice, bare
encoder), or forced to a kind it is not (a token classifier as a causal LM or a sequence classifier), is refused
with a one-line :class:`UnsupportedError` instead of being explained as a causal LM (silently wrong) or failing
inside ``transformers`` (:mod:`seqexplain.models.kind_check`). Oracles: the same BERT body with a causal mask
(``is_decoder=True``) is accepted and without it refused; the forwards the checks add are counted with a forward
hook on the module."""

from __future__ import annotations

import pytest
import torch
from conftest import wordpiece_tokenizer
from test_cli import assert_user_error, invoke
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForTokenClassification,
    BertLMHeadModel,
    BertModel,
)

import seqexplain as se
from seqexplain.errors import UnsupportedError
from seqexplain.models.kind_check import ForwardFailed, check_causal, check_classifier

SUPPORTED = "seqexplain explains causal LMs, encoder-decoders, sequence classifiers and token classifiers"
#: per class, the fragment the refusal names under a forced causal / classifier / labeller kind (None: accepted)
WHAT = {BertForTokenClassification: ("scores per token, fewer than", "scores per token", None),
        BertForMaskedLM: ("reads in both directions", "scores per token", "scores per token but its config names 3"),
        BertForQuestionAnswering: ("start and end logits", "start and end logits", "start and end logits"),
        BertForMultipleChoice: ("multiple-choice", "multiple-choice", "multiple-choice"),
        BertModel: ("bare encoder", "bare encoder", "bare encoder")}
#: what load_model says each class is when no kind is given
DETECTED = {BertForMaskedLM: "a masked LM",
            BertForQuestionAnswering: "a question-answering model", BertForMultipleChoice: "a multiple-choice model",
            BertModel: "a bare model without a head"}


@pytest.fixture(scope="module")
def tok():
    return wordpiece_tokenizer()


def _config(tok, cls: type, **extra) -> BertConfig:
    # a question-answering head has two outputs (start, end), as every trained one does
    return BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64,
                      num_labels=2 if cls is BertForQuestionAnswering else 3, **extra)


def _model(tok, cls: type, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls(_config(tok, cls, **extra)).eval()


@pytest.mark.parametrize("kind", ["causal", "classifier", "labeller", "seq2seq"])
@pytest.mark.parametrize("cls", list(WHAT), ids=lambda c: c.__name__)
def test_forced_kind_is_refused(tok, cls, kind):
    expected = "not an encoder-decoder" if kind == "seq2seq" else WHAT[cls][("causal", "classifier",
                                                                             "labeller").index(kind)]
    if expected is None:
        assert se.load_model(_model(tok, cls), tok, kind=kind).kind == kind
        return
    with pytest.raises(UnsupportedError) as err:
        se.load_model(_model(tok, cls), tok, kind=kind)
    msg = str(err.value)
    assert cls.__name__ in msg and expected in msg and SUPPORTED in msg, msg
    assert "AutoModelForCausalLM" in msg and "\n" not in msg


@pytest.mark.parametrize("cls", list(DETECTED), ids=lambda c: c.__name__)
def test_undetected_kind_says_what_is_unsupported(tok, cls):
    with pytest.raises(UnsupportedError, match=DETECTED[cls]) as err:
        se.load_model(_model(tok, cls), tok)
    assert "not masked LMs, question-answering models or bare encoders" in str(err.value)


@pytest.mark.parametrize("kind", ["causal", "classifier"])
def test_head_whose_forward_fails_is_refused_by_its_class(tok, kind):
    """A question-answering head with three outputs fails its own forward (it splits the logits into start and end):
    the behaviour check cannot run, so its class decides, in one line, instead of transformers' traceback when
    the method runs."""
    torch.manual_seed(0)
    model = BertForQuestionAnswering(_config(tok, BertForMaskedLM)).eval()  # num_labels=3
    with pytest.raises(ValueError):
        model(input_ids=torch.tensor([[5, 6, 7]]))
    with pytest.raises(UnsupportedError, match="a question-answering model \\(by its class\\)") as err:
        se.load_model(model, tok, kind=kind)
    assert "\n" not in str(err.value) and SUPPORTED in str(err.value)


def test_unknown_module_still_suggests_kind(tok):
    with pytest.raises(se.errors.InputError, match="pass kind=.*not masked LMs|not masked LMs.*pass kind="):
        se.load_model(torch.nn.Linear(2, 2), tok)


def test_causal_mask_decides(tok):
    """The same BERT body with an LM head: causal with ``is_decoder=True`` (explained), bidirectional without."""
    causal = se.load_model(_model(tok, BertLMHeadModel, is_decoder=True), tok, kind="causal")
    attr = se.explain(causal, "the cat sat", target=" on the", method="gradient_norm")
    assert attr.scores.shape[0] == len(attr.target_tokens)
    with pytest.raises(UnsupportedError, match="reads in both directions"):
        se.load_model(_model(tok, BertLMHeadModel, is_decoder=False), tok, kind="causal")


def test_causal_token_classifier_and_cross_kinds(bpe, gpt2, bart, t5):
    """A causal stack with a token-classification head is causal but gives label scores per token; a causal LM
    forced to a classifier and an encoder-decoder forced to a causal LM are refused too."""
    from transformers import GPT2Config, GPT2ForTokenClassification

    torch.manual_seed(0)
    tagger = GPT2ForTokenClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(bpe),
                                                   n_positions=64, num_labels=3)).eval()
    with pytest.raises(UnsupportedError, match="gives 3 scores per token, fewer than"):
        se.load_model(tagger, bpe, kind="causal")
    with pytest.raises(UnsupportedError, match="scores per token"):
        se.load_model(*gpt2, kind="classifier")
    for pair in (bart, t5):  # T5's forward fails without decoder inputs: its config decides, not a probe
        with pytest.raises(UnsupportedError, match="is an encoder-decoder .*kind='seq2seq'"):
            se.load_model(*pair, kind="causal")


def _count_forwards(model: torch.nn.Module, make) -> int:
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        make()
    finally:
        handle.remove()
    return len(calls)


def test_probes_add_few_forwards(gpt2, bert, bart):
    """Making an adapter runs the module twice for a causal LM (the kind check), three times for a BERT
    classifier (one kind check, two for the padding probe that was there before) and not at all for an
    encoder-decoder (checked by structure)."""
    for (model, tokenizer), kind, most in ((gpt2, "causal", 2), (bert, "classifier", 3), (bart, "seq2seq", 0)):
        n = _count_forwards(model, lambda m=model, t=tokenizer, k=kind: se.load_model(m, t, kind=k))
        assert n <= most, (kind, n)
    n = _count_forwards(gpt2[0], lambda: se.load_model(*gpt2, kind="causal"))
    assert n == 2  # the check does run (a check that never ran would pass the bound above)


def test_failing_probe_forward_cannot_tell():
    """A forward that fails on the probe's ids (some models need particular ids) does not refuse: the checks say
    they cannot tell (``check_kind`` then skips them unless the class names an unexplained head, above)."""
    def fails(kwargs):
        raise ValueError("this model needs other ids\nsecond line")

    module = torch.nn.Linear(1, 1)
    with pytest.raises(ForwardFailed, match="^ValueError: this model needs other ids$"):
        check_causal(module, fails, [1, 2, 3, 4], 5, torch.device("cpu"), "M")
    with pytest.raises(ForwardFailed):
        check_classifier(module, fails, [1, 2, 3, 4], torch.device("cpu"), "M")


def test_saved_folders(tok, bpe, tmp_path):
    """A saved masked LM is refused from its class, and forced to causal (its weights load into BertLMHeadModel with
    nothing missing) by behaviour; a saved bare GPT-2 body still loads as the causal LM its tied head makes."""
    from transformers import GPT2Config, GPT2Model

    mlm = tmp_path / "mlm"
    _model(tok, BertForMaskedLM).save_pretrained(mlm)
    tok.save_pretrained(mlm)
    with pytest.raises(UnsupportedError, match="BertForMaskedLM model, a masked LM"):
        se.load_model(mlm)
    with pytest.raises(UnsupportedError, match="reads in both directions"):
        se.load_model(mlm, kind="causal")
    body = tmp_path / "gpt2-body"
    torch.manual_seed(0)
    GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(bpe), n_positions=64)).save_pretrained(body)
    bpe.save_pretrained(body)
    model = se.load_model(body)
    assert model.kind == "causal"
    assert se.explain(model, "the cat", target=" sat", method="gradient_norm").scores.shape[0] >= 1


def test_cli_refuses_a_saved_token_classifier_forced_to_another_kind(tok, tmp_path, runner):
    folder = tmp_path / "tagger"
    _model(tok, BertForTokenClassification).save_pretrained(folder)
    tok.save_pretrained(folder)
    result = invoke(runner, "explain", "--model", folder, "--kind", "classifier", "--text", "the cat sat", "--method",
                    "gradient_norm")
    err = assert_user_error(result, "holds a BertForTokenClassification model", "without values", "drop --kind")
    assert len(err.strip().splitlines()) == 1, err
    # forced to causal with a new head allowed, the bidirectional module is refused by behaviour
    result = invoke(runner, "explain", "--model", folder, "--kind", "causal", "--allow-new-head", "--text",
                    "the cat sat", "--method", "gradient_norm")
    err = assert_user_error(result, "reads in both directions", SUPPORTED)
    assert len(err.strip().splitlines()) == 1, err


def test_saved_bare_encoder_folder_is_refused_as_one(tok, tmp_path, runner):
    """A saved ``BertModel`` folder loads as a causal LM by default (a saved GPT-2 body does, with its tied head);
    a BERT body leaves its LM head without values, and the refusal told the user to "drop --kind", which they had
    not given. It says the folder holds a bare model, and what seqexplain explains."""
    from test_cli import invoke

    from seqexplain.errors import ModelLoadError

    _model(tok, BertModel).save_pretrained(tmp_path / "bare")
    tok.save_pretrained(tmp_path / "bare")
    with pytest.raises(ModelLoadError) as err:
        se.load_model(str(tmp_path / "bare"))
    msg = str(err.value)
    assert "holds a BertModel model, a bare model without a head" in msg and SUPPORTED in msg, msg
    assert "--kind" not in msg and "\n" not in msg
    result = invoke(runner, "explain", "-m", tmp_path / "bare", "-t", "a fine film")
    assert result.exit_code == 2 and "a bare model without a head" in result.output, result.output
    with pytest.raises(ModelLoadError, match="drop --kind / kind= to use the detected kind"):
        se.load_model(str(tmp_path / "bare"), kind="causal")  # forced: the advice names the forcing
