"""Analogy reader, template filling, single-token filter and the Ante / No D / Ratio scores."""

from __future__ import annotations

import json
import math

import pytest

from seqexplain.data.analogies import (
    build_examples,
    char_span_positions,
    fill_template,
    is_single_token,
    load_analogies,
    read_sections,
    read_templates,
    unique_pairs,
)
from seqexplain.data.paths import data_root
from seqexplain.errors import DataError, InputError
from seqexplain.metrics.analogies import analogy_scores, approximation_ratio, contains_antecedent, no_distractor

ANALOGY_TEXT = """: capital-common-countries
Athens Greece Baghdad Iraq
Athens Greece Berlin Germany
Baghdad Iraq Athens Greece
: currency
Europe euro Korea won
Japan yen Europe euro
"""

TEMPLATES = {
    "capital-common-countries": "When my flight landed in [B], I slept. (I had a dream, but no matter). "
                                "I was staying in the capital, [A]",
    "currency": "As soon as I arrived in [A], I napped. (The book was amazing). The local currency is the [B]",
}


@pytest.fixture()
def files(tmp_path):
    folder = tmp_path / "questions_words"
    folder.mkdir()
    (folder / "questions-words.txt").write_text(ANALOGY_TEXT, encoding="utf-8")
    (folder / "analogy_templates_vafa2021.json").write_text(json.dumps({"templates": TEMPLATES}), encoding="utf-8")
    return tmp_path


def test_read_sections_and_unique_pairs(files):
    sections = read_sections(files / "questions_words" / "questions-words.txt")
    assert list(sections) == ["capital-common-countries", "currency"]
    assert sections["currency"][0] == ("Europe", "euro", "Korea", "won")
    # both pairs of each line, unique, in order of first appearance
    assert unique_pairs(sections["capital-common-countries"]) == [
        ("Athens", "Greece"), ("Baghdad", "Iraq"), ("Berlin", "Germany")]
    assert unique_pairs(sections["currency"]) == [("Europe", "euro"), ("Korea", "won"), ("Japan", "yen")]


def test_read_sections_errors(tmp_path):
    bad = tmp_path / "q.txt"
    bad.write_text(": s\nA B C\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 4 words"):
        read_sections(bad)
    bad.write_text("A B C D\n", encoding="utf-8")
    with pytest.raises(DataError, match="before the first"):
        read_sections(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_sections(tmp_path / "missing.txt")


def test_read_templates_checks(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"templates": {"x": "no placeholders here"}}), encoding="utf-8")
    with pytest.raises(DataError, match=r"\[A\]"):
        read_templates(p)
    p.write_text(json.dumps({"templates": {"x": "[A] without a parenthetical, then [B]"}}), encoding="utf-8")
    with pytest.raises(DataError, match="distractor"):
        read_templates(p)


def test_fill_template_target_antecedent_distractor():
    ex = fill_template(TEMPLATES["capital-common-countries"], "Athens", "Greece", "capital-common-countries", 0)
    assert ex.target_kind == "a" and ex.target_word == "Athens" and ex.target == " Athens"
    assert ex.antecedent_word == "Greece"
    assert ex.prompt == ("When my flight landed in Greece, I slept. (I had a dream, but no matter). "
                         "I was staying in the capital,")
    assert ex.prompt[slice(*ex.antecedent)] == "Greece"
    assert ex.prompt[slice(*ex.distractor)] == "(I had a dream, but no matter)."
    assert ex.distractor_removed() == "When my flight landed in Greece, I slept. I was staying in the capital,"
    # [B] last: the second word is the target, the first the antecedent
    cur = fill_template(TEMPLATES["currency"], "Japan", "yen", "currency", 3)
    assert (cur.target_kind, cur.target_word, cur.antecedent_word, cur.id) == ("b", "yen", "Japan", "currency/3")
    assert cur.prompt.endswith("The local currency is the")
    assert cur.prompt[slice(*cur.distractor)] == "(The book was amazing)."


def test_real_templates_fill(files):
    root = data_root()
    if not (root / "questions_words").is_dir():
        pytest.skip(f"needs the data folder questions_words under {root}")
    templates = read_templates(root / "questions_words" / "analogy_templates_vafa2021.json")
    assert len(templates) == 14
    for name, template in templates.items():
        ex = fill_template(template, "Alpha", "Beta", name)
        assert ex.prompt[slice(*ex.antecedent)] == ex.antecedent_word
        d = ex.prompt[slice(*ex.distractor)]
        assert d.startswith("(") and d.endswith(").")
        assert "(" not in ex.distractor_removed()
    examples = load_analogies(None, root)
    assert len({e.section for e in examples}) == 14
    cur = [e for e in examples if e.section == "currency"]
    assert any(e.word_b == "Euro" for e in cur) and any(e.word_b == "Won" for e in cur)  # the paper's fixes


