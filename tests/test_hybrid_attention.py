"""Attention methods on hybrid models (attention layers plus recurrent or state-space layers: Jamba, Falcon-H1,
RecurrentGemma): the maps show only the attention layers' share of the mixing, so every attention result says so in
its warnings (and therefore in every view and the saved file); a plain transformer's results do not."""

from __future__ import annotations

import pytest
from conftest import bpe_tokenizer
from family_models import FAMILIES, SkipFamily

import seqexplain as se

PROMPT, TARGET = "The cat sat on the mat.", " The dog"


def _wrapped(name: str):
    tok = bpe_tokenizer()
    try:
        model = FAMILIES[name].build(tok)
    except SkipFamily as exc:
        pytest.skip(str(exc))
    return se.load_model(model, tok)


@pytest.mark.parametrize("name", ["jamba", "falcon_h1", "recurrent_gemma"])
@pytest.mark.parametrize("method", ["attention_last", "attention_rollout"])
def test_hybrid_attention_results_warn(name, method, tmp_path):
    attr = se.explain(_wrapped(name), PROMPT, TARGET, method=method)
    said = [w for w in attr.warnings if "recurrent or state-space layers" in w]
    assert len(said) == 1 and "gradient or perturbation method" in said[0]
    attr.save(tmp_path / "a.json")
    assert any("recurrent or state-space" in w for w in se.Attribution.load(tmp_path / "a.json").warnings)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_plain_transformers_do_not(name):
    attr = se.explain(_wrapped(name), PROMPT, TARGET, method="attention_last")
    assert not any("recurrent or state-space" in w for w in attr.warnings)


def test_other_methods_on_a_hybrid_do_not():
    attr = se.explain(_wrapped("jamba"), PROMPT, TARGET, method="gradient_norm")
    assert not any("recurrent or state-space" in w for w in attr.warnings)
