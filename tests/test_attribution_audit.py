"""Audit of the Attribution result type: file round trips of every value, hand-edited files, aggregation edge
cases, each checked against hand-computed values or a brute-force re-implementation written here."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from seqexplain.attribution import Attribution
from seqexplain.errors import DataError, InputError
from seqexplain.trace import AttributionTrace

NAN, INF = float("nan"), float("inf")


def _plain(**kw) -> Attribution:
    fields = dict(tokens=["a", "b", "c"], scores=np.array([[INF, -INF, -0.0], [1.5, NAN, 2.0]]),
                  target_tokens=["x", "y"], target_positions=[None, None], model_kind="classifier")
    fields.update(kw)
    return Attribution(**fields)  # type: ignore[arg-type]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    """Bit-for-bit equal values: NaN where NaN, the same infinities, the sign of zero kept."""
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a) & ~np.isnan(a), np.signbit(b) & ~np.isnan(b))


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_infinite_scores_survive_a_file_round_trip(tmp_path, suffix):
    a = _plain()
    b = Attribution.load(a.save(tmp_path / f"a{suffix}"))
    _same(b.scores, a.scores)
    assert b.nonfinite_cells() == [(0, 0), (0, 1)]  # still flagged, not turned into "not visible"
    _same(Attribution.from_dict(json.loads(json.dumps(a.to_dict(), allow_nan=False))).scores, a.scores)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_infinite_trace_scores_survive_a_file_round_trip(tmp_path, suffix):
    base = _plain()
    scores = np.stack([base.scores, -base.scores])
    t = AttributionTrace(base=base, scores=scores, axes=["layer"])
    back = AttributionTrace.load(t.save(tmp_path / f"t{suffix}"))
    _same(back.scores, t.scores)


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

    a = _plain(target_logprobs=[-INF, NAN], options={"eps": INF, "name": "NaN", "nested": [{"d": -INF}]},
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
    doc = {**_plain().to_dict(), "version": 2, "scores": [[None, None, -0.0], [1.5, None, 2.0]]}
    a = Attribution.from_dict(json.loads(json.dumps(doc)))
    _same(a.scores, np.array([[NAN, NAN, -0.0], [1.5, NAN, 2.0]]))
    trace = {"format": "seqexplain.attribution_trace", "version": 1, "axes": ["layer"], "labels": {},
             "shape": [1, 2, 3], "attribution": doc, "scores": [doc["scores"]]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(trace))
    _same(AttributionTrace.load(path).scores, np.array([[[NAN, NAN, -0.0], [1.5, NAN, 2.0]]]))


@pytest.mark.parametrize("cell", ["Infinity", "nan", True, [1.0], 10**400])
def test_a_hand_edited_score_cell_is_a_data_error(cell):
    doc = _plain().to_dict()
    doc["scores"][1][0] = cell
    with pytest.raises(DataError, match="'scores' must be|too large"):
        Attribution.from_dict(doc)


@pytest.mark.parametrize("cells", [[[0, 9]], [[2, 0]], [[-1, 0]], 5, [["a", "b"]], [[0]], [[0, 1.5]]])
def test_a_hand_edited_nonfinite_cell_list_is_refused_on_load(tmp_path, cells):
    """``meta["nonfinite_cells"]`` drives flags in every view and aggregation: a bad one must fail on load,
    not later as a KeyError / TypeError inside ``aggregate`` or a renderer."""
    doc = _plain(scores=np.ones((2, 3))).to_dict()
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
    doc = _plain(scores=np.ones((2, 3))).to_dict()
    doc["aggregation"] = record
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="aggregation"):
        Attribution.load(path)


def test_a_chained_aggregation_record_loads_and_is_described(tmp_path):
    from seqexplain.report._common import describe_aggregation

    a = _plain(scores=np.ones((2, 3))).aggregate("sum", by=[[0, 1]]).aggregate("max", by=[[0, 1]])
    b = Attribution.load(a.save(tmp_path / "a.json"))
    assert b.aggregation == {"how": "max", "by": "groups", "groups": [[0, 1]],
                             "of": {"how": "sum", "by": "groups", "groups": [[0, 1]]}}
    assert describe_aggregation(b) == "aggregated=max over explicit groups, of sum over explicit groups"


@pytest.mark.parametrize("log", [[[1], [2]], [[{"added": [0]}], "x"], [[{"reached": True}], [None]]])
def test_a_version_1_file_with_a_malformed_rationale_log_is_a_data_error(tmp_path, log):
    doc = {**_plain(scores=np.ones((2, 3))).to_dict(), "version": 1, "rationales": [[0], [1]], "rationale_log": log}
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


# ------------------------------------------------------------------------ aggregation against brute force
def _brute_combine(values: list[float], how: str) -> float:
    """One group's value from its visible members, written out with Python loops."""
    seen = [v for v in values if v == v]
    if not seen:
        return NAN
    if how == "sum":
        total = 0.0
        for v in seen:
            total += v
        return total
    if how == "mean":
        return _brute_combine(seen, "sum") / len(seen)
    if how == "max":
        best = seen[0]
        for v in seen[1:]:
            best = v if v > best else best
        return best
    best = seen[0]
    for v in seen[1:]:
        best = v if abs(v) > abs(best) else best
    return best


