"""The SST reader on hand-written PTB trees (and on the shared zip when it is there)."""

from __future__ import annotations

import zipfile

import pytest

from seqexplain.data.sst import parse_lines, parse_tree, read_sst
from seqexplain.errors import DataError, InputError

TREE = (r"(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 (2 destined) (2 (2 -LRB-) (2 (2 fun) (2 -RRB-)))))"
        r" (2 (2 8 1\/2) (2 .))))")
NEUTRAL = "(2 (2 It) (2 (2 is) (2 .)))"
NEGATIVE = "(1 (1 (2 too) (0 bad)) (2 !))"


def test_parse_tree_reads_root_label_and_leaves():
    label, words = parse_tree(TREE)
    assert label == 3
    assert words == ["The", "Rock", "is", "destined", "(", "fun", ")", "8", "1/2", "."]
    assert parse_tree("(0 (0 -LRB-) (2 -RRB-))") == (0, ["(", ")"])


def test_binary_drops_neutral_and_maps_labels():
    sents = parse_lines([TREE, NEUTRAL, "", NEGATIVE])
    assert [(s.text, s.label, s.fine_label) for s in sents] == [
        ("The Rock is destined ( fun ) 8 1/2 .", 1, 3), ("too bad !", 0, 1)]
    fine = parse_lines([TREE, NEUTRAL, NEGATIVE], binary=False)
    assert [s.label for s in fine] == [3, 2, 1]


@pytest.mark.parametrize("bad", ["(3 (2 The)", "(3 (2 The)))", "(x (2 The))", "The Rock", "(2 (2 a)) (2 (2 b))"])
def test_malformed_trees_raise(bad):
    with pytest.raises(InputError):
        parse_tree(bad)


def test_read_sst_from_a_zip(tmp_path):
    folder = tmp_path / "sst"
    folder.mkdir()
    with zipfile.ZipFile(folder / "trainDevTestTrees_PTB.zip", "w") as zf:
        zf.writestr("trees/test.txt", "\n".join([TREE, NEUTRAL, NEGATIVE]) + "\n")
    assert [s.label for s in read_sst("test", root=tmp_path)] == [1, 0]
    with pytest.raises(InputError):
        read_sst("valid", root=tmp_path)
    with pytest.raises(DataError):
        read_sst("test", root=tmp_path / "nowhere")


def test_a_leaf_holding_a_space_is_split_here_and_kept_whole_by_the_token_label_reader():
    """As the two readers' docstrings state: the same text, words split by this reader only (a label is a leaf's)."""
    from seqexplain.data.token_labels import tree_spans

    line = "(3 (2 8\xa01\\/2) (3 (3 good) (2 fun)))"
    (sentence,) = parse_lines([line], binary=False)
    words, nodes = tree_spans(line)
    assert sentence.words == ("8", "1/2", "good", "fun") and words == ["8 1/2", "good", "fun"]
    assert sentence.text == " ".join(words) == "8 1/2 good fun"
    assert [(n.start, n.end, n.label) for n in nodes][0] == (0, 1, 2)
