"""The ERASER reader on a hand-written archive / folder, and on the real movies archive when present."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path

import pytest

from seqexplain.data.eraser import (
    EraserEmptySpanWarning,
    EraserTextMismatchWarning,
    char_spans,
    evidence_token_set,
    read_eraser,
)
from seqexplain.data.paths import data_root
from seqexplain.errors import DataError, InputError

DOCS = {
    # sentence 0 = tokens 0..5, sentence 1 = tokens 6..9, sentence 2 = tokens 10..12 (the blank line is skipped)
    "negR_001.txt": "this film is a mess .\nthe plot is dull\n\nskip it .\n",
    "posR_002.txt": "a  wonderful , moving story\n",
}


def _ev(docid: str, start: int, end: int, text: str) -> dict:
    return {
        "docid": docid,
        "start_token": start,
        "end_token": end,
        "start_sentence": -1,
        "end_sentence": -1,
        "text": text,
    }


ROWS = [
    {
        "annotation_id": "negR_001.txt",
        "classification": "NEG",
        "docids": None,
        "query": "?",
        # a span across the sentence boundary (tokens 3..7), and one in the last sentence
        "evidences": [[_ev("negR_001.txt", 3, 8, "a mess . the plot")], [_ev("negR_001.txt", 10, 12, "skip it")]],
    },
    {
        "annotation_id": "posR_002.txt",
        "classification": "POS",
        "docids": None,
        "query": "?",
        "evidences": [[_ev("posR_002.txt", 1, 2, "wonderful"), _ev("posR_002.txt", 1, 2, "wonderful")]],
    },
]


def _write_tree(folder: Path, rows: list[dict], split: str = "test") -> Path:
    (folder / "movies" / "docs").mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / "movies" / "docs" / name).write_text(text)
    lines = [json.dumps(r) if isinstance(r, dict) else r for r in rows]
    (folder / "movies" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _write_archive(folder: Path, rows: list[dict], split: str = "test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "movies.tar.gz", "w:gz") as tar:
        members = {f"movies/docs/{n}": t for n, t in DOCS.items()}
        members[f"movies/{split}.jsonl"] = "\n".join(json.dumps(r) if isinstance(r, dict) else r for r in rows)
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder


def test_archive_fields_multi_sentence_span_and_helpers(tmp_path):
    docs = read_eraser("test", _write_archive(tmp_path / "a", ROWS))
    assert [d.annotation_id for d in docs] == ["negR_001.txt", "posR_002.txt"]
    neg, pos = docs
    assert neg.label == "NEG" and pos.label == "POS" and neg.docid == "negR_001.txt"
    assert neg.tokens == tuple(["this", "film", "is", "a", "mess", ".", "the", "plot", "is", "dull", "skip", "it", "."])
    assert neg.text == "this film is a mess . the plot is dull skip it ."
    assert neg.sentence_starts == (0, 6, 10)
    assert pos.tokens == ("a", "wonderful", ",", "moving", "story")  # the double space gives no empty token
    for doc in docs:
        assert [doc.text[a:b] for a, b in doc.token_offsets] == list(doc.tokens)
    assert neg.evidence_spans == ((3, 8), (10, 12))
    assert neg.evidence_texts == ("a mess . the plot", "skip it")
    assert char_spans(neg) == [(13, 30), (39, 46)]
    assert [neg.text[a:b] for a, b in char_spans(neg)] == ["a mess . the plot", "skip it"]
    assert evidence_token_set(neg) == frozenset({3, 4, 5, 6, 7, 10, 11})


def test_folder_equals_archive(tmp_path):
    rows = [ROWS[1]]
    from_archive = read_eraser("test", _write_archive(tmp_path / "a", rows))
    from_folder = read_eraser("test", _write_tree(tmp_path / "f", rows))
    from_inner = read_eraser("test", tmp_path / "f" / "movies")
    from_file = read_eraser("test", tmp_path / "a" / "movies.tar.gz")
    assert from_archive == from_folder == from_inner == from_file
    assert from_folder[0].evidence_spans == ((1, 2),)  # the duplicate evidence is dropped
    assert evidence_token_set(from_folder[0]) == frozenset({1})


@pytest.mark.parametrize("start,end", [(10, 14), (-1, 2), (5, 3)])
def test_span_outside_document_is_a_data_error(tmp_path, start, end):
    rows = [ROWS[1], {**ROWS[0], "evidences": [[_ev("negR_001.txt", start, end, "x")]]}]
    with pytest.raises(DataError, match=rf"test\.jsonl line 2: evidence span \[{start}, {end}\) is outside"):
        read_eraser("test", _write_tree(tmp_path, rows))


def test_text_mismatch_and_empty_span_are_counted_not_fatal(tmp_path):
    rows = [{**ROWS[0], "evidences": [[_ev("negR_001.txt", 0, 2, "this movie"), _ev("negR_001.txt", 4, 4, "")]]}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        docs = read_eraser("test", _write_tree(tmp_path, rows))
    kinds = {type(w.message): str(w.message) for w in caught}
    assert "1 evidence text(s) differ" in kinds[EraserTextMismatchWarning]
    assert "1 empty evidence span(s)" in kinds[EraserEmptySpanWarning]
    assert docs[0].evidence_spans == ((0, 2),)


def test_malformed_rows_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"test\.jsonl line 2: not a JSON object"):
        read_eraser("test", _write_tree(tmp_path / "a", [ROWS[0], "{not json"]))
    with pytest.raises(DataError, match=r"line 1: a row needs"):
        read_eraser("test", _write_tree(tmp_path / "b", [{"annotation_id": "negR_001.txt"}]))
    missing = {**ROWS[0], "annotation_id": "negR_404.txt", "evidences": []}
    with pytest.raises(DataError, match=r"line 1: document .*negR_404\.txt not found"):
        read_eraser("test", _write_tree(tmp_path / "c", [missing]))


def test_bad_split_and_missing_data(tmp_path):
    with pytest.raises(InputError, match="unknown ERASER split"):
        read_eraser("dev", tmp_path)
    with pytest.raises(DataError, match="no ERASER 'movies' data"):
        read_eraser("test", tmp_path)
    (tmp_path / "movies.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable ERASER archive"):
        read_eraser("test", tmp_path)


def test_real_movies_archive():
    folder = data_root() / "eraser_movies"
    if not (folder / "movies.tar.gz").is_file():
        pytest.skip(f"ERASER movies data not found under {folder} (folder 'eraser_movies')")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = {s: read_eraser(s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in splits.items()} == {"train": 1600, "val": 200, "test": 199}
    assert not [w for w in caught if w.category is EraserTextMismatchWarning]
    assert [str(w.message).split(": ")[-1] for w in caught if w.category is EraserEmptySpanWarning] == [
        "20 empty evidence span(s) (start_token == end_token) dropped"
    ]
    assert [d.annotation_id for d in splits["train"] if not d.evidence_spans] == ["posR_161.txt"]  # as shipped
    for docs in splits.values():
        assert {d.label for d in docs} == {"POS", "NEG"}
        for d in docs:
            assert all(0 <= a < b <= len(d.tokens) for a, b in d.evidence_spans)
            assert [d.text[a:b] for a, b in char_spans(d)] == [" ".join(d.tokens[a:b]) for a, b in d.evidence_spans]