def _brute_partition(groups: list[list[int]], n: int) -> list[list[int]]:
    covered = {j for g in groups for j in g}
    out = [sorted(g) for g in groups] + [[j] for j in range(n) if j not in covered]
    return sorted(out, key=lambda g: g[0])


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("how", ["sum", "mean", "max", "absmax"])
def test_aggregate_matches_a_brute_force_loop(seed, how):
    rng = np.random.default_rng(seed)
    n_t, n_l = int(rng.integers(1, 4)), int(rng.integers(1, 9))
    scores = rng.choice([-2.0, -1.0, -0.0, 0.0, 0.5, 3.0, NAN, INF, -INF], size=(n_t, n_l),
                        p=[.15, .15, .05, .05, .15, .15, .2, .05, .05])
    perm = [int(j) for j in rng.permutation(n_l)]
    groups, k = [], 0
    while k < n_l:  # random, possibly non-contiguous groups leaving some positions uncovered
        size = int(rng.integers(1, 4))
        if rng.random() < 0.7:
            groups.append(perm[k:k + size])
        k += size
    positions = [None if rng.random() < 0.3 else int(rng.integers(0, n_l)) for _ in range(n_t)]
    a = Attribution(tokens=[f"t{j}" for j in range(n_l)], scores=scores, target_tokens=[f"y{i}" for i in range(n_t)],
                    target_positions=positions)
    for by in (groups, "g"):
        b = dataclasses.replace(a, groups={"g": groups}).aggregate(how, by=by)  # type: ignore[arg-type]
        part = _brute_partition(groups, n_l)
        want = np.array([[_brute_combine([float(scores[i, j]) for j in g], how) for g in part] for i in range(n_t)])
        np.testing.assert_array_equal(b.scores, want)
        owner = {j: gi for gi, g in enumerate(part) for j in g}
        assert b.target_positions == [None if p is None else owner[p] for p in positions]
        assert b.tokens == ["…".join(_runs(g)) for g in part]
        flagged = {(i, owner[j]) for i in range(n_t) for j in range(n_l) if np.isinf(scores[i, j])}
        assert set(b.nonfinite_cells()) >= flagged | {tuple(c) for c in np.argwhere(np.isinf(want))}


def _runs(group: list[int]) -> list[str]:
    runs: list[list[int]] = []
    for j in group:
        if runs and j == runs[-1][-1] + 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    return ["".join(f"t{j}" for j in run) for run in runs]