class WordTokenizer:
    """A toy tokenizer: known words (with their leading space) are one token, others one token per character."""

    def __init__(self, vocab: set[str]) -> None:
        self.vocab = vocab

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        assert not add_special_tokens
        word = text.strip()
        return [0] if text.startswith(" ") and word in self.vocab else list(range(len(text)))


def test_single_token_filter_and_capitalisation(files):
    tok = WordTokenizer({"Athens", "Greece", "Berlin", "Germany", "Europe", "Euro", "Japan", "yen"})
    assert is_single_token(tok, "Athens") and not is_single_token(tok, "Baghdad")
    examples = load_analogies(tok, files)
    pairs = [(e.section, e.word_a, e.word_b) for e in examples]
    # Baghdad/Iraq dropped (not single tokens); euro -> Euro kept; Korea/Won dropped (Korea is not one token)
    capital = "capital-common-countries"
    assert pairs == [(capital, "Athens", "Greece"), (capital, "Berlin", "Germany"),
                     ("currency", "Europe", "Euro"), ("currency", "Japan", "yen")]
    assert [e.index for e in examples] == [0, 1, 0, 1]
    everything = load_analogies(None, files)
    assert len(everything) == 6


def test_single_token_filter_real_tokenizer(bpe):
    words = ["the", "cat", "Mary", "zyzzyva"]
    single = {w for w in words if is_single_token(bpe, w)}
    for w in words:
        assert (w in single) == (len(bpe.encode(" " + w, add_special_tokens=False)) == 1)
    assert "zyzzyva" not in single
    examples = build_examples({"s": [("the", "cat", "zyzzyva", "Mary")]},
                              {"s": "I saw [A] here. (Never mind). It was [B]"}, bpe)
    assert all(is_single_token(bpe, e.word_a) and is_single_token(bpe, e.word_b) for e in examples)


def test_build_examples_unknown_section():
    with pytest.raises(DataError, match="not in the analogy file"):
        build_examples({}, {"nope": "A [A] (x). [B]"})


def test_char_span_positions():
    text = "I saw Greece. (A dream). The end"
    offsets = [(0, 1), (1, 5), (5, 12), (12, 13), (13, 15), (15, 16), (16, 22), (22, 24), (24, 28), None]
    # tokens: "I", " saw", " Greece", ".", " (", "A", " dream", ").", " The", <special>
    assert char_span_positions(offsets, [(6, 12)], text) == [2]
    assert char_span_positions(offsets, [(14, 24)], text) == [4, 5, 6, 7]
    # without the text, a token's leading space counts: " (" still overlaps, "." does not
    assert char_span_positions(offsets, [(13, 14)]) == [4]
    assert char_span_positions(offsets, [(13, 14)], text) == []


def test_ante_no_d_ratio_hand_cases():
    assert contains_antecedent([9, 3, 5], [3]) is True
    assert contains_antecedent([9, 5], [3]) is False
    assert contains_antecedent([9, 3], [3, 4]) is False  # every antecedent position is needed
    assert contains_antecedent([1, 2], []) is False
    assert no_distractor([9, 3], range(5, 8)) is True
    assert no_distractor([9, 6], range(5, 8)) is False
    assert approximation_ratio(6, 4) == 1.5
    with pytest.raises(InputError):
        approximation_ratio(3, 0)
    scores = analogy_scores(
        rationales=[[9, 3], [9, 6, 3, 2], [9, 1, 2]],
        antecedents=[[3], [3], [3]],
        distractors=[[5, 6, 7], [5, 6, 7], [5, 6, 7]],
        exhaustive_lengths=[2, 2, None],
    )
    assert scores["n"] == 3 and scores["n_ratio"] == 2
    assert scores["length"] == pytest.approx(3.0)
    assert scores["ratio"] == pytest.approx((1.0 + 2.0) / 2)  # only examples with an exhaustive rationale
    assert scores["ante"] == pytest.approx(2 / 3)
    assert scores["no_d"] == pytest.approx(2 / 3)
    empty = analogy_scores([], [], [])
    assert math.isnan(empty["length"]) and math.isnan(empty["ratio"])
