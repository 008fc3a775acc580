"""The paper recipes' resumable record store (seqexplain.runs.records.RecordStore)."""

from __future__ import annotations

import json
import os

import pytest

from seqexplain.errors import InputError
from seqexplain.runs.records import RecordStore


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_resumes_and_drops_a_cut_last_line_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    store = RecordStore(path)
    store.add({"key": "x:greedy", "value": 1})
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"key": "y:greedy", "val')  # a write cut by a kill
    again = RecordStore(path)
    assert "x:greedy" in again and "y:greedy" not in again and len(again) == 1
    again.add({"key": "y:greedy", "value": 2})  # the redone record starts a line of its own
    assert [json.loads(line)["key"] for line in _lines(path)] == ["x:greedy", "y:greedy"]
    assert RecordStore(path).get("y:greedy") == {"key": "y:greedy", "value": 2}


def test_a_later_record_replaces_an_earlier_one_and_unreadable_lines_warn(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "v": 1}\n{"key": "b", "v\n{"key": "a", "v": 3}\n', encoding="utf-8")
    with pytest.warns(RuntimeWarning, match="1 unreadable line"):
        store = RecordStore(path)
    assert store.get("a") == {"key": "a", "v": 3} and "b" not in store


def test_keys_carry_the_stamp_and_the_options(tmp_path):
    a, b = RecordStore(tmp_path / "r.jsonl", {"model": "m"}), RecordStore(tmp_path / "r.jsonl", {"model": "n"})
    assert a.key("x:greedy", {"max_size": 3}) != a.key("x:greedy", {"max_size": 4})
    assert a.key("x:greedy") != b.key("x:greedy") and a.key("x:greedy").startswith("x:greedy#")


def test_other_settings_are_refused_and_name_the_changed_keys(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    RecordStore(path, settings={"model": "m", "limit": 5}).add({"key": "k"})
    RecordStore(path, settings={"model": "m", "limit": 5})  # the same settings: fine
    with pytest.raises(InputError, match=r"other settings \(limit\)"):
        RecordStore(path, settings={"model": "m", "limit": 6})
    assert _lines(path) == ['{"key": "k"}']  # nothing lost


def test_a_path_that_is_not_a_regular_file_is_refused(tmp_path):
    (tmp_path / "real.jsonl").write_text("", encoding="utf-8")
    os.symlink(tmp_path / "real.jsonl", tmp_path / "link.jsonl")
    with pytest.raises(InputError):
        RecordStore(tmp_path / "link.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InputError):
        RecordStore(tmp_path / "dir.jsonl")


def _strict(line: str) -> dict:
    """Parse a line as standard JSON: the tokens NaN / Infinity / -Infinity are refused."""

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(line, parse_constant=refuse)


def test_non_finite_floats_are_written_as_standard_json_null(tmp_path):
    import numpy as np

    path = tmp_path / "r.jsonl"
    record = {"key": "d|m", "aopc": float("nan"), "up": float("inf"), "down": -np.inf, "ok": 0.25,
              "bins": [1.0, float("nan"), np.float64("nan")], "nested": {"deep": [{"x": float("-inf")}]},
              "spans": [(0, 2)], "flag": True, "none": None}
    store = RecordStore(path)
    store.add(record)
    lines = _lines(path)
    assert len(lines) == 1
    parsed = _strict(lines[0])  # a strict parser reads it
    want = {"key": "d|m", "aopc": None, "up": None, "down": None, "ok": 0.25, "bins": [1.0, None, None],
            "nested": {"deep": [{"x": None}]}, "spans": [[0, 2]], "flag": True, "none": None}
    assert parsed == want
    assert store.get("d|m") == want  # the same record in memory as after a restart
    assert RecordStore(path).get("d|m") == want


def test_an_older_file_with_nan_tokens_still_loads(tmp_path):
    import math

    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "aopc": NaN, "x": [Infinity, 1.0]}\n', encoding="utf-8")
    rec = RecordStore(path).get("a")
    assert rec is not None and math.isnan(rec["aopc"]) and rec["x"] == [float("inf"), 1.0]
