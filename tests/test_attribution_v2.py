"""Attribution v2: the Rationale part, named groups and aggregate(by=...), objective / foils / warnings, format
version 3 (reading versions 1 and 2, refusing newer and malformed documents), top_k through the shared ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqexplain.attribution import Attribution
from seqexplain.attribution_io import FORMAT_VERSION
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import DataError, InputError

NAN, INF = float("nan"), float("inf")
TEXT = "Paris is big. It is old"
#          0    5  8   12 14 17 20


def _attr(**kw) -> Attribution:
    """Two sentences of words; target ' old' at position 7 (a causal-LM row layout)."""
    fields = dict(
        tokens=["<s>", "Par", "is", " is", " big", ".", " It", " is", " old"],
        offsets=[None, (0, 3), (3, 5), (5, 8), (8, 12), (12, 13), (13, 16), (16, 19), (19, 23)],
        segments=["special"] + ["source"] * 8,
        scores=np.array([[1.0, 2.0, -3.0, 4.0, 0.5, NAN, NAN, NAN, NAN],
                         [0.0, 1.0, 1.0, -1.0, 2.0, 3.0, -4.0, 1.0, NAN]]),
        target_tokens=[".", " old"],
        target_positions=[5, 8],
        text=TEXT,
        method="greedy",
        options={"max_size": 4},
        rationale=Rationale(
            positions=[[4, 1, 2], [7, 6]],
            reached=[True, False],
            bound_hit=[False, True],
            log=[[{"size": 1, "added": [4], "added_tokens": [" big"]},
                  {"size": 3, "added": [1, 2], "added_tokens": ["Par", "is"]}],
                 [{"size": 2, "added": [7, 6], "added_tokens": [" is", " It"]}]],
            meta={"forwards": 12},
        ),
        groups={"sentences": [[1, 2, 3, 4, 5], [6, 7, 8]], "entity": [[1, 2]]},
        warnings=["scores were computed in float16"],
    )
    fields.update(kw)
    return Attribution(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ Rationale
def test_rationale_from_method_reads_meta_and_log():
    log = [[{"added": [2], "reached": False}], [{"added": [], "reached": False, "bound_hit": True}], []]
    meta = {"reached": [True, False, False], "bound_hit": [2], "forwards": 7, "seconds": 0.5}
    r = Rationale.from_method([[2, 0], [], [1]], log, meta, 3)
    assert r is not None
    assert r.positions == [[2, 0], [], [1]]
    assert r.reached == [True, False, False]  # meta wins over the log
    assert r.bound_hit == [False, True, True]  # target 2 from meta's index list, target 1 from its last record
    assert r.log == log and r.meta == {"forwards": 7, "seconds": 0.5}


def test_rationale_from_method_without_meta_uses_the_log_then_false():
    r = Rationale.from_method([[1], [0]], [[{"reached": True}], []], {}, 2)
    assert r is not None and r.reached == [True, False] and r.bound_hit == [False, False]
    r = Rationale.from_method([[1]], None, {}, 1)
    assert r is not None and r.log == [[]] and r.reached == [False]
    assert Rationale.from_method(None, None, {"reached": [True]}, 1) is None


@pytest.mark.parametrize(
    "args,match",
    [
        (([[1]], None, {}, 2), "1 rationales for 2 targets"),
        (([[1], [2]], [[]], {}, 2), "1 rationale logs for 2 targets"),
        (([[1]], None, {"reached": [True, True]}, 1), "reached has 2 entries for 1 targets"),
        (([[1, 1]], None, {}, 1), "twice"),
        (([[1.5]], None, {}, 1), "non-integer"),
    ],
)
def test_rationale_from_method_rejects_mismatches(args, match):
    with pytest.raises(InputError, match=match):
        Rationale.from_method(*args)


def test_rationale_flags_must_be_booleans():
    with pytest.raises(InputError, match="booleans"):
        Rationale(positions=[[0]], reached=["yes"])  # type: ignore[list-item]


def test_attribution_checks_rationale_positions():
    with pytest.raises(InputError, match="position 9, outside 0..8"):
        _attr(rationale=Rationale(positions=[[9], []], reached=[True, True]))
    bad_log = Rationale(positions=[[1], []], reached=[True, True], log=[[{"added": [1, 12]}], []])
    with pytest.raises(InputError, match="position 12"):
        _attr(rationale=bad_log)
    with pytest.raises(InputError, match="covers 1 targets, the result 2"):
        _attr(rationale=Rationale(positions=[[1]], reached=[True]))


# ------------------------------------------------------------------------------- objective and fields
def test_objective_and_foils():
    a = _attr(objective="contrast", foil_tokens=[" small", " new"])
    assert a.foil_tokens == [" small", " new"]
    with pytest.raises(InputError, match="unknown objective 'loss'"):
        _attr(objective="loss")
    with pytest.raises(InputError, match="needs foil_tokens, one foil token per target"):
        _attr(objective="contrast")
    with pytest.raises(InputError, match="needs foil_tokens"):
        _attr(objective="contrast", foil_tokens=[" x"])
    with pytest.raises(InputError, match="only apply to objective 'contrast'"):
        _attr(foil_tokens=[" x", " y"])
    for objective in ("logprob", "prob", "logit"):
        assert _attr(objective=objective).objective == objective


def test_other_field_checks():
    with pytest.raises(InputError, match="target position 9 is not an input position"):
        _attr(target_positions=[5, 9])
    with pytest.raises(InputError, match="warnings must be a list of strings"):
        _attr(warnings="careful")
    with pytest.raises(InputError, match="3 target log-probabilities for 2 targets"):
        _attr(target_logprobs=[0.0, 0.0, 0.0])
    with pytest.raises(InputError, match="8 offsets"):
        _attr(offsets=[None] * 8)


@pytest.mark.parametrize(
    "grouping,match",
    [
        ([[1, 2], [2, 3]], r"position 2 is in groups 0 and 1; groups must not overlap"),
        ([[1, 1]], "position 1 is twice in group 0"),
        ([[1], []], "group 1 is empty; remove empty groups"),
        ([[0, 9]], r"group 0 holds position 9, outside 0..8; use positions of the input axis"),
        ([[-1]], "outside 0..8"),
        ([["a"]], "integer positions"),
        ("words", "must be a list of groups"),
    ],
)
def test_group_validation(grouping, match):
    with pytest.raises(InputError, match=match):
        _attr(groups={"g": grouping})
    if not isinstance(grouping, str):
        with pytest.raises(InputError, match=match):
            _attr().aggregate("sum", by=grouping)


# --------------------------------------------------------------------------------------------- top_k
def test_top_k_uses_the_shared_ranking():
    a = _attr(scores=np.array([[2.0, INF, 2.0, -INF, 5.0, NAN, NAN, NAN, NAN],
                               [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, NAN]]))
    assert a.top_k(0, 10) == [1, 4, 0, 2, 3]  # +inf, 5, the 2s by position, -inf; NaN (not visible) never
    assert a.top_k(0, 2) == [1, 4]
    assert a.top_k(1, 3) == [0, 1, 2]


# ------------------------------------------------------------------------------------------ aggregate
def test_aggregate_by_named_grouping_keeps_uncovered_positions_alone():
    a = _attr()
    assert a.partition("entity") == [[0], [1, 2], [3], [4], [5], [6], [7], [8]]
    e = a.aggregate("sum", by="entity")
    assert e.tokens == ["<s>", "Paris", "is", "big", ".", "It", "is", "old"]
    np.testing.assert_array_equal(e.scores[1], [0.0, 2.0, -1.0, 2.0, 3.0, -4.0, 1.0, NAN])
    np.testing.assert_array_equal(e.scores[0], [1.0, -1.0, 4.0, 0.5, NAN, NAN, NAN, NAN])
    assert e.target_positions == [4, 7]
    assert e.offsets[1] == (0, 5) and e.offsets[0] is None
    assert e.aggregation == {"how": "sum", "by": "entity"}
    assert e.options == {"max_size": 4}


@pytest.mark.parametrize("how", ["sum", "mean", "max", "absmax"])
def test_aggregate_by_sentences_hand_computed(how):
    s = _attr().aggregate(how, by="sentences")
    assert s.tokens == ["<s>", "Paris is big.", "It is old"]
    assert s.offsets == [None, (0, 13), (14, 23)]
    # target 1 sees 1, 1, -1, 2, 3 in sentence 1 and -4, 1 in sentence 2 (its own position is NaN)
    expected = {"sum": [0.0, 6.0, -3.0], "mean": [0.0, 1.2, -1.5], "max": [0.0, 3.0, 1.0],
                "absmax": [0.0, 3.0, -4.0]}[how]
    np.testing.assert_allclose(s.scores[1], expected)
    assert s.target_positions == [1, 2]


def test_aggregate_absmax_ties_to_the_first_member_and_keeps_the_sign():
    a = _attr(scores=np.array([[0.0, -2.0, 2.0, 1.0, 0.0, NAN, NAN, NAN, NAN], [0.0] * 8 + [NAN]]))
    e = a.aggregate("absmax", by=[[1, 2]])
    assert e.scores[0, 1] == -2.0
    e = a.aggregate("absmax", by=[[2, 1]])  # member order in the group does not matter
    assert e.scores[0, 1] == -2.0


def test_aggregate_by_explicit_non_contiguous_group():
    e = _attr().aggregate("sum", by=[[8, 1]])
    assert e.tokens == ["<s>", "Par… old", "is", "is", "big", ".", "It", "is"]
    assert e.offsets[1] is None
    np.testing.assert_array_equal(e.scores[0, 1], 2.0)  # 2.0 + NaN (not visible) -> 2.0
    assert e.target_positions == [5, 1]
    assert e.aggregation == {"how": "sum", "by": "groups", "groups": [[1, 8]]}
    np.testing.assert_allclose(np.nansum(e.scores, 1), np.nansum(_attr().scores, 1))


def test_aggregate_words_prefers_a_stored_words_grouping():
    a = _attr()
    assert a.partition("words") == [[0], [1, 2], [3], [4, 5], [6], [7], [8]]  # from offsets
    custom = _attr(groups={"words": [[3, 4]]})
    assert custom.partition("words") == [[0], [1], [2], [3, 4], [5], [6], [7], [8]]
    assert custom.aggregate("sum").tokens[3] == "is big"


def test_aggregate_unknown_grouping_and_how():
    with pytest.raises(InputError, match="no grouping named 'clauses'; use one of entity, sentences, words"):
        _attr().aggregate("sum", by="clauses")
    with pytest.raises(InputError, match="unknown aggregation"):
        _attr().aggregate("median")  # type: ignore[arg-type]


def test_aggregate_remaps_the_rationale_and_its_log():
    e = _attr().aggregate("sum", by="sentences")
    r = e.rationale
    assert r is not None
    assert r.positions == [[1], [2]]  # [4, 1, 2] all in sentence 1; [7, 6] both in sentence 2
    assert r.log[0] == [{"size": 1, "added": [1], "added_tokens": ["Paris is big."]},
                        {"size": 3, "added": [1], "added_tokens": ["Paris is big."]}]
    assert r.log[1] == [{"size": 2, "added": [2], "added_tokens": ["It is old"]}]
    assert r.reached == [True, False] and r.bound_hit == [False, True] and r.meta == {"forwards": 12}
    w = _attr().aggregate("sum", by="entity")
    assert w.rationale is not None and w.rationale.positions == [[3, 1], [6, 5]]
    assert w.rationale.log[0][1]["added"] == [1] and w.rationale.log[0][1]["added_tokens"] == ["Paris"]
    # the original is untouched
    assert _attr().rationale.log[0][1]["added"] == [1, 2]  # type: ignore[union-attr]


def test_aggregate_maps_other_groupings_exactly_or_drops_them():
    e = _attr().aggregate("sum", by="entity")
    assert e.groups == {"sentences": [[1, 2, 3, 4], [5, 6, 7]], "entity": [[1]]}
    assert "dropped_groups" not in e.meta
    s = _attr(groups={"sentences": [[1, 2, 3, 4, 5], [6, 7, 8]], "pairs": [[2, 3]]}).aggregate("sum", by=[[1, 2]])
    assert "pairs" not in s.groups and s.groups["sentences"] == [[1, 2, 3, 4], [5, 6, 7]]
    assert list(s.meta["dropped_groups"]) == ["pairs"]


def test_aggregate_keeps_flags_warnings_objective_and_records_chains():
    a = _attr(objective="contrast", foil_tokens=[" x", " y"], meta={"nonfinite_cells": [[1, 2]]})
    a.scores[1, 3] = INF
    e = a.aggregate("sum", by="entity")
    assert e.nonfinite_cells() == [(1, 1), (1, 2)]  # the visible NaN at input 2 lives on in group 1
    assert e.warnings == a.warnings and e.objective == "contrast" and e.foil_tokens == [" x", " y"]
    twice = e.aggregate("mean", by="sentences")
    assert twice.aggregation == {"how": "mean", "by": "sentences", "of": {"how": "sum", "by": "entity"}}
    assert twice.tokens == ["<s>", "Paris is big.", "It is old"]
    assert a.options == e.options == twice.options == {"max_size": 4}


# ------------------------------------------------------------------------------------------ the files
@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_round_trip_of_every_new_field(tmp_path, suffix):
    a = _attr(objective="contrast", foil_tokens=[" x", " y"]).aggregate("max", by="entity")
    b = Attribution.load(a.save(tmp_path / f"a{suffix}"))
    assert b.rationale == a.rationale and b.groups == a.groups and b.aggregation == a.aggregation
    assert b.warnings == ["scores were computed in float16"] and b.objective == "contrast"
    assert b.foil_tokens == [" x", " y"] and b.offsets == a.offsets and b.options == a.options
    np.testing.assert_array_equal(b.scores, a.scores)


def test_saved_json_is_version_3_with_the_rationale_part(tmp_path):
    data = json.loads(_attr().save(tmp_path / "a.json").read_text())
    assert FORMAT_VERSION == 3 and data["version"] == 3
    assert "rationales" not in data and "rationale_log" not in data
    assert data["rationale"]["reached"] == [True, False] and data["rationale"]["bound_hit"] == [False, True]
    assert data["warnings"] == ["scores were computed in float16"]
    assert data["objective"] == "logprob" and data["foil_tokens"] is None and data["aggregation"] is None


def test_public_names_stay_importable_from_seqexplain_attribution():
    import seqexplain.attribution as attribution

    assert attribution.FORMAT_VERSION == FORMAT_VERSION and attribution.Rationale is Rationale
    assert {"FORMAT_VERSION", "Rationale", "Attribution"} <= set(attribution.__all__)


def _v1_document() -> dict:
    """A version 1 file as seqexplain 0.1 wrote it (hand-written: top-level rationales, meta flags)."""
    return {
        "format": "seqexplain.attribution", "version": 1,
        "tokens": ["<s>", "a", "b", "c"], "offsets": [None, [0, 1], [2, 3], [4, 5]],
        "segments": ["special", "source", "source", "source"],
        "target_tokens": ["b", "c"], "target_positions": [2, 3],
        "method": "exhaustive", "options": {"max_size": 2, "aggregated": "sum"},
        "model_id": "m", "model_kind": "causal", "text": "a b c", "target_text": "",
        "target_logprobs": [-1.0, -2.0],
        "rationales": [[1, 0], []],
        "rationale_log": [[{"size": 2, "added": [1, 0], "reached": True}],
                          [{"size": 2, "added": [], "reached": False, "bound_hit": True}]],
        "meta": {"reached": [True, False], "bound_hit": [1], "forwards": 5},
        "scores": [[1.0, 0.5, None, None], [0.0, 0.0, 0.0, None]],
    }


def test_reads_version_1(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(_v1_document()))
    a = Attribution.load(path)
    assert a.rationale == Rationale(positions=[[1, 0], []], reached=[True, False], bound_hit=[False, True],
                                    log=_v1_document()["rationale_log"], meta={"forwards": 5})
    assert a.options == {"max_size": 2} and a.aggregation == {"how": "sum", "by": "words"}
    assert a.objective == "logprob" and a.warnings == [] and a.groups == {}
    np.testing.assert_array_equal(a.scores, [[1.0, 0.5, NAN, NAN], [0.0, 0.0, 0.0, NAN]])
    again = Attribution.load(a.save(tmp_path / "v3.json"))  # and writes it back as the current version
    assert again.rationale == a.rationale and json.loads((tmp_path / "v3.json").read_text())["version"] == 3
    no_rationale = {k: v for k, v in _v1_document().items() if k not in ("rationales", "rationale_log")}
    assert Attribution.from_dict(no_rationale).rationale is None


def test_refuses_a_newer_version(tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({**_attr().to_dict(), "version": 4}))
    with pytest.raises(DataError) as info:
        Attribution.load(path)
    assert str(info.value) == (f"{path} was written by a newer seqexplain (format version 4); upgrade seqexplain "
                               "to read it")
    with pytest.raises(DataError, match=r"newer seqexplain \(format version 4\)"):
        Attribution.from_dict({**_attr().to_dict(), "version": 4})


def _broken(change) -> dict:
    d = _attr().to_dict()
    change(d)
    return d


MALFORMED = {
    "a JSON list": ([1, 2], "expected a JSON object, got list"),
    "no version": (_broken(lambda d: d.pop("version")), "no valid format version"),
    "string version": (_broken(lambda d: d.update(version="2")), "no valid format version"),
    "missing tokens": (_broken(lambda d: d.pop("tokens")), "has no 'tokens'"),
    "missing scores": (_broken(lambda d: d.pop("scores")), "has no 'scores'"),
    "tokens not strings": (_broken(lambda d: d.update(tokens=[1] * 9)), "'tokens' must be a list of strings"),
    "scores too short": (_broken(lambda d: d["scores"][0].pop()), r"'scores' has 2 rows of lengths \[8, 9\]"),
    "scores with text": (_broken(lambda d: d["scores"][0].__setitem__(0, "x")), "rows of numbers"),
    "an extra row": (_broken(lambda d: d["scores"].append(d["scores"][0])), "expected 2 rows of 9"),
    "offsets beyond the text": (_broken(lambda d: d["offsets"].__setitem__(8, [19, 40])),
                                r"offsets \[19, 40\] of token 8 lie beyond its source text of 23 characters"),
    "reversed offsets": (_broken(lambda d: d["offsets"].__setitem__(1, [3, 0])), "lie beyond"),
    "bad offsets": (_broken(lambda d: d["offsets"].__setitem__(1, "0-3")), r"must be \[start, end\]"),
    # word aggregation reads a token's text by its segment's name: another name aggregated nothing, silently
    "unknown segment": (_broken(lambda d: d["segments"].__setitem__(2, "Source")),
                        r"unknown segment\(s\) 'Source'; a token's segment is one of source, target, special"),
    "rationale out of range": (_broken(lambda d: d["rationale"]["positions"][1].append(30)),
                               "position 30, outside 0..8"),
    "rationale log out of range": (_broken(lambda d: d["rationale"]["log"][1][0]["added"].append(-1)),
                                   "position -1"),
    "rationale without reached": (_broken(lambda d: d["rationale"].pop("reached")), "rationale has no 'reached'"),
    "rationale of a list": (_broken(lambda d: d.update(rationale=[[1]])), "'rationale' must be an object"),
    "target position out of range": (_broken(lambda d: d.update(target_positions=[5, 12])),
                                     "target position 12"),
    "overlapping groups": (_broken(lambda d: d["groups"].update(x=[[1, 2], [2]])), "must not overlap"),
    "unknown objective": (_broken(lambda d: d.update(objective="loss")), "unknown objective"),
    "warnings as text": (_broken(lambda d: d.update(warnings="careful")), "'warnings' must be a list"),
    "options as a list": (_broken(lambda d: d.update(options=[1])), "'options' must be a dict"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_refuses_malformed_documents(tmp_path, name):
    doc, match = MALFORMED[name]
    with pytest.raises(DataError, match=match):
        Attribution.from_dict(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=match) as info:
        Attribution.load(path)
    assert str(path) in str(info.value)


def test_refuses_safetensors_scores_of_the_wrong_shape(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "a.safetensors"
    meta = {"seqexplain": json.dumps(_attr().to_dict(include_scores=False))}
    save_file({"scores": np.zeros((9, 2))}, str(path), metadata=meta)
    with pytest.raises(DataError, match=r"scores have shape \(9, 2\), expected \(2, 9\)"):
        Attribution.load(path)
    save_file({"scores": np.zeros((2, 9))}, str(path), metadata={"seqexplain": "[1, 2]"})
    with pytest.raises(DataError, match="expected a JSON object"):
        Attribution.load(path)
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(DataError, match="not a readable seqexplain attribution file"):
        Attribution.load(path)
