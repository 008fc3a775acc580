"""An adversarial audit of ``seqexplain run``: user mistakes that gave a traceback, and changes between an
interrupted run and its resume, or data quirks, that gave silently wrong rows. Each test failed before its fix.

The independent oracle of the faithfulness numbers runs the Hugging Face model directly (no seqexplain code):
comprehensiveness with ``removal = "replace"`` is ``log p(y | x) − log p(y | x with the top-k tokens → [MASK])``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from run_helpers import CLI_ENV, canonical, config_dict, corpus, run_cli, shard_tables, tiny_classifier, write_config
from typer.testing import CliRunner

import seqexplain.runs.runner as runner
from seqexplain.cli import app
from seqexplain.errors import DataError, InputError
from seqexplain.runs.config import read_config
from seqexplain.runs.records import RecordStore
from seqexplain.runs.runner import run
from seqexplain.runs.store import RunStore
from seqexplain.runs.summary import summarize


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_classifier(tmp_path_factory.mktemp("audit") / "model")


def _one_error(code: int, output: str, expected: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and expected in errors[0], output
    assert "Traceback" not in output


def _config(tmp_path: Path, model_dir: Path, data: Path, /, name: str = "c.yaml", **overrides) -> Path:
    return write_config(tmp_path / name, config_dict(model_dir, data, tmp_path / "out", **overrides))


# ----------------------------------------------------------------------------------------- the data file
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_data_that_is_not_utf8_names_the_file_and_line(tmp_path, model, fmt):
    """A Latin-1 byte in the data was a UnicodeDecodeError traceback."""
    if fmt == "jsonl":
        data = tmp_path / "d.jsonl"
        data.write_bytes(b'{"text": "a film", "label": 1, "id": "a"}\n{"text": "caf\xe9", "label": 0, "id": "b"}\n')
    else:
        data = tmp_path / "d.csv"
        data.write_bytes(b'text,label,id\n"a film",1,a\n"caf\xe9",0,b\n')
    cfg = _config(tmp_path, model, data, data={"format": fmt, "path": str(data), "rationale_field": None})
    line = 2 if fmt == "jsonl" else 3  # the CSV's header is line 1
    with pytest.raises(DataError, match=rf"d.{fmt}:{line}: not UTF-8 \(byte 0xe9"):
        run(read_config(cfg), progress=False)
    _one_error(*run_cli(cfg), f"d.{fmt}:{line}: not UTF-8")


def test_a_null_target_is_refused_not_explained_as_the_prediction(tmp_path, model):
    """``"label": null`` explained the model's own prediction for that example alone, with no word."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a film", "label": 1, "id": "a"}\n\n{"text": "a dull film", "label": null, "id": "b"}\n')
    cfg = _config(tmp_path, model, data, data={"rationale_field": None})
    with pytest.raises(DataError, match=r"d.jsonl:3: field 'label' is null"):
        run(read_config(cfg), progress=False)
    _one_error(*run_cli(cfg), "d.jsonl:3: field 'label' is null")
    assert not (tmp_path / "out").exists()


def test_parquet_rows_are_named_counting_from_one(tmp_path, model):
    """A Parquet file has no lines: its records are named by row, counting from 1 as the JSONL and CSV lines do
    (the message said row 1 for the second row)."""
    import pyarrow as pa

    data = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a film", "a dull film"], "label": [1, None], "id": ["a", "b"]}), data)
    cfg = _config(tmp_path, model, data, data={"format": "parquet", "path": str(data), "rationale_field": None})
    expected = "d.parquet row 2 (of rows counted from 1): field 'label' is null"
    with pytest.raises(DataError, match=re.escape(expected)):
        run(read_config(cfg), progress=False)
    _one_error(*run_cli(cfg), expected)


def test_a_faithfulness_replacement_outside_the_vocabulary_is_one_line(tmp_path, model):
    """``metrics.faithfulness.replace_with`` past the vocabulary was an IndexError traceback from the embedding
    layer (exit 1); the same id as a method option already was one line."""
    data = corpus(tmp_path / "d.jsonl", 2)
    cfg = _config(tmp_path, model, data, metrics={"faithfulness": {"removal": "replace", "replace_with": 99_999_999}})
    _one_error(*run_cli(cfg), "replace_with=99999999 is outside the vocabulary")


