"""User errors through the Python API only, and the working neighbours of the bad inputs.

The bad inputs the API and the command line share (empty text, unknown method, corrupt model files, ...) are one
table in ``tests/test_bad_input_*.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import seqexplain
from seqexplain.errors import (
    InputError,
    ModelLoadError,
    NonFiniteScoresError,
    SeqExplainError,
    UnknownMethodError,
    UnsupportedError,
)


@pytest.fixture(scope="module")
def causal(gpt2):
    model, tok = gpt2
    return seqexplain.load_model(model, tok)


@pytest.fixture(scope="module")
def classifier(bert):
    model, tok = bert
    return seqexplain.load_model(model, tok)


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_all_errors_are_seqexplain_errors():
    for cls in (InputError, ModelLoadError, NonFiniteScoresError, UnknownMethodError, UnsupportedError):
        assert issubclass(cls, SeqExplainError)


def test_truncate_cuts_a_text_longer_than_the_positions(causal):
    """The fix the too-long error suggests (tests/test_bad_input_explain.py) works."""
    text = "The cat sat on the mat. " * 60  # far more than the fixture's 128 positions
    attr = seqexplain.explain(causal, text, " dog", "occlusion", truncate=True)
    assert len(attr.tokens) <= 128
    assert attr.target_tokens and np.isfinite(attr.scores[attr.visible()]).all()


def test_label_names_are_case_insensitive(classifier):
    attr = seqexplain.explain(classifier, "a fine film", "Positive", "occlusion")
    assert attr.target_tokens == ["positive"]


def test_saved_directory_loads(gpt2_dir):
    wrapped = seqexplain.load_model(gpt2_dir)
    assert wrapped.kind == "causal"


def test_unknown_kind(gpt2):
    model, tok = gpt2
    with pytest.raises(InputError) as ei:
        seqexplain.load_model(model, tok, kind="regression")
    assert "causal" in message(ei)


def test_model_without_attentions_runs_score_and_gradient_methods(no_attention_lm):
    """The model whose attention methods fail (tests/test_bad_input_models.py) works with the other methods."""
    wrapped = no_attention_lm()
    for method in ("occlusion", "grad_x_input"):
        attr = seqexplain.explain(wrapped, "The cat sat on the", " mat", method)
        assert np.isfinite(attr.scores[attr.visible()]).all()


def test_nonfinite_scores_are_flagged_and_warned(no_attention_lm):
    wrapped = no_attention_lm(nan_when_dropped=True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        attr = seqexplain.explain(wrapped, "The cat sat on the", " mat", "occlusion")
    assert [0, 1] in attr.meta["nonfinite_cells"]
    assert (0, 1) in attr.nonfinite_cells()
    with pytest.raises(NonFiniteScoresError) as ei:
        attr.check_finite()
    assert "input 1" in message(ei)
    # the record survives a save/load round trip
    assert json.loads(json.dumps(attr.to_dict()))["meta"]["nonfinite_cells"] == attr.meta["nonfinite_cells"]