# ------------------------------------------------------------------------------------------ top_k
def test_top_k_refuses_a_target_that_is_not_one_with_an_input_error():
    a = _plain(scores=np.array([[1.0, 3.0, 2.0], [NAN, 1.0, 2.0]]))
    assert a.top_k(1, 5) == [2, 1] and a.top_k(-1, 5) == [2, 1]  # NaN (not visible) never returned
    for target in (2, -3, True, 1.0, "0"):
        with pytest.raises(InputError, match="target"):
            a.top_k(target, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- full round trips
TRICKY = ["<s>", "\u05e9\u05dc\u05d5\u05dd", "e\u0301", "\x00\x07\x1b[31m", "\ud800", "\u2028", " ", "x" * 20_000,
          "</script>&\"'"]


def _full(**kw) -> Attribution:
    from seqexplain.attribution_rationale import Rationale

    n = len(TRICKY)
    scores = np.linspace(-2, 2, 2 * n).reshape(2, n)
    scores[0, 1], scores[0, 2], scores[1, 3], scores[1, 4] = INF, -INF, -0.0, NAN
    fields = dict(tokens=list(TRICKY), scores=scores, target_tokens=["\U0001f600", "\t"], target_positions=[5, None],
                  offsets=[None] * n, segments=["special"] + ["source"] * (n - 1), method="m\u00e9thode",
                  options={"k": [1, 2], "s": "\u2028"}, model_id="id", model_kind="causal", text="t\u00e9xt",
                  target_text="", target_logprobs=[-1.5, -0.0], objective="contrast", foil_tokens=["\x00", "</style>"],
                  rationale=Rationale(positions=[[3, 1], []], reached=[True, False], bound_hit=[False, True],
                                      log=[[{"added": [3, 1], "added_tokens": [TRICKY[3], TRICKY[1]]}], []],
                                      meta={"forwards": 3}),
                  groups={"g": [[1, 3], [2]]}, aggregation=None, warnings=["w\u00e4rning <b>", ""],
                  meta={"nonfinite_cells": [[1, 4]], "x": {"y": [1]}})
    fields.update(kw)
    return Attribution(**fields)  # type: ignore[arg-type]


def _assert_same_attribution(b: Attribution, a: Attribution) -> None:
    _same(b.scores, a.scores)
    for name in ("tokens", "target_tokens", "target_positions", "offsets", "segments", "method", "options", "model_id",
                 "model_kind", "text", "target_text", "target_logprobs", "objective", "foil_tokens", "rationale",
                 "groups", "aggregation", "warnings", "meta"):
        assert getattr(b, name) == getattr(a, name), name


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
@pytest.mark.parametrize("variant", ["full", "bare", "aggregated"])
def test_every_field_survives_a_file_round_trip(tmp_path, suffix, variant):
    if variant == "full":
        a = _full()
    elif variant == "aggregated":
        a = _full().aggregate("absmax", by=[[1, 3], [5, 6, 8]]).aggregate("mean", by="g")
    else:  # every optional part absent
        a = Attribution(tokens=["\ud800"], scores=np.array([[-0.0]]), target_tokens=["y"], target_positions=[None])
    b = Attribution.load(a.save(tmp_path / f"a{suffix}"))
    _assert_same_attribution(b, a)
    _assert_same_attribution(Attribution.from_dict(a.to_dict()), a)
    _assert_same_attribution(Attribution.load(b.save(tmp_path / f"b{suffix}")), a)  # stable when saved again


# ------------------------------------------------------------------------------------------ normalized
@pytest.mark.parametrize("how", ["max_abs", "row_max_abs", "row_sum_abs"])
def test_normalized_scales_by_the_finite_cells_and_keeps_infinities(how):
    """An infinite cell must not turn every other cell into 0 (x / inf) and itself into NaN (inf / inf)."""
    scores = np.array([[INF, 2.0, -4.0, NAN], [1.0, -INF, NAN, NAN], [NAN, NAN, NAN, NAN], [0.0, -0.0, 0.0, NAN]])
    got = _plain(tokens=list("abcd"), scores=scores, target_tokens=list("wxyz"),
                 target_positions=[None] * 4).normalized(how)
    want = np.full_like(scores, NAN)
    for i, row in enumerate(scores):
        finite = [abs(v) for v in row if np.isfinite(v)]
        if how == "max_abs":
            d = max(abs(v) for v in scores.ravel() if np.isfinite(v))
        elif how == "row_max_abs":
            d = max(finite) if finite else 0.0
        else:
            d = sum(finite)
        for j, v in enumerate(row):
            want[i, j] = v if not np.isfinite(v) or d == 0 else v / d
    _same(got, want)


# ------------------------------------------------------------------------------------------ traces
def test_trace_mean_of_opposite_infinities_stays_flagged():
    """+inf in one layer and -inf in another average to NaN; that cell must stay flagged as non-finite, not
    become 'not visible'."""
    base = _plain(tokens=["a", "b"], scores=np.zeros((1, 2)), target_tokens=["y"], target_positions=[None])
    t = AttributionTrace(base=base, scores=np.array([[[[INF, 1.0]], [[-INF, 2.0]]], [[[0.0, 1.0]], [[2.0, 2.0]]]]),
                         axes=["layer", "head"])
    by_head = t.mean("head")
    assert isinstance(by_head, AttributionTrace)
    plain = by_head.mean("layer")
    assert isinstance(plain, Attribution)
    assert plain.nonfinite_cells() == [(0, 0)]  # layer 1's finite mean fills the cell; it stays flagged
    np.testing.assert_array_equal(plain.scores, [[1.0, 1.5]])
    assert t.mean("head").select(layer=0).nonfinite_cells() == [(0, 0)]
    assert t.select(layer=1, head=0).nonfinite_cells() == []  # a slice of finite entries is not flagged


@pytest.mark.parametrize(("offset", "match"), [((0, 5), "lie beyond its source text of 2"), ((3, 1), "lie beyond"),
                                               ((-2, 1), "lie beyond"), (("0", "1"), r"\[start, end\]"),
                                               ((0,), r"\[start, end\]")])
def test_offsets_beyond_their_text_are_refused_on_construction(offset, match):
    """The loader refused them, the constructor did not, and aggregate then crashed with an IndexError."""
    with pytest.raises(InputError, match=match):
        Attribution(tokens=["a", "b"], scores=np.ones((1, 2)), target_tokens=["y"], target_positions=[None],
                    offsets=[offset, None], text="ab")


@pytest.mark.parametrize("seed", range(30))
def test_top_k_matches_a_sort_written_out(seed):
    """+inf first, then finite descending (-0.0 ties 0.0), then -inf; NaN never; ties to the lowest position."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    row = rng.choice([INF, -INF, NAN, 0.0, -0.0, 1.0, -1.0, 2.5], size=n)
    a = _plain(tokens=[str(j) for j in range(n)], scores=row[None, :], target_tokens=["y"], target_positions=[None])

    def key(j: int) -> tuple[int, float, int]:
        v = float(row[j])
        return (0, 0.0, j) if v == INF else (2, 0.0, j) if v == -INF else (1, -v + 0.0, j)

    want = sorted((j for j in range(n) if row[j] == row[j]), key=key)
    for k in range(n + 2):
        assert a.top_k(0, k) == want[:k]


@pytest.mark.parametrize("fixture", ["gpt2", "bart", "t5", "bert"])
def test_word_aggregation_of_real_results_against_a_loop(request, fixture):
    """Real results of every model kind: words never straddle segments, each word's score is the loop-computed
    sum of its visible tokens, target positions land on the word holding the target, and aggregating the words
    again by words changes nothing."""
    import seqexplain as se

    model, tok = request.getfixturevalue(fixture)
    target = None if fixture == "bert" else "the dog ran"  # the classifier explains its own label
    a = se.explain(model, "the cat sat on the mat", target, method="grad_x_input", tokenizer=tok)
    words = a.aggregate("sum")
    part = a.partition("words")
    for g, members in enumerate(part):
        assert len({a.segments[j] for j in members}) == 1
        for i in range(a.shape[0]):
            seen = [float(a.scores[i, j]) for j in members if not np.isnan(a.scores[i, j])]
            if seen:
                assert words.scores[i, g] == pytest.approx(sum(seen), rel=1e-12, abs=1e-15)
            else:
                assert np.isnan(words.scores[i, g])
    owner = {j: g for g, members in enumerate(part) for j in members}
    assert words.target_positions == [None if p is None else owner[p] for p in a.target_positions]
    again = words.aggregate("sum")
    _same(again.scores, words.scores)
    assert again.tokens == words.tokens and again.aggregation["of"] == words.aggregation


def test_to_dict_and_from_dict_do_not_share_mutable_parts():
    a = _full()
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


def test_an_aggregated_result_shares_nothing_mutable_with_its_source():
    a = _full()
    before = json.dumps(a.to_dict(), sort_keys=True)
    b = a.aggregate("sum", by=[[1, 3]])
    b.options["k"].append(9)
    b.meta["x"]["y"].append(9)
    b.rationale.meta["forwards"] = 99  # type: ignore[union-attr]
    b.rationale.log[0][0]["added_tokens"].append("z")  # type: ignore[union-attr]
    assert json.dumps(a.to_dict(), sort_keys=True) == before
