"""Every view shows tokens as the text they cover (no byte-level mojibake), makes a token's leading space
visible, and prints the scores as numbers when there is no colour."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import seqexplain
from seqexplain.attribution import Attribution
from seqexplain.cli import app
from seqexplain.models.tokenization import token_decoder
from seqexplain.report import attribution_markdown, plot_heatmap, render_console, render_html
from seqexplain.report._common import covered_text, input_labels, plain_text, target_label, visible_text

PROMPT = "café 🍕 שלום"
TARGET = " مرحبا 東京"
#: every character of PROMPT and TARGET that is not a space
REAL_CHARS = [ch for ch in PROMPT + TARGET if not ch.isspace()]
#: what the byte-level strings of those characters look like printed raw
MOJIBAKE = ["Ã©", "ðŁ", "×©", "Ø±", "Ùħ", "æĿ", "äº", "Ġ"]
SCORE = re.compile(r"=[+-]\d")


def _plain(attr: Attribution, **kwargs: object) -> str:
    console = Console(record=True, width=200, no_color=True, force_terminal=False)
    render_console(attr, console=console, **kwargs)  # type: ignore[arg-type]
    return console.export_text()


def _coloured(attr: Attribution, **kwargs: object) -> str:
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    render_console(attr, console=console, **kwargs)  # type: ignore[arg-type]
    return console.export_text()


def _assert_readable(text: str) -> None:
    for ch in REAL_CHARS:
        assert ch in text, ch
    for bad in MOJIBAKE:
        assert bad not in text, bad


@pytest.fixture(scope="module")
def multilingual(gpt2) -> Attribution:
    model, tok = gpt2
    return seqexplain.explain(model, PROMPT, TARGET, "grad_x_input", tokenizer=tok)


# ------------------------------------------------------------------------------ real characters, every view
def test_the_tokenizer_splits_characters_into_bytes(multilingual: Attribution) -> None:
    # the premise of these tests: the raw tokens are byte-level strings, several per character
    assert "Ã" in multilingual.tokens and multilingual.tokens.count("×") >= 4
    labels = input_labels(multilingual)
    assert labels.count("🍕") == 4  # four byte tokens of one emoji each show the character they are part of
    assert labels[:5] == ["c", "a", "f", "é", "é"]
    assert target_label(multilingual, 0) == "␣" and "東" in [target_label(multilingual, i) for i in range(18)]


def test_console_without_colour_shows_real_characters(multilingual: Attribution) -> None:
    text = _plain(multilingual)
    _assert_readable(text)
    assert "[␣]" in text  # the first target is the space before the Arabic word: visible, not blank
    words = _plain(multilingual.aggregate("sum"))
    for word in ["café", "🍕", "שלום", "مرحبا", "東京"]:
        assert word in words, word


def test_coloured_console_shows_real_characters(multilingual: Attribution) -> None:
    _assert_readable(_coloured(multilingual))


def test_html_shows_real_characters(multilingual: Attribution) -> None:
    page = render_html(multilingual)
    _assert_readable(page)
    assert '<span class="tt">東</span>' in page and ">🍕</span>" in page
    assert "␣ = space" in page  # the legend explains the notation


def test_markdown_and_plot_show_real_characters(multilingual: Attribution) -> None:
    _assert_readable(attribution_markdown(multilingual))
    ax = plot_heatmap(multilingual).axes[0]
    ticks = " ".join(t.get_text() for t in [*ax.get_xticklabels(), *ax.get_yticklabels()])
    _assert_readable(ticks)


def test_tokens_without_offsets_are_decoded(bpe) -> None:
    # byte-level tokens of whole characters, as a larger vocabulary has them, without offsets (a hand-built
    # result, an old file): read with the tokenizer's decoding, or from their bytes when there is none
    tokens = ["<s>", "caf", "Ã©", "Ġ", "ðŁįķ", "Ġ×©×ľ×ķ×Ŀ", "ĠParis", "thé"]
    attr = Attribution(tokens=tokens, scores=np.zeros((1, len(tokens))), target_tokens=["ĠÙħØ±"],
                       target_positions=[None], segments=["special"] + ["source"] * (len(tokens) - 1))
    assert all(o is None for o in attr.offsets)
    for decode in (None, token_decoder(bpe)):
        labels = input_labels(attr, decode)
        assert labels[:7] == ["<s>", "caf", "é", "␣", "🍕", "␣שלום", "␣Paris"]  # <s>: special, kept
        assert target_label(attr, 0, decode) == "␣مر"
    # split bytes of one character without offsets: the tokenizer's decoding shows no mojibake either
    split = Attribution(tokens=["Ã", "©"], scores=np.zeros((1, 2)), target_tokens=["x"], target_positions=[None])
    assert not any("Ã" in t for t in input_labels(split, token_decoder(bpe)))
    assert covered_text(attr, 7) == "thé"  # a real "é" (not valid UTF-8 as bytes) stays as it is


# ------------------------------------------------------------------------------------ the leading space
def _paris(target: str) -> Attribution:
    """`The capital is` + target, one token per word, with offsets; a contrast against the other spelling."""
    tokens = ["The", "Ġcapital", "Ġis", "ĠParis" if target.startswith(" ") else "Paris"]
    offsets = [(0, 3), (3, 11), (11, 14), (0, len(target))]
    other = "Paris" if target.startswith(" ") else "ĠParis"
    return Attribution(tokens=tokens, scores=np.array([[0.25, -0.5, 1.0, np.nan]]), target_tokens=[tokens[3]],
                       target_positions=[3], offsets=offsets, segments=["source"] * 3 + ["target"],
                       text="The capital is", target_text=target, objective="contrast", foil_tokens=[other],
                       target_logprobs=[-1.0])


def test_leading_space_renders_differently_in_every_view() -> None:
    spaced, bare = _paris(" Paris"), _paris("Paris")
    for render in (_plain, _coloured):
        a, b = render(spaced), render(bare)
        assert "[␣Paris]" in a and "[␣Paris]" not in b and "[Paris]" in b
        assert "vs 'Paris'" in a and "vs '␣Paris'" in b  # the foil (no offsets) is decoded the same way
        assert "␣capital" in a
    html_a, html_b = render_html(spaced), render_html(bare)
    assert '<span class="tt">␣Paris</span>' in html_a and '<span class="tt">Paris</span>' in html_b
    assert "| t0 ␣Paris" in attribution_markdown(spaced).replace("  ", " ")
    assert "| t0 Paris" in attribution_markdown(bare).replace("  ", " ")
    assert "t0 ␣Paris" not in attribution_markdown(bare)
    assert plot_heatmap(spaced).axes[0].get_yticklabels()[0].get_text().startswith("␣Paris")


def test_real_model_space_and_no_space_targets_differ(gpt2) -> None:
    model, tok = gpt2
    spaced = seqexplain.explain(model, "The capital is", " Paris", "grad_x_input", tokenizer=tok)
    bare = seqexplain.explain(model, "The capital is", "Paris", "grad_x_input", tokenizer=tok)
    assert [target_label(spaced, i) for i in range(4)] == ["␣", "P", "ar", "is"]
    assert [target_label(bare, i) for i in range(3)] == ["P", "ar", "is"]
    assert _plain(spaced) != _plain(bare)


# --------------------------------------------------------------------------------------- numbers
def test_numbers_when_colour_is_off(multilingual: Attribution) -> None:
    plain = _plain(multilingual)
    assert SCORE.search(plain) and "top 5 inputs for target 0" in plain
    assert "token=score" in plain  # the legend says what the numbers are
    row = multilingual.scores[0]
    best = multilingual.top_k(0, 1)[0]
    assert f"{input_labels(multilingual)[best]}={row[best]:+.3g}" in plain
    coloured = _coloured(multilingual)
    assert not SCORE.search(coloured) and "top 5" not in coloured
    assert SCORE.search(_coloured(multilingual, numbers=True))  # --numbers on a colour terminal
    hidden = _plain(multilingual, numbers=False)
    assert not SCORE.search(hidden)  # --no-numbers wins, and says what it hides
    assert "the scores are not shown; drop --no-numbers to print them" in " ".join(hidden.split())
    assert "not shown" not in _coloured(multilingual, numbers=False)
    sixteen = Console(record=True, width=200, force_terminal=True, color_system="standard")
    render_console(multilingual, console=sixteen)
    assert SCORE.search(sixteen.export_text())  # 16 colours fold the shades into greys: numbers by default
    assert "top 2 inputs" in _plain(multilingual, top_k=2) and "top" not in _plain(multilingual, top_k=0)[-400:]
    no_color = Console(record=True, width=200, force_terminal=True, no_color=True)
    render_console(multilingual, console=no_color)
    assert SCORE.search(no_color.export_text())  # NO_COLOR on a terminal


def test_numbers_show_warnings_nonfinite_and_hidden_positions() -> None:
    attr = _paris(" Paris")
    attr.scores[0, 1] = np.inf
    attr.warnings.append("scores truncated <b>x</b>")
    text = _plain(attr)
    assert "⚠ WARNING: scores truncated <b>x</b>" in text
    assert "⚠ WARNING: 1 non-finite score(s)" in text
    assert "␣capital=inf!" in text and "The=+0.25" in text and "␣is=+1" in text
    hidden = Attribution(tokens=["a", "b", "c"], scores=np.array([[0.5, np.nan, np.nan]]), target_tokens=["b"],
                         target_positions=[1])
    assert "a=+0.5 [b] (+1 not visible)" in _plain(hidden)


# -------------------------------------------------------------------------------------------- the CLI
def test_cli_explain_and_show_print_numbers_and_top_k(runner, gpt2_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    result = runner.invoke(app, ["explain", "--model", str(gpt2_dir), "--text", PROMPT, "--target", " Paris",
                                 "--method", "grad_x_input", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert SCORE.search(result.stdout) and "top 5 inputs for target 0 '␣'" in result.stdout
    _assert_readable_prompt(result.stdout)
    shown = runner.invoke(app, ["show", str(out), "--top-k", "3"])
    assert shown.exit_code == 0, shown.output
    assert SCORE.search(shown.stdout) and "top 3 inputs for target 0" in shown.stdout
    _assert_readable_prompt(shown.stdout)
    plain = runner.invoke(app, ["show", str(out), "--no-numbers"])
    assert plain.exit_code == 0 and not SCORE.search(plain.stdout) and "top 5" not in plain.stdout


def _assert_readable_prompt(text: str) -> None:
    for ch in [ch for ch in PROMPT if not ch.isspace()]:
        assert ch in text, ch
    assert "Ã" not in text and "ð" not in text


def test_cli_show_prints_warnings_without_colour(runner, tmp_path: Path) -> None:
    attr = _paris(" Paris")
    attr.warnings.append("the prompt was truncated")
    path = attr.save(tmp_path / "w.json")
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0, result.output
    assert "⚠ WARNING: the prompt was truncated" in result.stdout
    assert "The=+0.25" in result.stdout and "[␣Paris]" in result.stdout and "top 3 inputs" in result.stdout


# ------------------------------------------------------------------------------------ the display helper
TRICKY = ["", " ", "  a  ", "\n", "a\nb", "\t x", "é", "🍕", "👩\u200d💻", "\u200d", "a\u200d", "x\u200by", "\\u0041",
          "\\", "a\\", "␣", "∅", "⏎a", "\u00a0", "\u2003x\u2003", "\x00\x1f\x7f", "שלום عربي 東京", "\U0010ffff",
          "\ud800"]


def test_a_zero_width_joiner_shows_unless_inside_an_emoji_sequence() -> None:
    """A token of a lone U+200D (byte-level tokenizers split emoji sequences) printed as nothing: ``=+2.29``."""
    assert visible_text("\u200d") == "\\u200d" and visible_text("a\u200d") == "a\\u200d"
    assert visible_text("👩\u200d💻") == "👩\u200d💻"


def _check_visible(text: str) -> None:
    shown = visible_text(text)
    assert plain_text(shown) == text
    assert shown and shown == shown.strip() and "\n" not in shown and "\r" not in shown and "\t" not in shown


def _check_tokens(tok, text: str) -> None:
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    attr = Attribution(tokens=tokens, scores=np.zeros((1, len(tokens))), target_tokens=["x"],
                       target_positions=[None], offsets=offsets, text=text)
    labels = input_labels(attr)
    rebuilt, covered_to = "", 0
    for (start, end), label in zip(offsets, labels, strict=True):
        piece = plain_text(label)
        assert piece == text[start:end]  # each token shows exactly the characters it covers
        rebuilt += piece[max(0, covered_to - start):]  # byte pieces of one character share it: count it once
        covered_to = max(covered_to, end)
    assert rebuilt == text


def test_display_helper_on_tricky_and_random_text(bpe) -> None:
    rng = random.Random(0)
    samples = list(TRICKY)
    for _ in range(200):
        samples.append("".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0x80, 0x800),
                                               rng.randrange(0x800, 0xD800), rng.randrange(0x10000, 0x1FFFF),
                                               rng.choice([0x20, 0x0A, 0x09, 0x5C, 0x75, 0x2423])]))
                               for _ in range(rng.randrange(0, 12))))
    for text in samples:
        _check_visible(text)
        if "\ud800" not in text:
            _check_tokens(bpe, text)


def test_display_helper_property(bpe) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.text())
    def check(text: str) -> None:
        _check_visible(text)
        _check_tokens(bpe, text)

    check()


def test_top_k_table_keeps_rank_position_and_token_on_a_narrow_terminal(multilingual: Attribution) -> None:
    """At 40 columns the rank, position and token columns shrank to nothing while the long raw scores kept their
    width: a score without the token it belongs to. The numbers fold instead."""
    narrow = Console(record=True, width=40, no_color=True, force_terminal=False)
    render_console(multilingual, console=narrow, top_k=3)
    table = narrow.export_text().split("top 3 inputs for target 0")[1]
    labels = input_labels(multilingual)
    for rank, j in enumerate(multilingual.top_k(0, 3), start=1):
        line = next(row for row in table.splitlines() if re.match(rf"│\s+{rank} │\s+{j} │", row))
        assert labels[j][:6] in line, (labels[j], line)
