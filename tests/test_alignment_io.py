"""Gold alignment and annotated LAMBADA readers on small files, plus their errors."""

from __future__ import annotations

import json

import pytest

from seqexplain.data.alignments import read_indexed_lines, read_parallel, read_pharaoh, read_rwth
from seqexplain.data.annotated_lambada import gold_token_positions, read_annotated_lambada
from seqexplain.errors import DataError


def test_pharaoh_zero_based_with_index_column(tmp_path):
    f = tmp_path / "a.gold"
    f.write_text("0\t0-0 1-1 2p1\n1\t\n2\t1-0\n")
    gold = read_pharaoh(f, src_lengths=[3, 1, 2], tgt_lengths=[2, 1, 1])
    assert len(gold) == 3
    assert gold[0].sure == {(0, 0), (1, 1)}
    assert gold[0].possible == {(0, 0), (1, 1), (2, 1)}
    assert gold[1].possible == set()
    assert gold[0].sources_by_target() == {0: ({0}, {0}), 1: ({1}, {1, 2})}


def test_pharaoh_one_based(tmp_path):
    f = tmp_path / "b.gold"
    f.write_text("2-2 1-1\n1p3\n")
    gold = read_pharaoh(f, one_based=True)
    assert gold[0].sure == {(1, 1), (0, 0)}
    assert gold[1].sure == set() and gold[1].possible == {(0, 2)}


@pytest.mark.parametrize("content,line,what", [
    ("0-0 1-1\n0-0 1x2\n", 2, "malformed"),
    ("0-0\n0-0 5-0\n", 2, "source index 5"),
    ("0-0 0-3\n", 1, "target index 3"),
    ("x\t0-0\n", 1, "index"),
])
def test_pharaoh_errors_name_file_and_line(tmp_path, content, line, what):
    f = tmp_path / "bad.gold"
    f.write_text(content)
    with pytest.raises(DataError, match=f"bad.gold, line {line}.*{what}"):
        read_pharaoh(f, src_lengths=[2, 2], tgt_lengths=[2, 2])


def test_pharaoh_one_based_zero_index(tmp_path):
    f = tmp_path / "z.gold"
    f.write_text("1-1\n0-1\n")
    with pytest.raises(DataError, match="z.gold, line 2.*negative"):
        read_pharaoh(f, one_based=True)


def test_rwth(tmp_path):
    f = tmp_path / "align.rwth"
    f.write_text("SENT: 0\nS 0 0\nP 1 0\nS 2 1\n\nSENT: 1\nP 0 0\n")
    gold = read_rwth(f, src_lengths=[3, 1], tgt_lengths=[2, 1])
    assert gold[0].sure == {(0, 0), (2, 1)}
    assert gold[0].possible == {(0, 0), (1, 0), (2, 1)}
    assert gold[1].sure == set() and gold[1].possible == {(0, 0)}
    one = tmp_path / "one.rwth"
    one.write_text("SENT: 0\nS 1 1\n")
    assert read_rwth(one, one_based=True)[0].sure == {(0, 0)}


@pytest.mark.parametrize("content,line,what", [
    ("S 0 0\n", 1, "before the first"),
    ("SENT: 0\nS 0 0\nQ 1 1\n", 3, "malformed"),
    ("SENT: 0\nS 0\n", 2, "malformed"),
    ("SENT: 0\nS 0 0\nSENT: 1\nP 4 0\n", 4, "source index 4"),
])
def test_rwth_errors_name_file_and_line(tmp_path, content, line, what):
    f = tmp_path / "bad.rwth"
    f.write_text(content)
    with pytest.raises(DataError, match=f"bad.rwth, line {line}.*{what}"):
        read_rwth(f, src_lengths=[2, 2], tgt_lengths=[2, 2])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_pharaoh(tmp_path / "nope.gold")


def test_parallel_and_indexed(tmp_path):
    p = tmp_path / "x.src-tgt"
    p.write_text("a b ||| c d e\n")
    assert read_parallel(p) == [(["a", "b"], ["c", "d", "e"])]
    p.write_text("a b c d\n")
    with pytest.raises(DataError, match="line 1"):
        read_parallel(p)
    q = tmp_path / "x.txt"
    q.write_text("0\tWe do .\n1\tBut\n")
    assert read_indexed_lines(q) == [["We", "do", "."], ["But"]]
    q.write_text("0\tWe\n2\tBut\n")
    with pytest.raises(DataError, match="line 2"):
        read_indexed_lines(q)


