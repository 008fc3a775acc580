"""Readers of token-labelled sentences on small hand-written files (TSV, BioScope XML, SST trees), and their
bad-input errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqexplain.data.token_labels import (
    check_label_sets,
    read_bioscope,
    read_token_tsv,
    sst_token_labels,
    tree_spans,
)
from seqexplain.errors import DataError, InputError

BIOSCOPE = """<?xml version="1.0" encoding="utf-8"?>
<Annotation><DocumentSet>
<Document type="Biological_abstract"><DocID>1</DocID>
 <DocumentPart type="AbstractText">
  <sentence id="S1">These data <xcope id="X1"><cue type="speculation" ref="X1">indicate that</cue> NF-KB
   <xcope id="X2"><cue type="negation" ref="X2">does not</cue> bind</xcope></xcope>.</sentence>
  <sentence id="S2">It <xcope id="X3"><cue type="speculation" ref="X3">may</cue> <cue type="speculation"
   ref="X3">or may not</cue> work</xcope>, <cue type="negation" ref="X9">not</cue> here.</sentence>
  <sentence id="S3">Plain text with no cue.</sentence>
 </DocumentPart>
</Document>
<Document type="Biological_abstract"><DocID>2</DocID><sentence id="S4">Second document.</sentence></Document>
</DocumentSet></Annotation>
"""


def test_tsv_reader_sentences_and_labels(tmp_path: Path) -> None:
    f = tmp_path / "a.tsv"
    f.write_text("Dear\tc\nSir\ti\n\n\nI\tc\nam\tc\n.\tc\n", encoding="utf-8")
    sents = read_token_tsv(f)
    assert [s.words for s in sents] == [("Dear", "Sir"), ("I", "am", ".")]
    assert [s.gold for s in sents] == [[0, 1], [0, 0, 0]]
    assert [s.label for s in sents] == [1, 0]


def test_tsv_wrong_width_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.tsv"
    f.write_text("Dear\tX\tc\nSir\ti\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_token_tsv(f)
    msg = str(err.value)
    assert "bad.tsv" in msg and "line 2" in msg and "\n" not in msg


def test_tsv_single_column_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "one.tsv"
    f.write_text("Dear\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1"):
        read_token_tsv(f)


def test_labels_unseen_in_training_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("a\tc\nb\ti\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("a\tc\nb\tx\nd\ti\n", encoding="utf-8")
    train, test = read_token_tsv(tmp_path / "train.tsv"), read_token_tsv(tmp_path / "test.tsv")
    with pytest.raises(InputError, match="'x'"):
        check_label_sets(train, test)
    check_label_sets(test, train)  # the other way round every label is known (c, i ⊂ c, x, i)


def test_bioscope_cues_spanning_words(tmp_path: Path) -> None:
    f = tmp_path / "b.xml"
    f.write_text(BIOSCOPE, encoding="utf-8")
    docs = read_bioscope(f)
    assert len(docs) == 2 and len(docs[0]) == 3
    s1, s2, s3 = docs[0]
    assert list(zip(s1.words, s1.labels, strict=True)) == [
        ("These", "O"), ("data", "O"), ("indicate", "C"), ("that", "C"), ("NF-KB", "O"), ("does", "O"),
        ("not", "O"), ("bind", "O"), (".", "O")]
    assert [w for w, lab in zip(s2.words, s2.labels, strict=True) if lab == "C"] == ["may", "or", "may", "not"]
    assert s2.words[-3:] == ("not", "here", ".") and s2.labels[-3] == "O"  # a negation cue is not a hedge cue
    assert (s1.label, s2.label, s3.label) == (1, 1, 0)
    neg = read_bioscope(f, cue_type="negation")[0]
    assert [w for w, lab in zip(neg[0].words, neg[0].labels, strict=True) if lab == "C"] == ["does", "not"]


def test_bioscope_bad_inputs(tmp_path: Path) -> None:
    f = tmp_path / "b.xml"
    f.write_text("<Annotation><Document>", encoding="utf-8")
    with pytest.raises(DataError, match="b.xml"):
        read_bioscope(f)
    with pytest.raises(InputError):
        read_bioscope(f, cue_type="hedge")


TREE = "(3 (2 It) (4 (3 (2 is) (4 (3 very) (4 good))) (1 (2 not) (1 bad))))"


def test_sst_tree_spans() -> None:
    words, nodes = tree_spans(TREE)
    assert words == ["It", "is", "very", "good", "not", "bad"]
    assert (nodes[-1].start, nodes[-1].end, nodes[-1].label) == (0, 6, 3)
    assert sum(1 for n in nodes if n.end - n.start == 1) == 6


def test_sst_word_and_phrase_labels() -> None:
    pos = sst_token_labels(TREE, "positive", "word")
    assert pos.labels == ("O", "O", "P", "P", "O", "O") and pos.label == 1
    neg = sst_token_labels(TREE, "negative", "word")
    assert neg.labels == ("O", "O", "O", "O", "O", "N") and neg.label == 0
    neg_phrase = sst_token_labels(TREE, "negative", "phrase", max_phrase_words=2)
    assert neg_phrase.labels == ("O", "O", "O", "O", "N", "N")
    pos_phrase = sst_token_labels(TREE, "positive", "phrase", max_phrase_words=3)
    assert pos_phrase.labels == ("O", "P", "P", "P", "O", "O")
    with pytest.raises(InputError):
        sst_token_labels(TREE, "neutral")
    with pytest.raises(InputError):
        tree_spans("(3 (2 It)")