def test_an_unreadable_text_is_skipped_with_its_reason(tmp_path, model):
    """A text with nothing the tokenizer reads (zero-width spaces: [CLS] [SEP] only) stopped the whole run at its
    shard, and fixing the text then made the folder another configuration; it is skipped and listed with its
    reason, as a too-long example is, and the others are explained."""
    data = tmp_path / "d.jsonl"
    texts = ["a fine film", "\u200b\u200b", "a dull film", "\u200b", "   ", ""]  # blank texts stopped the run too
    data.write_text("".join(json.dumps({"text": t, "label": i % 2, "id": f"e{i}"}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    cfg = _config(tmp_path, model, data, data={"rationale_field": None}, output={"report": True})
    code, output = run_cli(cfg)
    said = " ".join(output.split())
    assert code == 0 and "4 example(s) were skipped: 4 with nothing the tokenizer reads" in said, output
    assert "--truncate" not in said  # cutting cannot help an unreadable text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    skipped = {s["id"]: s["reason"] for sh in manifest["shards"] for s in sh["skipped"]}
    assert skipped.keys() == {"e1", "e3", "e4", "e5"}
    assert all(r.startswith("unreadable: the text") for r in skipped.values())
    assert "special tokens only" in skipped["e1"] and "the text is empty" in skipped["e4"]
    assert manifest["n_rows"] == 3 * 2  # three methods, two readable examples
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "- skipped (unreadable text): 4\n" in summary and "- skipped (too long): 0\n" in summary


def test_a_distributed_run_says_its_counts_are_this_rank_s(tmp_path, model, monkeypatch):
    """Under torchrun, rank 0 printed "5 written now" for a run whose two ranks wrote all 10 shards."""
    data = corpus(tmp_path / "d.jsonl", 2)
    cfg = _config(tmp_path, model, data)

    def two_ranks(cfg, **_):
        return runner.RunResult(tmp_path / "out", "f" * 64, 40, 10, rank=0, world=2, written=[0, 2, 4, 6, 8])

    monkeypatch.setattr(runner, "run", two_ranks)
    code, output = run_cli(cfg)
    assert code == 0 and "5 written now by this process (rank 0 of 2" in " ".join(output.split()), output


def test_data_labels_must_cover_the_data(tmp_path, model):
    """A target that is not one of data.labels fell back to a lookup among the model's label names, silently (so
    a mapping in another order or case explained other labels); an empty list was accepted."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a film", "label": "pos", "id": "a"}\n'
                    '{"text": "a dull film", "label": "NEG", "id": "b"}\n')
    cfg = _config(tmp_path, model, data, data={"rationale_field": None, "labels": ["neg", "pos"]})
    _one_error(*run_cli(cfg), "d.jsonl:2: target 'NEG' is not one of data.labels ['neg', 'pos']")
    cfg = _config(tmp_path, model, data, "c2.yaml", data={"rationale_field": None, "labels": []})
    _one_error(*run_cli(cfg), "data.labels")


def test_a_file_that_is_not_parquet_is_one_line(tmp_path, model):
    """datasets logged "Failed to read schema ..." on its own line before the error."""
    data = tmp_path / "d.parquet"
    data.write_bytes(b"hello")
    cfg = _config(tmp_path, model, data, data={"format": "parquet", "path": str(data), "rationale_field": None})
    code, output = run_cli(cfg)
    _one_error(code, output, "d.parquet: cannot read it as parquet")
    assert "Failed to read schema" not in output


def test_duplicate_ids_are_refused_naming_both_lines(tmp_path, model):
    """Two examples with one id gave rows that no join on ``id`` can tell apart."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a film", "label": 1, "id": "x"}\n{"text": "b film", "label": 0, "id": "y"}\n'
                    '{"text": "c film", "label": 0, "id": "x"}\n')
    cfg = _config(tmp_path, model, data, data={"rationale_field": None})
    with pytest.raises(DataError, match=r"d.jsonl:3: id 'x' repeats the id of .*d.jsonl:1"):
        run(read_config(cfg), progress=False)
    _one_error(*run_cli(cfg), "repeats the id")


def test_a_folder_as_data_path_says_so(tmp_path, model):
    cfg = _config(tmp_path, model, tmp_path)
    _one_error(*run_cli(cfg), "is a folder, not a file")


# ---------------------------------------------------------------------------------- the configuration
def test_config_that_is_not_utf8_or_a_folder_is_one_line(tmp_path):
    """A config file with a Latin-1 byte was a UnicodeDecodeError traceback; a folder was "not found"."""
    bad = tmp_path / "c.yaml"
    bad.write_bytes(b"seed: 1  # caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_config(bad)
    _one_error(*run_cli(bad), "c.yaml")
    _one_error(*run_cli(tmp_path), "is a folder")


def test_seed_outside_0_to_2_31_is_refused(tmp_path, model):
    """A negative seed (config or ``--seed``) ran until numpy raised ``ValueError`` — a traceback."""
    data = corpus(tmp_path / "d.jsonl", 2)
    _one_error(*run_cli(_config(tmp_path, model, data, seed=-5)), "seed")
    code, output = run_cli(_config(tmp_path, model, data, name="ok.yaml"), "--seed", "-1")
    _one_error(code, output, "--seed")
    assert not (tmp_path / "out").exists()


def test_a_bad_device_writes_nothing_and_a_failed_start_does_not_block_the_fixed_config(tmp_path, model):
    """``device = "gpu"`` failed after ``run.json`` was written, so the corrected configuration was then refused as
    "another configuration" for a folder holding no result."""
    data = corpus(tmp_path / "d.jsonl", 4)
    _one_error(*run_cli(_config(tmp_path, model, data, model={"path": str(model), "device": "gpu"})), "not a device")
    assert not (tmp_path / "out" / "run.json").exists()
    # a start that failed later (here: the model folder was missing) left run.json and no shard
    _one_error(*run_cli(_config(tmp_path, model, data, name="m.yaml", model={"path": str(tmp_path / "nomodel")})),
               "does not exist")
    code, output = run_cli(_config(tmp_path, model, data, name="ok.yaml"))
    assert code == 0, output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["n_rows"] == 12


# ------------------------------------------------------------------------------------------- resume
def test_model_weights_changed_in_place_are_another_configuration(tmp_path, model):
    """Weights saved again into the model folder (same file names and sizes: a further fine-tune) had the same
    fingerprint, so a resumed run mixed shards of two models."""
    import shutil

    from transformers import BertForSequenceClassification

    mine = shutil.copytree(model, tmp_path / "model")
    data = corpus(tmp_path / "d.jsonl", 8)
    cfg = _config(tmp_path, mine, data)
    run(read_config(cfg), progress=False)
    (tmp_path / "out" / "shards" / "shard-000001.parquet").unlink()  # an interrupted run
    changed = BertForSequenceClassification.from_pretrained(mine)
    with torch.no_grad():
        for p in changed.parameters():
            p.mul_(1.5)
    changed.save_pretrained(mine)
    with pytest.raises(InputError, match="another configuration"):
        run(read_config(cfg), progress=False)


def test_ctrl_c_is_a_clean_resumable_stop(tmp_path, model, monkeypatch):
    """Ctrl-C mid-run: one line saying how to resume, no traceback; the rerun equals an uninterrupted run."""
    data = corpus(tmp_path / "d.jsonl", 8)
    cfg = _config(tmp_path, model, data)
    real = runner._do_shard

    def interrupted(cfg, store, wrapped, s, items, record):
        if s == 1:
            raise KeyboardInterrupt
        return real(cfg, store, wrapped, s, items, record)

    monkeypatch.setattr(runner, "_do_shard", interrupted)
    code, output = run_cli(cfg)
    assert code == 130 and "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "rerun" in lines[0], output
    monkeypatch.setattr(runner, "_do_shard", real)
    code, output = run_cli(cfg)
    assert code == 0 and "1 written now, 1 found finished" in output, output
    whole = _config(tmp_path, model, data, name="whole.yaml", output={"dir": str(tmp_path / "whole"), "report": False})
    run(read_config(whole), progress=False)
    assert canonical(shard_tables(tmp_path / "out")) == canonical(shard_tables(tmp_path / "whole"))


def test_a_resume_with_another_world_size_lists_only_its_own_ranks(tmp_path, model):
    """Two ranks, then one process resuming: ``manifest.json`` listed the stale ``manifest-rank-1.json`` of the
    two-rank run beside rank 0 of the one-process run. Every example is in the merged file once, in order."""
    from test_run_distributed import _fork_ranks

    data = corpus(tmp_path / "d.jsonl", 10)
    cfg = _config(tmp_path, model, data)
    assert _fork_ranks([cfg, cfg], tmp_path) == [(0, ""), (0, "")]
    (tmp_path / "out" / "shards" / "shard-000001.parquet").unlink()
    result = run(read_config(cfg), progress=False)
    assert result.written == [1]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(r["rank"], r["world_size"]) for r in manifest["ranks"]] == [(0, 1)]
    index = pq.read_table(tmp_path / "out" / "results.parquet", columns=["index"]).column("index").to_pylist()
    assert index == [i for i in range(10) for _ in range(3)]


# ------------------------------------------------------------------------------------------- numbers
def test_comprehensiveness_matches_the_model_run_by_hand(tmp_path, model):
    """Independent oracle: the Hugging Face model with the top ``ceil(k%·L)`` positions of each row's scores
    replaced by ``[MASK]`` (``removal = "replace"``), target = the example's label; then the summary's mean."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    data = corpus(tmp_path / "d.jsonl", 6)
    bins = [10.0, 50.0]
    cfg = read_config(_config(tmp_path, model, data, methods=[{"name": "gradient_norm"}, {"name": "grad_x_input"}],
                              metrics={"faithfulness": {"random_repeats": 1, "bins": bins, "removal": "replace"}}))
    result = run(cfg, progress=False)
    hf = BertForSequenceClassification.from_pretrained(model).eval()
    tok = AutoTokenizer.from_pretrained(model)
    records = [json.loads(line) for line in data.read_text().splitlines()]
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert len(rows) == 12
    per_method: dict[str, list[float]] = {}
    for row in rows:
        ids = tok(records[row["index"]]["text"], return_tensors="pt")["input_ids"]
        label = records[row["index"]]["label"]
        scores = np.array(row["scores"][0], dtype=np.float64)
        order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))

        def logp(x: torch.Tensor, label: int = label) -> float:
            with torch.no_grad():
                return float(torch.log_softmax(hf(input_ids=x).logits[0].double(), -1)[label])

        curve = []
        for k in bins:
            masked = ids.clone()
            masked[0, order[:max(1, math.ceil(k / 100 * len(scores)))]] = tok.mask_token_id
            curve.append(logp(ids) - logp(masked))
        assert row["comprehensiveness"][0] == pytest.approx(curve, abs=1e-5)
        per_method.setdefault(row["method"], []).append(float(np.mean(curve)))
    summary = summarize(RunStore(tmp_path / "out", result.config_hash, 6, 4), cfg, 0)
    for method, values in per_method.items():
        assert summary.faithfulness[method]["aopc_comprehensiveness"] == pytest.approx(np.mean(values), abs=1e-5)


# --------------------------------------------------------------------------------- the record store
def test_record_store_with_a_damaged_settings_file_is_one_line(tmp_path):
    """A settings file edited into invalid JSON was a JSONDecodeError traceback."""
    RecordStore(tmp_path / "r.jsonl", settings={"model": "a"})
    (tmp_path / "r.jsonl.settings.json").write_text("{not json")
    with pytest.raises(InputError, match="r.jsonl.settings.json"):
        RecordStore(tmp_path / "r.jsonl", settings={"model": "a"})


def test_weight_files_are_fingerprinted_whole(tmp_path):
    """Every byte of the weights counts: a change of one byte anywhere (first, middle, last: a small tensor such as a
    retrained head) is another model; a copy elsewhere is the same model."""
    import seqexplain.runs.config as config

    content = bytearray(66 << 20)  # larger than a sampling fingerprint would read whole
    content[:4096] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    prints = []
    for n, where in enumerate([0, None, len(content) // 2 + 200_000, len(content) - 1]):
        folder = tmp_path / f"m{n}"
        folder.mkdir()
        changed = bytearray(content)
        if where is not None:
            changed[where] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(changed))
        prints.append(config.model_fingerprint(config.ModelConfig(path=str(folder))))
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "model.safetensors").write_bytes(bytes(content))
    copy = config.model_fingerprint(config.ModelConfig(path=str(tmp_path / "copy")))
    assert len(set(prints)) == 4 and copy == prints[1]


@pytest.mark.parametrize("content", [b"", b"\n \n"])
def test_an_empty_jsonl_file_holds_no_examples(tmp_path, model, content):
    """A 0-byte JSONL file was a ``RuntimeError: generator raised StopIteration`` traceback from ``datasets``."""
    data = tmp_path / "d.jsonl"
    data.write_bytes(content)
    _one_error(*run_cli(_config(tmp_path, model, data)), "holds no examples")
    assert not (tmp_path / "out").exists()


def test_progress_bar_counts_examples(tmp_path, model):
    data = corpus(tmp_path / "d.jsonl", 4)
    result = CliRunner().invoke(app, ["run", str(_config(tmp_path, model, data))], env=CLI_ENV)
    assert result.exit_code == 0, result.output
    assert "seqexplain run: 100%" in result.output and "4/4" in result.output


def _edit_data(tmp_path: Path, model_dir: Path, data: Path) -> dict:
    data.write_text(data.read_text().replace("delight", "del1ght"))  # the same length, edited in place
    return {}


@pytest.mark.parametrize("change", [
    lambda t, m, d: {"methods": [{"name": "gradient_norm"}, {"name": "grad_x_input"},
                                 {"name": "occlusion", "options": {"token_budget": 2048}}]},
    _edit_data,
    lambda t, m, d: {"data": {"target_field": None}},
    lambda t, m, d: {"data": {"labels": ["0", "1"]}},
    lambda t, m, d: {"data": {"truncate": True}},
    lambda t, m, d: {"metrics": {"faithfulness": {"random_repeats": 2, "bins": [20.0]}}},
], ids=["method-option", "data-edited", "target", "labels", "truncate", "bins"])
def test_an_interrupted_run_resumed_with_a_change_is_refused_and_kept(tmp_path, model, change):
    data = corpus(tmp_path / "d.jsonl", 6)
    cfg = _config(tmp_path, model, data)
    run(read_config(cfg), progress=False)
    (tmp_path / "out" / "shards" / "shard-000001.parquet").unlink()
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".lock"}
    changed = _config(tmp_path, model, data, name="changed.yaml", **change(tmp_path, model, data))
    _one_error(*run_cli(changed), "holds a run of another configuration")
    assert before == {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix != ".lock"}


@pytest.mark.parametrize("version, says", [(2, "made by an earlier seqexplain (run format 2)"),
                                           (None, "made by an earlier seqexplain (run format 1)"),
                                           (3, "holds a run of another configuration")])
def test_a_folder_of_the_earlier_fingerprint_names_why_it_is_refused(tmp_path, version, says):
    """Runs made before the fingerprint read the weights have another config hash whatever their model: the refusal
    says so instead of suggesting the configuration changed."""
    folder = tmp_path / "out"
    (folder / "shards").mkdir(parents=True)
    (folder / "shards" / "shard-00000.parquet").write_bytes(b"")
    body = {"config_hash": "0" * 64, "n_items": 4}
    if version is not None:
        body["format_version"] = version
    (folder / "run.json").write_text(json.dumps(body))
    with pytest.raises(InputError, match=re.escape(says)):
        RunStore.open(folder, "1" * 64, {}, 4, 2, {})
