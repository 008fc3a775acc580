"""Label names that are digits ("1", "2", "3" stars at indices 0, 1, 2): the int 1 is index 1 (label "2") while
the string "1" (what the CLI passes) names index 0. Both readings were silent; the one taken is kept and the result
warns which it is and how to give the other. Oracle: the raw module's log-softmax at the index expected."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import wordpiece_tokenizer
from test_cli import invoke
from transformers import BertConfig, BertForSequenceClassification

import seqexplain as se
from seqexplain.models.labels import ambiguous_label


def _bert(names: list[str]) -> tuple[torch.nn.Module, object]:
    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=len(names),
                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    return BertForSequenceClassification(cfg).eval(), tok


def _raw_logp(model, tok, text: str) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(**tok(text, return_tensors="pt")).logits[0], -1)


@pytest.mark.parametrize(("target", "index", "fragment"), [
    (1, 1, "target label 1 is read as the index 1 ('2'), but the model also has a label named '1' (index 0)"),
    ("1", 0, "target label '1' is read as the label named '1' (index 0), not as the index 1 ('2')"),
    ("3", 2, None),  # no label has the index 3: one reading only
    (2, 2, "target label 2 is read as the index 2 ('3'), but the model also has a label named '2' (index 1)"),
])
def test_a_digit_label_says_which_reading_it_took(target, index, fragment):
    model, tok = _bert(["1", "2", "3"])
    attr = se.explain(se.load_model(model, tok), "a fine film", target, "occlusion")
    assert attr.target_logprobs[0] == pytest.approx(float(_raw_logp(model, tok, "a fine film")[index]), abs=1e-5)
    found = [w for w in attr.warnings if "is read as" in w]
    assert (found == []) if fragment is None else (len(found) == 1 and fragment in found[0]), attr.warnings


def test_a_numpy_integer_is_an_index_like_an_int():
    """np.int64(1) was read as the name "1" while 1 and tensor(1) were index 1."""
    import numpy as np

    from seqexplain.models.labels import label_index

    names = ["1", "2", "3"]
    assert label_index(names, np.int64(1)) == label_index(names, 1) == label_index(names, torch.tensor(1)) == 1
    assert "read as the index 1" in ambiguous_label(names, np.int64(1))


def test_labels_named_by_their_own_index_do_not_warn():
    assert ambiguous_label(["0", "1"], 1) is None and ambiguous_label(["0", "1"], "1") is None
    assert ambiguous_label(["negative", "positive"], "1") is None and ambiguous_label(["a", "b"], True) is None


def test_a_foil_label_warns_too():
    model, tok = _bert(["1", "2", "3"])
    attr = se.explain(se.load_model(model, tok), "a fine film", "3", "occlusion", objective="contrast", foil=1)
    logp = _raw_logp(model, tok, "a fine film")
    assert attr.target_logprobs[0] == pytest.approx(float(logp[2]), abs=1e-5)
    assert attr.target_tokens == ["3"] and attr.foil_tokens == ["2"]
    assert any(w.startswith("foil label 1 is read as the index 1 ('2')") for w in attr.warnings), attr.warnings


def test_the_cli_shows_and_saves_the_warning(runner, tmp_path):
    model, tok = _bert(["1", "2", "3"])
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    result = invoke(runner, "explain", "-m", tmp_path / "m", "-t", "a fine film", "--target", "1", "--method",
                    "occlusion", "--json", tmp_path / "a.json")
    assert result.exit_code == 0, result.output
    assert "is read as the label named '1' (index 0)" in " ".join(result.output.split())
    saved = json.loads((tmp_path / "a.json").read_text())
    assert any("is read as the label named '1'" in w for w in saved["warnings"]), saved["warnings"]


@pytest.mark.parametrize("label", ["01", "+1", " 1.0", "¹", "١"])
def test_a_string_is_an_index_only_when_written_as_one(label):
    """"01" was read as the index 1 with no warning (nor the two-readings one "1" gets), and a non-ASCII digit
    ("¹", for which ``str.isdigit`` is true and ``int`` fails) raised a ValueError: neither names a label or is
    an index written plainly, so both are unknown labels, naming the labels."""
    from seqexplain.errors import InputError
    from seqexplain.models.labels import label_index, label_readings

    names = ["1", "2", "3"]
    with pytest.raises(InputError, match=r"unknown label .*; the labels are: 1, 2, 3"):
        label_index(names, label)
    assert label_readings(names, label) is None and ambiguous_label(names, label) is None
    assert label_index(["a", "b"], " 1 ") == 1 and label_index(["x", "01"], "01") == 1  # a name wins


def test_a_token_labellers_digit_labels_say_which_reading_they_took():
    """A token classifier labelled "1", "2", "3": per-token labels given as ints are indices and as strings names,
    as for a sequence classifier, but nothing said so (a corpus run refuses such data; the API explained one
    reading silently). Each distinct two-way label is named once, for targets and foils. Oracle: the raw module's
    log-softmax at the index expected, per token."""
    from transformers import BertForTokenClassification

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    names = ["1", "2", "3"]
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=3,
                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = BertForTokenClassification(cfg).eval()
    wrapped = se.load_model(model, tok, kind="labeller")
    text = "a fine film"
    n = len(wrapped.encode(text).target_positions)
    attr = se.explain(wrapped, text, [1] * n, "gradient_norm")
    with torch.no_grad():
        raw = torch.log_softmax(model(**tok(text, return_tensors="pt")).logits[0], -1)
    assert attr.target_logprobs == pytest.approx([float(raw[p, 1]) for p in attr.target_positions], abs=1e-5)
    found = [w for w in attr.warnings if "is read as" in w]
    assert found == ["target label 1 is read as the index 1 ('2'), but the model also has a label named '1' "
                     "(index 0): give the name '1' as a string to explain that one"]
    assert not any("is read as" in w for w in se.explain(wrapped, text, ["3"] * n, "gradient_norm").warnings)
    contrast = se.explain(wrapped, text, ["3"] * n, "gradient_norm", objective="contrast", foil=["1"] * n)
    assert [w for w in contrast.warnings if "is read as" in w] == [
        "foil label '1' is read as the label named '1' (index 0), not as the index 1 ('2'): give the name '2' to "
        "explain that one"]
