"""Bad input to ``seqexplain run``: each a one-line error with exit status 2 (API: a SeqExplainError), and
nothing already written lost."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import canonical, config_dict, corpus, run_cli, shard_tables, tiny_classifier, write_config

from seqexplain.errors import DataError
from seqexplain.runs.config import read_config
from seqexplain.runs.runner import run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_classifier(tmp_path_factory.mktemp("badrun") / "model")


def _one_error_line(output: str, expected: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output


def _snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file but the folder lock (which records the last process that asked for it)."""
    if not folder.exists():
        return {}
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".seqexplain.lock"}


def test_rationale_span_outside_the_text(tmp_path, model):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a fine film", "label": 1, "rationale": [[0, 1]]}\n\n'
                    '{"text": "dull", "label": 0, "rationale": [[2, 40]]}\n')
    cfg = write_config(tmp_path / "c.yaml", config_dict(model, data, tmp_path / "out", data={
        "format": "jsonl", "path": str(data), "target_field": "label", "rationale_field": "rationale",
        "id_field": None}))
    with pytest.raises(DataError, match=r"d.jsonl:3: rationale span \[2, 40\] is outside the text"):
        run(read_config(cfg), progress=False)
    code, out = run_cli(cfg)
    assert code == 2
    _one_error_line(out, "d.jsonl:3: rationale span [2, 40] is outside the text (0..4 characters)")
    assert not (tmp_path / "out").exists()


def test_eraser_evidence_outside_the_document(tmp_path, model):
    tree = tmp_path / "movies"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "d1.txt").write_text("a short review\n")
    (tree / "test.jsonl").write_text(json.dumps({
        "annotation_id": "d1.txt", "classification": "POS", "docids": None, "query": "",
        "evidences": [[{"docid": "d1.txt", "start_token": 2, "end_token": 9, "text": "review",
                        "start_sentence": -1, "end_sentence": -1}]]}) + "\n")
    cfg = write_config(tmp_path / "e.yaml", config_dict(model, tree, tmp_path / "out", data={
        "format": "eraser", "path": str(tree), "target_field": "label", "labels": ["NEG", "POS"], "id_field": None,
        "rationale_field": None}))
    code, out = run_cli(cfg)
    assert code == 2
    _one_error_line(out, "test.jsonl line 1: evidence span [2, 9) is outside document 'd1.txt' (3 tokens)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change,expected", [
    ({"methods": [{"name": "telepathy"}]}, "methods.0: unknown method 'telepathy'"),
    ({"metrics": {"fidelity": {}}}, "metrics.fidelity: unknown key"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"data": {"format": "jsonl", "path": "x.jsonl", "text_colum": "t"}}, "data.text_colum: unknown key"),
])
def test_config_with_unknown_names(tmp_path, model, change, expected):
    cfg = write_config(tmp_path / "c.yaml", config_dict(model, tmp_path / "d.jsonl", tmp_path / "out", **change))
    code, out = run_cli(cfg)
    assert code == 2
    _one_error_line(out, f"c.yaml: {expected}")


def test_output_folder_of_another_config(tmp_path, model):
    data = corpus(tmp_path / "d.jsonl", 4)
    run(read_config(write_config(tmp_path / "a.yaml", config_dict(model, data, tmp_path / "out"))), progress=False)
    before = _snapshot(tmp_path / "out")
    code, out = run_cli(write_config(tmp_path / "b.yaml", config_dict(model, data, tmp_path / "out", seed=11)))
    assert code == 2
    _one_error_line(out, "holds a run of another configuration")
    assert _snapshot(tmp_path / "out") == before
    code, out = run_cli(tmp_path / "a.yaml", "--seed", "12")  # --seed makes it another run too
    assert code == 2 and _snapshot(tmp_path / "out") == before


