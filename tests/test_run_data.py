"""The examples a corpus run reads (:mod:`seqexplain.runs.data`), compared with an independent reading of the file."""

from __future__ import annotations

import csv
import json

import pytest

from seqexplain.runs.config import DataConfig
from seqexplain.runs.data import iter_items


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t")])
def test_csv_text_and_id_are_read_as_written(tmp_path, fmt, sep):
    """pandas' type inference would turn the id ``007`` into ``7`` and ``1e5`` into ``100000.0`` (so results no longer
    join with the data) and a text column of numerals into numbers (refused as "not a text"): the text and id
    fields are read as the file's strings, equal to Python's csv module's reading; the label keeps its inferred
    type (the class index 1)."""
    path = tmp_path / f"d.{fmt}"
    rows = [["id", "text", "label"], ["007", "42", "1"], ["1e5", "3.50", "0"], ["12", "0001", "1"]]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=sep).writerows(rows)
    with open(path, newline="", encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh, delimiter=sep))
    items = list(iter_items(DataConfig(format=fmt, path=str(path), target_field="label", id_field="id")))
    assert [(it.id, it.text) for it in items] == [(r["id"], r["text"]) for r in expected]
    assert [it.target for it in items] == [int(r["label"]) for r in expected]


def test_tsv_quotes_are_text(tmp_path):
    """A TSV row is a line and a quote character is text (SST and GLUE files are written so): CSV quoting merged
    three lines into one example (tabs, labels and newlines in its text) and dropped the quotes, silently. Oracle:
    each line split at its tab."""
    lines = ['"Great" movie , really\tPOS', '"Bad movie\tNEG', "okay film\tPOS", 'another " one\tNEG', "last one\tPOS"]
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    items = list(iter_items(DataConfig(format="tsv", path=str(path), target_field="label")))
    assert [(it.text, it.target, it.where) for it in items] == [
        (*line.split("\t"), f"{path}:{n}") for n, line in enumerate(lines, 2)]


def test_jsonl_with_a_byte_order_mark_is_read(tmp_path):
    """A UTF-8 byte order mark (as some Windows editors write) is read by ``datasets``; the line check before it
    refused the file as "malformed JSON" at line 1."""
    records = [{"text": "a fine film", "label": 1}, {"text": "dull", "label": 0}]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in records).encode())
    items = list(iter_items(DataConfig(format="jsonl", path=str(path), target_field="label")))
    assert [(it.text, it.target, it.where) for it in items] == [
        (r["text"], r["label"], f"{path}:{n}") for n, r in enumerate(records, 1)]


def test_jsonl_values_keep_the_type_they_are_written_with(tmp_path):
    """``datasets`` cast a label field that mixes ``"1"`` and ``1`` to one type (both became the index 1), so a
    label name was explained as an index, silently. Oracle: :func:`json.loads` of each line."""
    records = [{"text": "a fine film", "label": "1", "id": 7}, {"text": "dull", "label": 1, "id": "x"},
               {"text": "ok", "label": "positive", "id": 7.5}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    items = list(iter_items(DataConfig(format="jsonl", path=str(path), target_field="label", id_field="id")))
    assert [(it.target, type(it.target)) for it in items] == [(r["label"], type(r["label"])) for r in records]
    assert [it.id for it in items] == [str(r["id"]) for r in records]


def test_a_data_file_that_is_a_fifo_is_named_so(tmp_path):
    """It was "not found" (``Path.is_file`` is False for a FIFO), which sent the user looking for a typo."""
    import os

    from seqexplain.errors import DataError
    from seqexplain.runs.data import data_fingerprint

    path = tmp_path / "d.jsonl"
    os.mkfifo(path)
    with pytest.raises(DataError, match=r"d.jsonl is a FIFO \(named pipe\), not a regular file; set data.path"):
        data_fingerprint(DataConfig(format="jsonl", path=str(path)))
