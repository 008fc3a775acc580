"""Edges of how a prompt, a decoded target and a foil are read, each of which gave a result that did not say what
was explained: a foil without the leading space of a word-initial target, a tokenizer that appends ``</s>`` to a
causal LM's prompt, a truncated prompt's false "tokenise differently" warning, ``forced_eos_token_id`` under
decoding, and an exhaustive search whose start set is already the whole context."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer
from tokenizers import processors

import seqexplain as se


def test_a_foil_without_the_targets_leading_space_warns(gpt2):
    model, tok = gpt2
    a = se.explain(se.load_model(model, tok), "The cat sat on the mat and it", " is", "gradient_norm",
                   objective="contrast", foil="an")
    assert a.foil_tokens == ["an"]
    assert any("foil 'an' has no leading space" in w and "give ' an'" in w for w in a.warnings), a.warnings
    spaced = se.explain(se.load_model(model, tok), "The cat sat on the mat and it", " is", "gradient_norm",
                        objective="contrast", foil=" an")
    assert spaced.foil_tokens == ["Ġan"] and not any("foil" in w for w in spaced.warnings), spaced.warnings


def test_a_prompt_is_read_without_the_end_of_sequence_its_tokenizer_appends(gpt2):
    model, _ = gpt2
    tok = bpe_tokenizer()  # its own copy: the template below must not reach the shared fixture
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.bos_token_id), ("</s>", tok.eos_token_id)])
    wrapped = se.load_model(model, tok)
    given = se.explain(wrapped, "The cat sat on the", " mat", "gradient_norm")
    assert "</s>" not in given.tokens and given.tokens[0] == "<s>"
    assert given.target_positions == [len(given.tokens) - 2, len(given.tokens) - 1]
    assert any("puts </s> after a text" in w for w in given.warnings), given.warnings
    assert not any("tokenise differently" in w for w in given.warnings), given.warnings
    decoded = se.explain(wrapped, "The cat sat on the", None, "gradient_norm", max_new_tokens=2)
    prompt_ids = tok("The cat sat on the")["input_ids"][:-1]  # the template's ids without the appended </s>
    assert decoded.tokens[: len(prompt_ids)] == tok.convert_ids_to_tokens(prompt_ids)
    with torch.no_grad():  # the decoded target continues the prompt's last word, not a text after </s>
        first = int(model(input_ids=torch.tensor([prompt_ids])).logits[0, -1].argmax())
    assert decoded.target_tokens[0] == tok.convert_ids_to_tokens([first])[0]


def test_a_truncated_prompt_does_not_warn_that_prompt_and_target_tokenise_differently(gpt2):
    model, tok = gpt2
    text, target = "The cat sat on the mat. " * 30 + "The cat sat on the", " mat"
    joined_ids = tok(text)["input_ids"] + tok(target, add_special_tokens=False)["input_ids"]
    assert tok(text + target)["input_ids"] == joined_ids
    a = se.explain(se.load_model(model, tok), text, target, "gradient_norm", truncate=True)
    assert any("truncated" in w for w in a.warnings)
    assert not any("tokenise differently" in w for w in a.warnings), a.warnings
    joined = se.explain(se.load_model(model, tok), "The cat sat on th", "e mat", "gradient_norm")
    assert any("tokenise differently" in w for w in joined.warnings)  # the warning itself still works


def test_forced_eos_under_decoding_is_named_when_the_target_fills_max_new_tokens(bart):
    model, tok = bart
    model = copy.deepcopy(model)
    torch.manual_seed(0)  # weights at a trained model's scale: the fixture's small ones predict </s> first
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features ** -0.5)
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    model.generation_config.forced_eos_token_id = tok.eos_token_id
    a = se.explain(se.load_model(model, tok), "Mary to", None, "gradient_norm", max_new_tokens=2)
    ids = torch.tensor([tok("Mary to")["input_ids"]])
    generated = model.generate(ids, max_new_tokens=2, do_sample=False)[0, 1:].tolist()
    assert generated[-1] == tok.eos_token_id != tok.convert_tokens_to_ids(a.target_tokens[-1])
    assert len(a.target_tokens) == 2
    assert any("forced_eos_token_id=" in w and "max_new_tokens=2" in w for w in a.warnings), a.warnings
    model.generation_config.forced_eos_token_id = None
    plain = se.explain(se.load_model(model, tok), "Mary to", None, "gradient_norm", max_new_tokens=2)
    assert plain.target_tokens == a.target_tokens and not any("forced_eos" in w for w in plain.warnings)


def test_exhaustive_whose_start_set_is_the_whole_context_reports_that_nothing_suffices(gpt2):
    """The start set (the previous token) is the only visible position and does not make the model predict the
    target: the search is exhausted, the rationale empty, as docs/methods.md states."""
    model, tok = gpt2
    text, target = " is", " brown"
    ids = tok(text)["input_ids"] + tok(target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert int(model(input_ids=torch.tensor([ids[:1]])).logits[0, -1].argmax()) != ids[1]
    a = se.explain(se.load_model(model, tok), text, target, "exhaustive", max_size=3)
    assert a.rationale.positions[0] == [] and not a.rationale.reached[0] and not a.rationale.bound_hit[0]
    assert a.rationale.log[0][-1]["exhausted"] is True
    assert any("target 0" in w and "not even the whole context" in w for w in a.warnings), a.warnings
    g = se.explain(se.load_model(model, tok), text, target, "greedy")
    assert g.rationale.positions[0] == [0] and not g.rationale.reached[0]
    assert any("target 0" in w and "not even the whole context (1 visible position)" in w for w in g.warnings)


@pytest.mark.parametrize("objective", ["contrast", "prob"])
def test_an_attention_method_says_it_does_not_explain_the_objective(gpt2, objective):
    """The result was labelled as explaining log p(target) − log p(foil), with the default's scores and no word."""
    model, tok = gpt2
    extra = {"foil": " dog"} if objective == "contrast" else {}
    a = se.explain(se.load_model(model, tok), "The cat sat on the", " mat", "attention_last", objective=objective,
                   **extra)
    plain = se.explain(se.load_model(model, tok), "The cat sat on the", " mat", "attention_last")
    np.testing.assert_array_equal(a.scores, plain.scores)
    assert any("attention weights do not depend on the objective" in w for w in a.warnings), a.warnings
    assert not any("objective" in w for w in plain.warnings)


@pytest.mark.parametrize("objective", ["contrast", "prob"])
def test_exhaustive_says_it_does_not_explain_the_objective(gpt2, objective):
    """exhaustive stops at the first subset whose argmax is the target: the objective never enters, and the result
    said nothing (greedy, which picks by the objective, does not warn)."""
    model, tok = gpt2
    wrapped = se.load_model(model, tok)
    extra = {"foil": " dog"} if objective == "contrast" else {}
    a = se.explain(wrapped, "The cat sat on the", " mat", "exhaustive", objective=objective, max_size=2, **extra)
    plain = se.explain(wrapped, "The cat sat on the", " mat", "exhaustive", max_size=2)
    np.testing.assert_array_equal(a.scores, plain.scores)
    assert a.rationale.positions == plain.rationale.positions
    assert any("exhaustive: the search stops at the first subset for which the model predicts the target" in w
               for w in a.warnings), a.warnings
    assert not any("objective" in w for w in plain.warnings)
    greedy = se.explain(wrapped, "The cat sat on the", " mat", "greedy", objective=objective, max_size=2, **extra)
    assert not any("the same for objective" in w for w in greedy.warnings), greedy.warnings
