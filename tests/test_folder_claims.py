"""Folder claims with the data's fingerprint (:mod:`seqexplain.runs.claims`): a rerun on other data into a folder
whose models it would reuse is refused, the same data in another place is not, and a folder claimed before the data
were recorded keeps working with a stored warning. End to end on snell2021 with hand-written AG News files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from seqexplain.cli import app
from seqexplain.errors import InputError
from seqexplain.runs.claims import DATA_KEY, LATE_KEY, claim_folder, data_fingerprint


def test_data_fingerprint_is_the_sha256_of_the_items_json():
    items = [[["a", "good", "film"], 1], [["bad"], 0]]
    oracle = hashlib.sha256(b'[[["a", "good", "film"], 1], [["bad"], 0]]').hexdigest()
    assert data_fingerprint(items) == oracle
    assert data_fingerprint([(["a", "good", "film"], 1), (["bad"], 0)]) == oracle  # tuples as lists
    assert data_fingerprint([[["a", "good", "film"], 0], [["bad"], 0]]) != oracle  # one label


def test_a_folder_claimed_before_the_data_were_recorded_warns_then_checks_them(tmp_path):
    path = tmp_path / "out" / "training.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"seed": 0}), encoding="utf-8")  # what an earlier version recorded
    with pytest.warns(UserWarning, match=f"claimed before {DATA_KEY} was recorded"):
        notes = claim_folder(path, {"seed": 0, DATA_KEY: "d1"}, "test models")
    assert len(notes) == 1 and DATA_KEY in notes[0]
    assert json.loads(path.read_text(encoding="utf-8")) == {"seed": 0, DATA_KEY: "d1", LATE_KEY: [DATA_KEY]}
    with pytest.warns(UserWarning, match="could not be checked"):  # every later run says so too
        assert claim_folder(path, {"seed": 0, DATA_KEY: "d1"}, "test models") == notes
    with pytest.raises(InputError, match=rf"other training \({DATA_KEY}: the data read now.*--data-root.*\); use"):
        claim_folder(path, {"seed": 0, DATA_KEY: "d2"}, "test models")
    with pytest.raises(InputError, match=r"other training \(seed\)"):  # the old keys are still checked
        claim_folder(path, {"seed": 1, DATA_KEY: "d1"}, "test models")
    fresh = tmp_path / "fresh" / "training.json"  # a folder claimed with its data: no warning
    assert claim_folder(fresh, {"seed": 0, DATA_KEY: "d1"}, "test models") == []
    assert claim_folder(fresh, {"seed": 0, DATA_KEY: "d1"}, "test models") == []
    assert LATE_KEY not in json.loads(fresh.read_text(encoding="utf-8"))


def _ag_news(root: Path, flip: int | None = None) -> Path:
    """``root/ag_news/test.csv`` with 40 short hand-written rows (4 topics); ``flip``: that row's class changed."""
    words = {1: "vote minister election party", 2: "match goal team season", 3: "stock market shares profit",
             4: "software chip computer internet"}
    rows = []
    for i in range(40):
        label = i % 4 + 1
        if i == flip:
            label = label % 4 + 1
        rows.append(f'"{label}","title {i % 5}","{words[i % 4 + 1]} news {i % 3}"')
    (root / "ag_news").mkdir(parents=True)
    (root / "ag_news" / "test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


ARGS = ["reproduce", "snell2021", "agnews", "--quick", "--steps", "4", "--checkpoint-every", "2",
        "--checkpoint-steps", "2", "--max-eval", "3", "--threads", "1"]


def test_snell2021_rerun_on_other_data_is_refused(runner, tmp_path):
    """Before the claim held the data, the second run reused the first run's models, dumps and baselines."""
    out = tmp_path / "out"
    first = runner.invoke(app, [*ARGS, "--out", str(out), "--data-root", str(_ag_news(tmp_path / "a"))])
    assert first.exit_code == 0, first.output
    claim = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert set(claim) == {"experiment", "seed", "settings", DATA_KEY}
    # another copy of the data, one training label changed (row 10 of 40 is in the 80% training part)
    other = runner.invoke(app, [*ARGS, "--out", str(out), "--data-root", str(_ag_news(tmp_path / "b", flip=10))])
    assert other.exit_code == 2 and DATA_KEY in other.output and "--out" in other.output
    assert "Traceback" not in other.output
    # the same data moved elsewhere is the same data
    moved = runner.invoke(app, [*ARGS, "--out", str(out), "--data-root", str(_ag_news(tmp_path / "c"))])
    assert moved.exit_code == 0, moved.output
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["warnings"] == []


def test_snell2021_folder_claimed_before_the_data_keeps_working_with_a_warning(tmp_path):
    from seqexplain.experiments.snell2021 import run

    out = tmp_path / "out"
    root = _ag_news(tmp_path / "a")
    opts = {"quick": True, "steps": 4, "checkpoint_every": 2, "checkpoint_steps": (2,), "max_eval": 3,
            "progress": False}
    run("agnews", out, data_root=root, **opts)
    claim = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    digest = claim.pop(DATA_KEY)
    (out / "settings.json").write_text(json.dumps(claim), encoding="utf-8")  # as claimed before this change
    with pytest.warns(UserWarning, match="could not be checked"):
        res = run("agnews", out, data_root=root, **opts)
    assert len(res["warnings"]) == 1 and DATA_KEY in res["warnings"][0]
    assert "**warning:**" in (out / "results.md").read_text(encoding="utf-8")
    assert json.loads((out / "settings.json").read_text(encoding="utf-8"))[DATA_KEY] == digest
    with pytest.raises(InputError, match=DATA_KEY):
        run("agnews", out, data_root=_ag_news(tmp_path / "b", flip=10), **opts)
