"""Audit of the Attribution result type's files: round trips of every value and field (JSON and safetensors,
strict JSON readers, older format versions) and hand-edited files refused with a DataError, each checked against
hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from attribution_samples import INF, NAN, basic, full, same

from seqexplain.attribution import Attribution
from seqexplain.errors import DataError
from seqexplain.trace import AttributionTrace


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_infinite_scores_survive_a_file_round_trip(tmp_path, suffix):
    a = basic()
    b = Attribution.load(a.save(tmp_path / f"a{suffix}"))
    same(b.scores, a.scores)
    assert b.nonfinite_cells() == [(0, 0), (0, 1)]  # still flagged, not turned into "not visible"
    same(Attribution.from_dict(json.loads(json.dumps(a.to_dict(), allow_nan=False))).scores, a.scores)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_infinite_trace_scores_survive_a_file_round_trip(tmp_path, suffix):
    base = basic()
    scores = np.stack([base.scores, -base.scores])
    t = AttributionTrace(base=base, scores=scores, axes=["layer"])
    back = AttributionTrace.load(t.save(tmp_path / f"t{suffix}"))
    same(back.scores, t.scores)


def _strict_json(text: str) -> object:
    """Parse as strict JSON readers do (jq, a browser's JSON.parse): NaN and Infinity are not JSON."""
    def refuse(name: str) -> float:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_saved_files_are_standard_json_with_every_non_finite_float_kept(tmp_path, suffix):
    """A -inf target log-probability, a NaN convergence delta or an infinite option was written as -Infinity /
    NaN, which strict JSON readers refuse."""
    from safetensors import safe_open

    a = basic(target_logprobs=[-INF, NAN], options={"eps": INF, "name": "NaN", "nested": [{"d": -INF}]},
               meta={"convergence_delta": [NAN, 1.0]})
    path = a.save(tmp_path / f"a{suffix}")
    if suffix == ".json":
        doc = _strict_json(path.read_text(encoding="utf-8"))
    else:
        with safe_open(str(path), framework="numpy") as fh:
            doc = _strict_json((fh.metadata() or {})["seqexplain"])
    assert isinstance(doc, dict) and doc["target_logprobs"] == [{"$float": "-inf"}, {"$float": "nan"}]
    b = Attribution.load(path)
    assert b.target_logprobs is not None and b.target_logprobs[0] == -INF and np.isnan(b.target_logprobs[1])
    assert b.options["eps"] == INF and b.options["name"] == "NaN" and b.options["nested"] == [{"d": -INF}]
    assert np.isnan(b.meta["convergence_delta"][0]) and b.meta["convergence_delta"][1] == 1.0
    t = AttributionTrace(base=a, scores=np.stack([a.scores]), axes=["layer"])
    tpath = t.save(tmp_path / f"t{suffix}")
    if suffix == ".json":
        _strict_json(tpath.read_text(encoding="utf-8"))
    assert AttributionTrace.load(tpath).base.target_logprobs[0] == -INF
    old = tmp_path / "old.json"  # a file written before: NaN / -Infinity literals, which Python reads
    old.write_text(json.dumps(a.to_dict()), encoding="utf-8")
    assert Attribution.load(old).target_logprobs[0] == -INF


def test_files_of_format_version_2_still_load(tmp_path):
    """Version 2 (the format before ±inf was spelled out) wrote non-finite scores as null: read as NaN."""
    doc = {**basic().to_dict(), "version": 2, "scores": [[None, None, -0.0], [1.5, None, 2.0]]}
    a = Attribution.from_dict(json.loads(json.dumps(doc)))
    same(a.scores, np.array([[NAN, NAN, -0.0], [1.5, NAN, 2.0]]))
    trace = {"format": "seqexplain.attribution_trace", "version": 1, "axes": ["layer"], "labels": {},
             "shape": [1, 2, 3], "attribution": doc, "scores": [doc["scores"]]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    same(AttributionTrace.load(path).scores, np.array([[[NAN, NAN, -0.0], [1.5, NAN, 2.0]]]))


@pytest.mark.parametrize("cell", ["Infinity", "nan", True, [1.0], 10**400])
def test_a_hand_edited_score_cell_is_a_data_error(cell):
    doc = basic().to_dict()
    doc["scores"][1][0] = cell
    with pytest.raises(DataError, match="'scores' must be|too large"):
        Attribution.from_dict(doc)


@pytest.mark.parametrize("cells", [[[0, 9]], [[2, 0]], [[-1, 0]], 5, [["a", "b"]], [[0]], [[0, 1.5]]])
def test_a_hand_edited_nonfinite_cell_list_is_refused_on_load(tmp_path, cells):
    """``meta["nonfinite_cells"]`` drives flags in every view and aggregation: a bad one must fail on load,
    not later as a KeyError / TypeError inside ``aggregate`` or a renderer."""
    doc = basic(scores=np.ones((2, 3))).to_dict()
    doc["meta"] = {"nonfinite_cells": cells}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="nonfinite_cells"):
        Attribution.load(path)
    doc["meta"] = {"nonfinite_cells": [[1, 2]]}
    assert Attribution.from_dict(doc).nonfinite_cells() == [(1, 2)]


@pytest.mark.parametrize("record", [{"how": "sum", "by": "words", "of": "x"}, {"by": "words"},
                                    {"how": "median", "by": "words"}, {"how": "sum", "by": 3},
                                    {"how": "sum", "by": "words", "of": {"how": "sum"}}])
def test_a_malformed_aggregation_record_is_refused_on_load(tmp_path, record):
    """Every view describes the aggregation chain; a hand-edited record must fail on load, not in a renderer."""
    doc = basic(scores=np.ones((2, 3))).to_dict()
    doc["aggregation"] = record
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="aggregation"):
        Attribution.load(path)


