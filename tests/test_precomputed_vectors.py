"""An example over precomputed input vectors (``Example.input_vectors``, the input layer's output per position)
gives what the same example over token ids gives, with every method that needs no token ids, on every Hugging Face
model kind: the token-id results are the ones the oracle tests check (captum, brute-force loops, direct attention
computations), and the vectors here are the input layer's output for those ids, so the two must agree.

Methods that replace a position by a *token* (occlusion with ``replace_with="unk"``, token baselines) cannot apply
and say so (``tests/test_bad_input_explain.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import seqexplain as se

INPUTS = {
    "gpt2": ("The cat sat on the mat.", " The dog sat"),
    "llama": ("Paris is the capital of", " France and"),
    "bart": ("The quick brown fox jumps.", "The dog sat on"),
    "bert": ("The quick brown fox jumps over the lazy dog.", "positive"),
}
METHODS = {
    "gradient_norm": {},
    "grad_x_input": {},
    "integrated_gradients": {"steps": 8},
    "occlusion": {},
    "attention_last": {},
    "attention_all": {},
    "attention_rollout": {},
    "greedy": {"max_size": 3},
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(INPUTS))
def test_vectors_equal_token_ids(request, name, method):
    w = se.load_model(*request.getfixturevalue(name))
    ex = w.encode(*INPUTS[name])
    vec = ex.replace(input_ids=None, input_vectors=w.embed(ex)[0].detach())
    by_ids = se.explain_example(w, ex, method, **METHODS[method])
    by_vectors = se.explain_example(w, vec, method, **METHODS[method])
    scale = float(np.nanmax(np.abs(by_ids.scores)))
    np.testing.assert_allclose(by_vectors.scores, by_ids.scores, rtol=1e-5, atol=1e-5 * scale)
    if by_ids.rationale is not None:
        assert by_vectors.rationale is not None
        assert by_vectors.rationale.positions == by_ids.rationale.positions
