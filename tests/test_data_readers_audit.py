"""Audit of the data readers against hand-written files: a malformed or inconsistent file is a DataError naming
the file and the line, never a silently shifted or shortened data set."""

from __future__ import annotations

import pytest

from seqexplain.data.alignments import read_rwth
from seqexplain.errors import DataError


def test_rwth_with_fewer_sentences_than_the_corpus_is_refused(tmp_path):
    """With the sentence lengths given, a Pharaoh file with the wrong number of lines is refused, but an RWTH file
    missing its last sentences was read silently (every later scoring then skipped or misaligned them)."""
    f = tmp_path / "short.rwth"
    f.write_text("SENT: 0\nS 0 0\n")
    with pytest.raises(DataError, match="short.rwth has 1 'SENT:' blocks but there are 2"):
        read_rwth(f, src_lengths=[2, 2], tgt_lengths=[2, 2])


def test_rwth_sentence_numbers_must_run_consecutively(tmp_path):
    """A skipped ``SENT:`` block shifted every later sentence's links onto the wrong sentence pair."""
    f = tmp_path / "gap.rwth"
    f.write_text("SENT: 0\nS 0 0\nSENT: 2\nS 1 1\n")
    with pytest.raises(DataError, match="gap.rwth, line 3.*SENT: 1"):
        read_rwth(f)
    ok = tmp_path / "one_based.rwth"
    ok.write_text("SENT: 1\nS 1 1\nSENT: 2\nP 1 1\n")
    assert len(read_rwth(ok, one_based=True, src_lengths=[1, 1], tgt_lengths=[1, 1])) == 2
