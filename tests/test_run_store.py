"""The streaming Parquet store of a run: rows equal to one explain() call per example, atomic shards with their
metadata, resume that skips finished shards, a folder of another config refused, temporary files cleaned."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from run_helpers import canonical, config_dict, corpus, shard_tables, tiny_classifier, write_config

from seqexplain import explain, load_model
from seqexplain.errors import InputError
from seqexplain.metrics import faithfulness
from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run
from seqexplain.runs.store import RunStore


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("runstore")
    return tiny_classifier(base / "model"), corpus(base / "data.jsonl", 10), base


def _run(tmp_path, setup, name="out", **overrides):
    model, data, _ = setup
    cfg = read_config(write_config(tmp_path / f"{name}.yaml", config_dict(model, data, tmp_path / name, **overrides)))
    return cfg, run(cfg, progress=False)


def test_rows_match_one_explain_call_per_example(tmp_path, setup):
    cfg, result = _run(tmp_path, setup)
    assert result.n_shards == 3 and result.written == [0, 1, 2] and result.found == []
    table = pq.read_table(tmp_path / "out" / "results.parquet")
    assert table.num_rows == 10 * 3
    rows = {(r["index"], r["method"]): r for r in table.to_pylist()}
    wrapped = load_model(str(setup[0]))
    texts = [json.loads(line) for line in setup[1].read_text().splitlines()]
    for i in (0, 5, 9):
        for method in ("gradient_norm", "grad_x_input", "occlusion"):
            row = rows[(i, method)]
            oracle = explain(wrapped, texts[i]["text"], texts[i]["label"], method)
            assert row["tokens"] == oracle.tokens and row["id"] == f"ex{i}"
            np.testing.assert_allclose(np.array(row["scores"]), oracle.scores, rtol=1e-5, atol=1e-7)
            ex = wrapped.encode(texts[i]["text"], texts[i]["label"])
            f = faithfulness(wrapped, ex, oracle.scores, [10.0, 50.0])
            np.testing.assert_allclose(row["aopc_comprehensiveness"], f.aopc_comprehensiveness.mean(), atol=1e-6)
            # the gold rationale is the first word's characters: position 1 (after [CLS])
            assert row["gold_positions"] == [1]
            assert row["predicted_rationale"] is not None and 0 not in row["predicted_rationale"]  # [CLS] never
            agree = json.loads(row["agreement"])
            assert set(agree) == {"kendall_tau", "spearman", "top_k"} and method not in agree["kendall_tau"]
    # occlusion's score of a position is the comprehensiveness of removing it alone: where the 10 % bin holds one
    # position (at most 10 visible), the stored metric equals the stored top score
    short = [r for r in rows.values() if r["method"] == "occlusion" and len(r["tokens"]) <= 10]
    assert short
    for r in short:
        assert r["comprehensiveness"][0][0] == pytest.approx(np.nanmax(np.array(r["scores"][0], dtype=float)),
                                                              abs=1e-6)
    # the example's random baseline is in every method's row
    assert len({rows[(3, m)]["random_aopc_sufficiency"] for m in ("gradient_norm", "occlusion")}) == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_rows"] == 30 and [s["n_rows"] for s in manifest["shards"]] == [12, 12, 6]
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["config_hash"] == result.config_hash and run_json["run"]["seed"] == 3


def test_rerun_finds_every_shard_and_changes_nothing(tmp_path, setup):
    cfg, first = _run(tmp_path, setup)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}
    again = run(cfg, progress=False)
    assert again.written == [] and again.found == [0, 1, 2]
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "shards").iterdir()}


def test_resume_redoes_missing_and_damaged_shards_only(tmp_path, setup):
    cfg, _ = _run(tmp_path, setup)
    out = tmp_path / "out"
    reference = canonical(shard_tables(out))
    (out / "shards" / "shard-000001.parquet").unlink()
    damaged = out / "shards" / "shard-000002.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])  # not what an atomic write leaves, but a disk might
    (out / "shards" / ".shard-000000.parquet.abc.tmp").write_bytes(b"partial")
    # a kill while the merged file or a report was written leaves its temporary file in the folder itself
    for name in (".results.parquet.k3_x9abc.tmp", ".summary.md.q1w2e3r4.tmp", ".manifest-rank-1.json.abc.tmp"):
        (out / name).write_bytes(b"partial")
    (out / ".notes.tmp").write_text("the user's")  # not one of the run's files: kept
    again = run(cfg, progress=False)
    assert again.written == [1, 2] and again.found == [0]
    assert not [p for p in (out / "shards").iterdir() if p.name.endswith(".tmp")]
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == [".notes.tmp"]
    assert canonical(shard_tables(out)) == reference


def test_same_config_elsewhere_gives_equal_rows(tmp_path, setup):
    _run(tmp_path, setup, "a")
    _run(tmp_path, setup, "b")
    assert canonical(shard_tables(tmp_path / "a")) == canonical(shard_tables(tmp_path / "b"))


def test_folder_of_another_config_is_refused_and_kept(tmp_path, setup):
    _run(tmp_path, setup)
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(InputError, match="holds a run of another configuration"):
        _run(tmp_path, setup, seed=4)
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_shard_metadata_and_verification(tmp_path, setup):
    cfg, result = _run(tmp_path, setup)
    store = RunStore(tmp_path / "out", result.config_hash, 10, 4)
    info = store.shard_info(2)
    made = info.pop("run")
    assert info == {"config_hash": result.config_hash, "shard": 2, "n_rows": 6, "skipped": [], "format_version": 3}
    assert made.pop("precision") == {"device": "cpu", "dtype": "float32"}  # what the shard was computed in
    assert made == json.loads((tmp_path / "out" / "run.json").read_text())["run"]  # one invocation made both
    assert RunStore(tmp_path / "out", "other", 10, 4).shard_info(2) is None  # another run's shard is not done
    os.rename(store.shard_path(2), store.shard_path(1))  # shard 2's rows under shard 1's name
    assert store.shard_info(1) is None


def test_eraser_format_maps_evidence_to_model_tokens(tmp_path, setup):
    """An extracted ERASER tree (docs/ + test.jsonl): labels mapped by data.labels, evidence token spans become the
    model tokens they cover."""
    model = setup[0]
    tree = tmp_path / "movies"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "d1.txt").write_text("the film is great\nreally great fun\n")
    (tree / "test.jsonl").write_text(json.dumps({
        "annotation_id": "d1.txt", "classification": "POS", "docids": None, "query": "",
        "evidences": [[{"docid": "d1.txt", "start_token": 3, "end_token": 5, "text": "great really",
                        "start_sentence": -1, "end_sentence": -1}]]}) + "\n")
    cfg = config_dict(model, tree, tmp_path / "out", data={
        "format": "eraser", "path": str(tree), "split": "test", "target_field": "label", "labels": ["NEG", "POS"],
        "id_field": None, "rationale_field": None})
    run(read_config(write_config(tmp_path / "e.yaml", cfg)), progress=False)
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert {r["id"] for r in rows} == {"d1.txt"} and {r["target"] for r in rows} == {'"POS"'}
    row = rows[0]
    assert row["target_tokens"] == ["positive"]  # "POS" is label 1 of the model
    assert [row["tokens"][j] for j in row["gold_positions"]] == ["great", "really"]


def test_a_resumed_run_records_what_made_each_shard(tmp_path, setup):
    """A run stopped after its first shard and resumed with another thread count (not result-defining, so the folder
    is accepted): ``run.json`` describes the first invocation only, so the shards of the second had no record of
    their threads or command. Each shard's metadata now holds the record of the invocation that wrote it, and
    ``manifest.json`` lists the distinct records with each shard's."""
    import torch

    model, data, _ = setup
    raw = config_dict(model, data, tmp_path / "out", threads=1, methods=[{"name": "gradient_norm"}],
                      metrics={"faithfulness": {"enabled": False}})
    cfg = read_config(write_config(tmp_path / "c.yaml", raw))

    class Stop(Exception):
        pass

    def stop(shard):
        raise Stop

    before = torch.get_num_threads()
    try:
        with pytest.raises(Stop):
            run(cfg, progress=False, command="first", shard_hook=stop)
        result = run(cfg.model_copy(update={"threads": 2}), progress=False, command="second")
    finally:
        torch.set_num_threads(before)
    assert result.written == [1, 2] and result.found == [0]
    shards = sorted((tmp_path / "out" / "shards").glob("shard-*.parquet"))
    made = [json.loads(pq.read_metadata(p).metadata[b"seqexplain"])["run"] for p in shards]
    assert [(m["command"], m["threads"], m["seed"]) for m in made] == [("first", 1, 3), *[("second", 2, 3)] * 2]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["runs"] == [made[0], made[1]] and [s["run"] for s in manifest["shards"]] == [0, 1, 1]