def _immutable(folder: Path) -> bool:
    folder.mkdir()
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return True
    folder.chmod(0o555)
    return not (folder / "probe").parent.stat().st_mode & 0o200 and not _writable(folder)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_unwritable_output_folder(tmp_path, model):
    out = tmp_path / "ro"
    if not _immutable(out):
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    try:
        cfg = write_config(tmp_path / "c.yaml", config_dict(model, corpus(tmp_path / "d.jsonl", 4), out))
        code, output = run_cli(cfg)
        assert code == 2
        _one_error_line(output, "ro")
        assert "writ" in output
    finally:
        subprocess.run(["chattr", "-i", str(out)], capture_output=True)
        out.chmod(0o755)


@pytest.mark.slow
def test_full_disk_keeps_finished_shards(tmp_path, model):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes writes fail like a full disk after run.json."""
    data = corpus(tmp_path / "d.jsonl", 8)
    cfg = write_config(tmp_path / "c.yaml", config_dict(model, data, tmp_path / "out"))
    run(read_config(cfg), progress=False)
    reference = canonical(shard_tables(tmp_path / "out"))
    (tmp_path / "out" / "shards" / "shard-000001.parquet").unlink()
    (tmp_path / "out" / "manifest.json").unlink()
    kept = (tmp_path / "out" / "shards" / "shard-000000.parquet").read_bytes()

    def limit() -> None:  # pragma: no cover - in the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    env = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "NO_COLOR": "1",
           "PYTHONDONTWRITEBYTECODE": "1",  # the size limit would truncate .pyc files it writes
           "COLUMNS": "400", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "seqexplain.cli", "run", str(cfg), "--no-progress"], env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    _one_error_line(proc.stderr, "File too large")
    shards = tmp_path / "out" / "shards"
    assert (shards / "shard-000000.parquet").read_bytes() == kept
    assert not [p for p in shards.iterdir() if p.name.endswith(".tmp")]
    run(read_config(cfg), progress=False)  # space again: the run finishes, equal to the uninterrupted one
    assert canonical(shard_tables(tmp_path / "out")) == reference


def test_malformed_rows_name_file_and_line(tmp_path, model):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "good", "label": 1}\n\n{"text": "fine", "label": 0}\n{"text": broken}\n')
    csv = tmp_path / "d.csv"
    csv.write_text('text,label\n"a, b",1\n\nc,0,extra\n')
    for data, fmt, expected in ((jsonl, "jsonl", "d.jsonl:4: malformed JSON"),
                                (csv, "csv", "d.csv:4: 3 fields but the header has 2")):
        cfg = write_config(tmp_path / f"{fmt}.yaml", config_dict(model, data, tmp_path / "out", data={
            "format": fmt, "path": str(data), "target_field": "label", "rationale_field": None, "id_field": None}))
        with pytest.raises(DataError, match=expected):
            run(read_config(cfg), progress=False)
        code, out = run_cli(cfg)
        assert code == 2
        _one_error_line(out, expected)
    assert not (tmp_path / "out").exists()
    missing = write_config(tmp_path / "m.yaml", config_dict(model, jsonl, tmp_path / "out", data={
        "format": "jsonl", "path": str(jsonl), "text_field": "sentence", "id_field": None, "rationale_field": None}))
    jsonl.write_text('{"text": "good", "label": 1}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: no field 'sentence'"):
        run(read_config(missing), progress=False)


def test_too_long_examples_skipped_with_a_count_or_truncated(tmp_path, model):
    from transformers import AutoTokenizer

    data = corpus(tmp_path / "d.jsonl", 8)
    tok = AutoTokenizer.from_pretrained(str(model))
    texts = [json.loads(line)["text"] for line in data.read_text().splitlines()]
    lengths = [len(tok(t)["input_ids"]) for t in texts]  # the oracle: the tokenizer itself
    limit = 8
    too_long = [i for i, n in enumerate(lengths) if n > limit]
    assert 0 < len(too_long) < 8
    cfg = write_config(tmp_path / "c.yaml", config_dict(model, data, tmp_path / "skip", data={"max_length": limit},
                                                              output={"report": True}))
    code, out = run_cli(cfg)
    assert code == 0, out
    assert f"warning: {len(too_long)} example(s) were skipped: {len(too_long)} too long (each listed" in out
    assert "rerun with --truncate and another --out" in out
    code, out = run_cli(cfg, "--truncate")  # the same folder: --truncate changes the result-defining configuration
    assert code == 2 and "holds a run of another configuration" in out
    manifest = json.loads((tmp_path / "skip" / "manifest.json").read_text())
    assert manifest["n_skipped"] == len(too_long)
    assert sorted(s["index"] for sh in manifest["shards"] for s in sh["skipped"]) == too_long
    assert manifest["n_rows"] == 3 * (8 - len(too_long))
    assert f"- skipped (too long): {len(too_long)}\n" in (tmp_path / "skip" / "summary.md").read_text()

    code, out = run_cli(cfg, "--truncate", "--out", tmp_path / "cut")
    assert code == 0, out
    rows = {r["index"]: r for t in shard_tables(tmp_path / "cut") for r in t.to_pylist()}
    assert sorted(rows) == list(range(8))
    for i in too_long:
        assert len(rows[i]["tokens"]) <= limit and any(w.startswith("truncated:") for w in rows[i]["warnings"])
    assert not any(rows[i]["warnings"] for i in rows if i not in too_long)
    summary = (tmp_path / "cut" / "summary.md").read_text()
    assert f"- truncated (tokens cut): {len(too_long)}\n" in summary and "- skipped (too long): 0\n" in summary


@pytest.mark.parametrize("field", ["label", "id", "rationale"])
def test_jsonl_record_without_a_configured_field(tmp_path, model, field):
    """``datasets`` fills a key one JSONL record lacks with null, which read as "no target" would silently explain
    the model's prediction for that record alone (and as id the text "None"): a missing field is refused, naming the
    line."""
    records = [{"text": "a fine film", "label": 1, "id": "a", "rationale": [[0, 1]]},
               {"text": "dull", "label": 0, "id": "b", "rationale": [[0, 4]]}]
    del records[1][field]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = write_config(tmp_path / "c.yaml", config_dict(model, data, tmp_path / "out"))
    with pytest.raises(DataError, match=rf"d.jsonl:2: no field '{field}'"):
        run(read_config(cfg), progress=False)
    code, out = run_cli(cfg)
    assert code == 2
    _one_error_line(out, f"d.jsonl:2: no field '{field}'")
    assert not (tmp_path / "out").exists()


def test_label_values_that_read_two_ways_are_refused_until_data_labels_says(tmp_path):
    """A model whose labels are the numerals "1", "2", "3" and a TSV label column of numerals: the value 1 is the
    index 1 ("2") or the label named "1" (index 0). The run used the index on every row, with a warning per row
    that told the user to write the name as a string, which a TSV cannot. It is refused naming the line and
    ``data.labels``; with ``data.labels`` each value names the label it lists."""
    import pyarrow.parquet as pq
    import torch
    from conftest import wordpiece_tokenizer
    from transformers import BertConfig, BertForSequenceClassification

    tok = wordpiece_tokenizer()
    torch.manual_seed(0)
    names = {0: "1", 1: "2", 2: "3"}
    cfg = BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=3, id2label=names,
                     label2id={v: k for k, v in names.items()})
    model_dir = tmp_path / "digits"
    BertForSequenceClassification(cfg).eval().save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "d.tsv"
    data.write_text("text\tlabel\na fine film\t2\na dull film\t1\n", encoding="utf-8")
    section = {"format": "tsv", "path": str(data), "target_field": "label", "rationale_field": None, "id_field": None}
    overrides = {"methods": [{"name": "gradient_norm"}], "metrics": {"faithfulness": {"enabled": False},
                                                                     "plausibility": {"enabled": False}}}
    bad = write_config(tmp_path / "bad.yaml", config_dict(model_dir, data, tmp_path / "out", data=section,
                                                          **overrides))
    code, out = run_cli(bad)
    assert code == 2
    _one_error_line(out, "d.tsv:2: target 2 reads both as the label index 2 ('3') and as the label named '2'; "
                         "set data.labels")
    good = write_config(tmp_path / "good.yaml", config_dict(
        model_dir, data, tmp_path / "out", data={**section, "labels": ["1", "2", "3"]}, **overrides))
    run(read_config(good), progress=False)
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [r["target_tokens"] for r in rows] == [["2"], ["1"]]
