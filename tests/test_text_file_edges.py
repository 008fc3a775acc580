"""Edge inputs of the line-based readers of user files: a UTF-8 byte order mark, CRLF line ends, Unicode line
separators inside a line, a ``:`` tag in a class file and a null rationale. Oracles: the hand-written file contents
(what the user meant), and Python's own line reading with ``newline=None`` (splits at ``\\n``/``\\r\\n``/``\\r`` only).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from seqexplain.analysis.word_classes import read_class_file, read_tag_lexicon
from seqexplain.data.alignments import read_parallel, read_pharaoh
from seqexplain.data.annotated_lambada import read_annotated_lambada
from seqexplain.data.eraser import read_eraser
from seqexplain.data.sentencepiece_vocab import read_parallel_files
from seqexplain.data.token_labels import read_token_tsv
from seqexplain.errors import DataError

BOM = b"\xef\xbb\xbf"


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((BOM if bom else b"") + text.encode("utf-8"))
    return path


def test_tag_lexicon_and_class_file_with_bom_and_crlf(tmp_path: Path) -> None:
    lex = read_tag_lexicon(_write(tmp_path / "lex.txt", "the DT\r\ncat NN\r\n", bom=True))
    assert lex == {"the": ["DT"], "cat": ["NN"]}  # was {"\ufeffthe": ...}: "the" silently in no class
    classes = read_class_file(_write(tmp_path / "cls.txt", "noun: NN\r\n", bom=True))
    assert classes == {"noun": ["NN"]}


def test_class_file_keeps_the_colon_tag(tmp_path: Path) -> None:
    # ":" is a Penn Treebank tag; it used to be replaced by a space and silently dropped from the class
    classes = read_class_file(_write(tmp_path / "cls.txt", "punct: . , :\nnoun:NN NNS\nverb VB\n"))
    assert classes == {"punct": [".", ",", ":"], "noun": ["NN", "NNS"], "verb": ["VB"]}
    with pytest.raises(DataError, match="line 1: write a class as 'name: TAG"):
        read_class_file(_write(tmp_path / "amb.txt", "punct : , .\n"))


def test_token_tsv_with_bom(tmp_path: Path) -> None:
    sents = read_token_tsv(_write(tmp_path / "a.tsv", "The\tc\r\ncat\ti\r\n\r\nIt\tc\r\n", bom=True))
    assert [s.words for s in sents] == [("The", "cat"), ("It",)]
    assert [s.labels for s in sents] == [("c", "i"), ("c",)]
    (tmp_path / "latin1.tsv").write_bytes("caf\xe9\tc\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):  # was a UnicodeDecodeError traceback
        read_token_tsv(tmp_path / "latin1.tsv")


def test_parallel_files_split_at_line_ends_only(tmp_path: Path) -> None:
    # U+2028 and a form feed inside a sentence are not line ends: the pair stays one pair, aligned
    src = _write(tmp_path / "a.de", "eins\u2028zwei\r\ndrei\x0cvier\n", bom=True)
    tgt = _write(tmp_path / "a.en", "one two\nthree four\n")
    assert read_parallel_files(src, tgt) == (["eins\u2028zwei", "drei\x0cvier"], ["one two", "three four"])


def test_lambada_null_rationale_and_line_separator(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.json", '{"lambadaIndex": 1, "text": "a b c", "rationale": null}\n')
    with pytest.raises(DataError, match="line 1: rationale is None, not a list"):
        read_annotated_lambada(path)
    # JSON allows a raw U+2028 inside a string; it must not split the record
    path = _write(tmp_path / "m.json", '{"lambadaIndex": 2, "text": "x\u2028y z", "rationale": [[0, 3]]}\n', bom=True)
    (item,) = read_annotated_lambada(path)
    assert (item.lambada_index, item.context, item.target, item.spans) == (2, "x\u2028y", "z", [(0, 3)])


def test_alignment_files_with_bom_and_a_missing_line(tmp_path: Path) -> None:
    gold = read_pharaoh(_write(tmp_path / "g.txt", "0-0 1p1\r\n\r\n", bom=True))  # was 'malformed link \ufeff0-0'
    assert [(g.sure, g.possible) for g in gold] == [({(0, 0)}, {(0, 0), (1, 1)}), (set(), set())]
    pairs = read_parallel(_write(tmp_path / "p.txt", "Das Haus ||| the house\n", bom=True))
    assert pairs == [(["Das", "Haus"], ["the", "house"])]  # was "\ufeffDas"
    # one gold line for two sentence pairs: the links cannot be matched to sentences (zip(strict) crashed later)
    with pytest.raises(DataError, match="has 1 lines but there are 2 source sentences"):
        read_pharaoh(_write(tmp_path / "short.txt", "0-0\n"), src_lengths=[2, 2], tgt_lengths=[2, 2])


def test_eraser_lines_end_at_line_ends_only(tmp_path: Path) -> None:
    # ERASER's load_documents reads the file line by line (\n), so "a\u2028great" is one token; str.splitlines made
    # it two, shifting every later token index against the gold spans (and cut the JSONL record holding U+2028)
    docs = tmp_path / "movies" / "docs"
    docs.mkdir(parents=True)
    _write(docs / "d1.txt", "it was a\u2028great film .\nbad .\n")
    row = {"annotation_id": "d1.txt", "classification": "POS", "docids": ["d1.txt"],
           "evidences": [[{"docid": "d1.txt", "start_token": 2, "end_token": 4, "text": "a\u2028great film"}]]}
    for raw_separator in (False, True):  # the JSONL escapes U+2028 (\\u2028) or holds it raw
        _write(tmp_path / "movies" / "test.jsonl", json.dumps(row, ensure_ascii=not raw_separator) + "\n")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no text-mismatch warning
            (doc,) = read_eraser("test", tmp_path)
        assert doc.tokens == ("it", "was", "a\u2028great", "film", ".", "bad", ".")
        assert doc.sentence_starts == (0, 5)
        assert doc.evidence_spans == ((2, 4),)
