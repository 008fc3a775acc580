"""AttributionTrace: extra named axes, select / mean down to a plain Attribution, safetensors and JSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import DataError, InputError
from seqexplain.trace import AttributionTrace

NAN = float("nan")


def _base() -> Attribution:
    return Attribution(
        tokens=["<s>", "a", "b"],
        scores=np.zeros((2, 3)),
        target_tokens=["b", "c"],
        target_positions=[2, None],
        method="attention_last",
        warnings=["heads were averaged"],
        rationale=Rationale(positions=[[1], [0, 1]], reached=[True, False]),
    )


def _trace() -> AttributionTrace:
    # scores[layer, head, target, input] = 100*layer + 10*head + input, NaN at (target 0, input 2)
    s = np.zeros((2, 3, 2, 3))
    for layer in range(2):
        for head in range(3):
            for j in range(3):
                s[layer, head, :, j] = 100 * layer + 10 * head + j
    s[..., 0, 2] = NAN
    return AttributionTrace(base=_base(), scores=s, axes=["layer", "head"], labels={"layer": ["l0", "l1"]})


def test_select_every_axis_gives_a_plain_attribution():
    t = _trace()
    a = t.select(layer=1, head=2)
    assert isinstance(a, Attribution) and not isinstance(a, AttributionTrace)
    np.testing.assert_array_equal(a.scores, [[120, 121, NAN], [120, 121, 122]])
    assert a.tokens == ["<s>", "a", "b"] and a.warnings == ["heads were averaged"]
    assert a.rationale is not None and a.rationale.reached == [True, False]
    assert a.meta["trace"] == {"selected": {"layer": "l1", "head": 2}}
    np.testing.assert_array_equal(t.select(layer=-1, head=-1).scores, a.scores)


def test_select_some_axes_keeps_a_trace():
    t = _trace().select(head=1)
    assert isinstance(t, AttributionTrace) and t.axes == ["layer"] and t.labels == {"layer": ["l0", "l1"]}
    assert t.scores.shape == (2, 2, 3)
    a = t.select(layer=0)
    assert isinstance(a, Attribution)
    np.testing.assert_array_equal(a.scores[1], [10, 11, 12])
    assert a.meta["trace"] == {"selected": {"head": 1, "layer": "l0"}}


def test_mean_reduces_one_axis_then_all():
    t = _trace()
    by_layer = t.mean("head")  # heads 0, 10, 20 -> mean 10
    assert isinstance(by_layer, AttributionTrace) and by_layer.axes == ["layer"]
    np.testing.assert_array_equal(by_layer.scores[1, 1], [110, 111, 112])
    a = by_layer.mean("layer")  # layers 0, 100 -> mean 50
    assert isinstance(a, Attribution)
    np.testing.assert_array_equal(a.scores, [[60, 61, NAN], [60, 61, 62]])
    assert a.meta["trace"] == {"mean_over": ["head", "layer"]}
    # the base is the mean over every extra axis, whatever it was built from
    np.testing.assert_array_equal(t.base.scores, a.scores)


def test_mean_ignores_nan_entries():
    s = np.array([[[[1.0, NAN]]], [[[3.0, NAN]]], [[[NAN, NAN]]]])  # [checkpoint, 1, 1, 2]
    base = Attribution(tokens=["x", "y"], scores=np.zeros((1, 2)), target_tokens=["z"], target_positions=[None])
    t = AttributionTrace(base=base, scores=s[:, 0], axes=["checkpoint"])
    a = t.mean("checkpoint")
    assert a.scores[0, 0] == 2.0 and np.isnan(a.scores[0, 1])


def test_index_and_label():
    t = _trace()
    assert t.index("layer", "l1") == 1 and t.index("head", 2) == 2
    assert t.label("layer", 0) == "l0" and t.label("head", 1) == 1
    with pytest.raises(InputError, match="no entry labelled"):
        t.index("layer", "l7")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depth": 0}, "no axis 'depth'"),
        ({"layer": 2}, "outside 0..1"),
        ({"head": -4}, "outside 0..2"),
        ({"head": True}, "outside"),
    ],
)
def test_select_rejects_bad_axes(kwargs, match):
    with pytest.raises(InputError, match=match):
        _trace().select(**kwargs)


def test_constructor_checks():
    s = np.zeros((2, 2, 3))
    with pytest.raises(InputError, match="do not match"):
        AttributionTrace(base=_base(), scores=np.zeros((2, 2, 4)), axes=["layer"])
    with pytest.raises(InputError, match="do not match"):
        AttributionTrace(base=_base(), scores=s, axes=["layer", "head"])
    with pytest.raises(InputError, match="distinct"):
        AttributionTrace(base=_base(), scores=np.zeros((1, 1, 2, 3)), axes=["l", "l"])
    with pytest.raises(InputError, match="distinct"):
        AttributionTrace(base=_base(), scores=np.zeros((2, 3)), axes=[])
    with pytest.raises(InputError, match="labels of axis 'layer'"):
        AttributionTrace(base=_base(), scores=s, axes=["layer"], labels={"layer": ["only one"]})
    with pytest.raises(InputError, match="unknown axes"):
        AttributionTrace(base=_base(), scores=s, axes=["layer"], labels={"head": [0, 1]})
    with pytest.raises(InputError, match="at least one entry"):
        AttributionTrace(base=_base(), scores=np.zeros((0, 2, 3)), axes=["layer"])


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_round_trip(tmp_path, suffix):
    t = _trace()
    back = AttributionTrace.load(t.save(tmp_path / f"t{suffix}"))
    assert back.axes == t.axes and back.labels == t.labels
    np.testing.assert_array_equal(back.scores, t.scores)
    assert back.base.tokens == t.base.tokens and back.base.warnings == t.base.warnings
    assert back.base.rationale == t.base.rationale
    np.testing.assert_array_equal(back.select(layer=1, head=0).scores, t.select(layer=1, head=0).scores)


def test_json_file_is_plain_json(tmp_path):
    data = json.loads(_trace().save(tmp_path / "t.json").read_text())
    assert data["format"] == "seqexplain.attribution_trace" and data["shape"] == [2, 3, 2, 3]
    assert data["scores"][1][2][0][2] is None and data["scores"][1][2][1][2] == 122


def test_load_refuses_bad_files(tmp_path):
    good = _trace().to_dict()
    cases = {
        "newer": {**good, "version": 99},
        "list": [good],
        "shape": {**good, "shape": [2, 3, 2, 4]},
        "ragged": {**good, "scores": [[1.0]]},
        "missing": {k: v for k, v in good.items() if k != "axes"},
        "base": {**good, "attribution": {**good["attribution"], "version": 99}},
    }
    expected = {"newer": "newer seqexplain .trace format version 99.; upgrade", "list": "not a seqexplain",
                "shape": "shape", "ragged": "shape", "missing": "missing 'axes'", "base": "newer seqexplain"}
    for name, doc in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(DataError, match=expected[name]):
            AttributionTrace.load(path)
    plain = _base().save(tmp_path / "plain.json")
    with pytest.raises(DataError, match="not a seqexplain attribution trace"):
        AttributionTrace.load(plain)
    trace_file = _trace().save(tmp_path / "t.json")
    with pytest.raises(DataError, match="AttributionTrace.load"):
        Attribution.load(trace_file)


def test_load_refuses_safetensors_with_a_tensor_of_another_shape(tmp_path):
    from safetensors.numpy import save_file

    meta = {"seqexplain": json.dumps(_trace().to_dict(include_scores=False))}
    path = tmp_path / "t.safetensors"
    save_file({"scores": np.zeros((2, 2, 2, 3))}, str(path), metadata=meta)
    with pytest.raises(DataError, match="tensor has shape"):
        AttributionTrace.load(path)
    save_file({"other": np.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(DataError, match="no seqexplain metadata or scores"):
        AttributionTrace.load(path)