def test_shared_alignment_files_when_present():
    from seqexplain.data.paths import data_root

    folder = data_root() / "word_alignment"
    if not folder.is_dir():
        pytest.skip(f"shared word_alignment data not found under {data_root()}")
    sim = folder / "simalign_sample_en_de"
    eng, deu = read_indexed_lines(sim / "sample_eng.txt"), read_indexed_lines(sim / "sample_deu.txt")
    gold = read_pharaoh(sim / "sample_eng_deu.gold", src_lengths=[len(s) for s in eng],
                        tgt_lengths=[len(s) for s in deu])
    assert len(gold) == 5 and (19, 25) in gold[2].possible and (19, 25) not in gold[2].sure
    aw = folder / "awesome_align_en_fr_ro_en"
    pairs = read_parallel(aw / "enfr.src-tgt")
    gold = read_pharaoh(aw / "enfr.gold", one_based=True, src_lengths=[len(s) for s, _ in pairs],
                        tgt_lengths=[len(t) for _, t in pairs])
    assert len(gold) == len(pairs) == 447


# --------------------------------------------------------------------------- annotated LAMBADA
def _lambada(tmp_path, records):
    f = tmp_path / "annotated_lambada.json"
    f.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return f


def test_annotated_lambada_reader_and_token_mapping(tmp_path):
    text = "Mary gave the ball to John. Then John gave the ball back to Mary"
    f = _lambada(tmp_path, [{"lambadaIndex": 3, "text": text, "rationale": [[0, 4], [22, 26]]}])
    (item,) = read_annotated_lambada(f)
    assert item.target == "Mary" and item.context == text[: -len(" Mary")]
    assert item.span_texts() == ["Mary", "John"]
    # word tokens with offsets into the context, plus a special token
    offsets = [None, (0, 4), (5, 9), (10, 13), (14, 18), (19, 21), (22, 26), (26, 27)]
    segments = ["special"] + ["source"] * 7
    assert gold_token_positions(offsets, item.spans, segments, len(item.context)) == [1, 6]
    # a sub-word token partially inside a span counts
    assert gold_token_positions([(0, 2), (2, 4), (4, 5)], [(3, 4)]) == [1]


@pytest.mark.parametrize("span", [[50, 80], [-1, 2], [5, 5], [60, 64]])
def test_annotated_lambada_span_outside_text(tmp_path, span):
    text = "one two three four five six seven eight nine ten eleven twelve"  # 62 characters
    f = _lambada(tmp_path, [{"lambadaIndex": 0, "text": "a b", "rationale": [[0, 1]]},
                            {"lambadaIndex": 1, "text": text, "rationale": [span]}])
    with pytest.raises(DataError, match="annotated_lambada.json, line 2.*outside"):
        read_annotated_lambada(f)


def test_annotated_lambada_malformed(tmp_path):
    f = _lambada(tmp_path, [{"text": "a b", "rationale": []}])
    with pytest.raises(DataError, match="line 1"):
        read_annotated_lambada(f)
    with pytest.raises(DataError, match="outside"):
        gold_token_positions([(0, 1)], [(0, 9)], text_length=5)


def test_shared_annotated_lambada_when_present(bpe):
    from seqexplain.data.paths import data_root

    path = data_root() / "annotated_lambada" / "annotated_lambada.json"
    if not path.is_file():
        pytest.skip(f"annotated_lambada not found under {data_root()}")
    items = read_annotated_lambada(path)
    assert len(items) == 107 and items[0].lambada_index == 66 and items[0].target == "scratches"
    enc = bpe(items[0].context, return_offsets_mapping=True, add_special_tokens=False)
    gold = gold_token_positions(enc["offset_mapping"], items[0].spans, text_length=len(items[0].context))
    covered = "".join(items[0].context[a:b] for a, b in (enc["offset_mapping"][j] for j in gold))
    for s in items[0].span_texts():
        assert s.strip() in covered