def test_a_chained_aggregation_record_loads_and_is_described(tmp_path):
    from seqexplain.report._common import describe_aggregation

    a = basic(scores=np.ones((2, 3))).aggregate("sum", by=[[0, 1]]).aggregate("max", by=[[0, 1]])
    b = Attribution.load(a.save(tmp_path / "a.json"))
    assert b.aggregation == {"how": "max", "by": "groups", "groups": [[0, 1]],
                             "of": {"how": "sum", "by": "groups", "groups": [[0, 1]]}}
    assert describe_aggregation(b) == "aggregated=max over explicit groups, of sum over explicit groups"


@pytest.mark.parametrize("log", [[[1], [2]], [[{"added": [0]}], "x"], [[{"reached": True}], [None]]])
def test_a_version_1_file_with_a_malformed_rationale_log_is_a_data_error(tmp_path, log):
    doc = {**basic(scores=np.ones((2, 3))).to_dict(), "version": 1, "rationales": [[0], [1]], "rationale_log": log}
    for key in ("rationale", "aggregation", "groups", "warnings", "objective", "foil_tokens"):
        doc.pop(key)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="rationale log"):
        Attribution.load(path)


def test_a_deeply_nested_json_file_is_a_data_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="not a readable seqexplain attribution file"):
        Attribution.load(path)
    from safetensors.numpy import save_file

    path = tmp_path / "deep.safetensors"
    save_file({"scores": np.zeros((1, 1))}, str(path), metadata={"seqexplain": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(DataError, match="not a readable seqexplain attribution file"):
        Attribution.load(path)


# ------------------------------------------------------------------------------------- full round trips
def _assert_same_attribution(b: Attribution, a: Attribution) -> None:
    same(b.scores, a.scores)
    for name in ("tokens", "target_tokens", "target_positions", "offsets", "segments", "method", "options", "model_id",
                 "model_kind", "text", "target_text", "target_logprobs", "objective", "foil_tokens", "rationale",
                 "groups", "aggregation", "warnings", "meta"):
        assert getattr(b, name) == getattr(a, name), name


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
@pytest.mark.parametrize("variant", ["full", "bare", "aggregated"])
def test_every_field_survives_a_file_round_trip(tmp_path, suffix, variant):
    if variant == "full":
        a = full()
    elif variant == "aggregated":
        a = full().aggregate("absmax", by=[[1, 3], [5, 6, 8]]).aggregate("mean", by="g")
    else:  # every optional part absent
        a = Attribution(tokens=["\ud800"], scores=np.array([[-0.0]]), target_tokens=["y"], target_positions=[None])
    b = Attribution.load(a.save(tmp_path / f"a{suffix}"))
    _assert_same_attribution(b, a)
    _assert_same_attribution(Attribution.from_dict(a.to_dict()), a)
    _assert_same_attribution(Attribution.load(b.save(tmp_path / f"b{suffix}")), a)  # stable when saved again


def test_to_dict_and_from_dict_do_not_share_mutable_parts():
    a = full()
    before = json.dumps(a.to_dict(), sort_keys=True)
    d = a.to_dict()
    d["tokens"].append("x")
    d["warnings"].append("added later")
    d["meta"]["x"]["y"].append(2)
    d["options"]["k"].append(3)
    d["rationale"]["log"][0][0]["added"].append(8)
    d["groups"]["g"][0].append(4)
    assert json.dumps(a.to_dict(), sort_keys=True) == before
    d = a.to_dict()
    b = Attribution.from_dict(d)
    d["meta"]["x"]["y"].append(2)
    d["options"]["k"].append(3)
    d["rationale"]["log"][0][0]["added"].append(8)
    d["rationale"]["meta"]["forwards"] = 99
    _assert_same_attribution(b, a)
