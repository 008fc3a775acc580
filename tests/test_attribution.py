"""The result type: persistence, word aggregation from offsets, normalisation, non-finite flags."""

from __future__ import annotations

import json

import numpy as np
import pytest

import seqexplain as se
from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import DataError, InputError, NonFiniteScoresError


def _attr() -> Attribution:
    text = "Hello wor ld"
    return Attribution(
        tokens=["<s>", "Hel", "lo", " wor", " l", "d", "!"],
        offsets=[None, (0, 3), (3, 5), (5, 9), (9, 11), (11, 12), (0, 1)],
        segments=["special", "source", "source", "source", "source", "source", "target"],
        scores=np.array([[0.5, 1.0, -2.0, 3.0, np.nan, 4.0, np.nan]]),
        target_tokens=["!"],
        target_positions=[6],
        text=text,
        target_text="!",
        method="m",
        rationale=Rationale(positions=[[5, 1, 2]], reached=[True]),
    )


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_save_load_round_trip(tmp_path, suffix):
    a = _attr()
    path = a.save(tmp_path / f"a{suffix}")
    b = Attribution.load(path)
    np.testing.assert_array_equal(np.isnan(a.scores), np.isnan(b.scores))
    np.testing.assert_allclose(np.nan_to_num(a.scores), np.nan_to_num(b.scores))
    assert b.tokens == a.tokens and b.offsets == a.offsets and b.rationale == a.rationale
    assert b.segments == a.segments and b.text == a.text


def test_json_is_plain_json_and_never_pickled(tmp_path):
    path = _attr().save(tmp_path / "a.json")
    data = json.loads(path.read_text())
    assert data["format"] == "seqexplain.attribution" and data["scores"][0][4] is None


def test_load_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a readable"):
        Attribution.load(bad)
    with pytest.raises(DataError, match="does not exist"):
        Attribution.load(tmp_path / "missing.json")
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    with pytest.raises(DataError, match="not a seqexplain attribution"):
        Attribution.load(other)


def test_word_groups_from_offsets():
    a = _attr()
    # "Hello" = Hel+lo; "wor" alone; "ld" = l+d; specials and other segments stay separate
    assert a.word_groups() == [[0], [1, 2], [3], [4, 5], [6]]


@pytest.mark.parametrize("how,expected", [("sum", [0.5, -1.0, 3.0, 4.0]), ("mean", [0.5, -0.5, 3.0, 4.0]),
                                          ("max", [0.5, 1.0, 3.0, 4.0]), ("absmax", [0.5, -2.0, 3.0, 4.0])])
def test_aggregate(how, expected):
    w = _attr().aggregate(how)
    assert w.tokens == ["<s>", "Hello", "wor", "ld", "!"]
    np.testing.assert_allclose(w.scores[0, :4], expected)
    assert np.isnan(w.scores[0, 4])
    assert w.target_positions == [4]
    assert w.rationale is not None and w.rationale.positions == [[3, 1]]


def test_aggregate_unknown():
    with pytest.raises(InputError, match="unknown aggregation"):
        _attr().aggregate("median")  # type: ignore[arg-type]


@pytest.mark.parametrize("fixture", ["gpt2", "bert", "bart"])
def test_aggregation_with_real_tokenizers(request, fixture):
    """Words are rebuilt from the tokenizer's offsets, whatever its subword markers (Ġ, ##, ▁)."""
    model, tok = request.getfixturevalue(fixture)
    text = "The quickest brownish foxes jumped."
    target = {"gpt2": " over", "bart": "The dog", "bert": None}[fixture]
    attr = se.explain(model, text, target, method="grad_x_input", tokenizer=tok)
    words = attr.aggregate("sum")
    source_words = [t for t, s in zip(words.tokens, words.segments, strict=True) if s == "source"]
    assert source_words == ["The", "quickest", "brownish", "foxes", "jumped."]
    # sums are preserved per target over visible cells
    np.testing.assert_allclose(np.nansum(words.scores, 1), np.nansum(attr.scores, 1), rtol=1e-9)


def test_normalized():
    a = _attr()
    n = a.normalized("row_max_abs")
    assert np.nanmax(np.abs(n)) == pytest.approx(1.0)
    s = a.normalized("row_sum_abs")
    assert np.nansum(np.abs(s)) == pytest.approx(1.0)
    np.testing.assert_array_equal(np.isnan(a.normalized("none")), np.isnan(a.scores))
    with pytest.raises(InputError):
        a.normalized("softmax")  # type: ignore[arg-type]


def test_nonfinite_flags():
    a = _attr()
    assert a.nonfinite_cells() == []
    a.scores[0, 1] = np.inf
    a.meta["nonfinite_cells"] = [[0, 4]]
    assert a.nonfinite_cells() == [(0, 1), (0, 4)]
    with pytest.raises(NonFiniteScoresError, match="non-finite"):
        a.check_finite()


def test_shape_mismatch():
    with pytest.raises(InputError, match="does not match"):
        Attribution(tokens=["a"], scores=np.zeros((1, 2)), target_tokens=["b"], target_positions=[None])
    with pytest.raises(InputError, match="2 target positions for 1 targets"):  # it blamed the scores' shape
        Attribution(tokens=["a"], scores=np.zeros((1, 1)), target_tokens=["b"], target_positions=[None, None])


def test_top_k():
    assert _attr().top_k(0, 2) == [5, 3]
