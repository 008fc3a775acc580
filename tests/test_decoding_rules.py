"""Decoded targets follow the token rules of the model's generation config, as ``model.generate`` does with greedy
search (``num_beams=1``, no sampling): a forced first token (mBART-50's and NLLB's target language), suppressed
tokens and one-token bad words (Marian's pad). Settings greedy decoding does not apply (beams, penalties, minimum
lengths) leave a warning on every decoded target, naming them.

Oracle: ``model.generate`` on the raw module, greedy, with the same generation config."""

from __future__ import annotations

import copy

import pytest
import torch

import seqexplain as se
from seqexplain.models.greedy import DecodingRules

N_NEW = 4


def _generated(model, tok, text: str, seq2seq: bool) -> list[int]:
    x = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**x, max_new_tokens=N_NEW, do_sample=False, num_beams=1,
                             pad_token_id=tok.pad_token_id)[0].tolist()
    new = out[1:] if seq2seq else out[x["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    cut = next((i for i, t in enumerate(new) if t == eos and i > 0), len(new))  # a later end-of-sequence ends it
    return new[:cut]


def _fresh(pair):
    model, tok = pair
    model = copy.deepcopy(model)
    model.generation_config.forced_eos_token_id = None  # generate's forced last token: not a greedy-search rule
    return model, tok


@pytest.mark.parametrize("name,text", [("gpt2", "The cat sat on the"), ("bart", "The quick brown fox jumps.")])
@pytest.mark.parametrize("rule", ["suppress_tokens", "bad_words_ids", "forced_bos_token_id"])
def test_decoded_targets_follow_the_generation_config(request, name, text, rule):
    """Each rule bans (or forces) what greedy search chose first, so the target must change, as generate's does;
    except a forced first token on a decoder-only model, which generate ignores too. The tiny BART ends at once,
    so its end-of-sequence is suppressed throughout (bad words never ban it, as in generate)."""
    model, tok = _fresh(request.getfixturevalue(name))
    seq2seq = name == "bart"
    base = [model.generation_config.eos_token_id] if seq2seq else []
    model.generation_config.suppress_tokens = base or None
    free = se.load_model(model, tok).encode(text, None, max_new_tokens=N_NEW).target_ids.tolist()
    assert free == _generated(model, tok, text, seq2seq) and len(free) == N_NEW  # greedy search
    if rule == "forced_bos_token_id":
        value: object = (free[0] + 5) % len(tok)
    else:
        value = [*base, free[0]] if rule == "suppress_tokens" else [[free[0]], [base[0] if base else free[0]]]
    setattr(model.generation_config, rule, value)
    got = se.load_model(model, tok).encode(text, None, max_new_tokens=N_NEW)
    assert got.target_ids.tolist() == _generated(model, tok, text, seq2seq)
    assert (got.target_ids.tolist() == free) == (rule == "forced_bos_token_id" and not seq2seq)
    assert not any("generation config" in w for w in got.warnings)  # applied, nothing to warn about


def test_settings_greedy_decoding_does_not_apply_are_named(gpt2):
    model, tok = _fresh(gpt2)
    model.generation_config.num_beams = 4
    model.generation_config.repetition_penalty = 1.3
    w = se.load_model(model, tok)
    decoded = se.explain(w, "The cat sat on the", method="gradient_norm", max_new_tokens=3)
    assert any("num_beams=4" in m and "repetition_penalty=1.3" in m and "give the target" in m
               for m in decoded.warnings)
    given = se.explain(w, "The cat sat on the", " mat", method="gradient_norm")
    assert not any("generation config" in m for m in given.warnings)  # a given target is the user's own


def test_rules_mask_only_inside_the_vocabulary():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0])
    rules = DecodingRules(forced_first=2, banned=(1, 99), banned_first=(3,))
    assert int(rules.masked(logits, first=True).argmax()) == 2
    later = rules.masked(logits, first=False)
    assert torch.isinf(later[1]) and int(later.argmax()) == 3  # 99 is ignored, 3 only banned first
    assert int(DecodingRules(banned_first=(1,)).masked(logits, first=True).argmax()) == 3
    assert torch.equal(DecodingRules().masked(logits, first=True), logits)
