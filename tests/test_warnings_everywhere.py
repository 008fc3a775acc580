"""Every warning a result can carry appears in the console, the HTML page and the saved JSON — read from all
three after one CLI run each."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from seqexplain.cli import app

LONG = "The cat sat on the mat. " * 60  # far more than the fixture's 128 positions
NEAR_LIMIT = "The cat sat on the mat. " * 10  # 120 tokens: 8 of 10 new tokens fit


@pytest.mark.parametrize("name,argv,fragment", [
    ("target without its leading space", ["-t", "The capital of France is", "--target", "Paris",
                                          "--method", "gradient_norm"], "leading space"),
    ("truncated prompt", ["-t", LONG, "--target", " dog", "--method", "gradient_norm", "--truncate"],
     "tokens were cut"),
    ("generation capped by the positions", ["-t", NEAR_LIMIT, "--method", "gradient_norm"],
     "requested tokens fit"),
    ("generation asked for more tokens than the model's positions", ["-t", "The cat sat", "--max-new-tokens", "200",
                                                                      "--method", "gradient_norm"],
     "requested tokens fit"),
    ("greedy search that never reached", ["-t", "The cat sat on the mat and the dog", "--target", " sat",
                                          "--method", "greedy", "-o", "max_size=1"], "without the model predicting"),
    ("exhaustive search at its bound", ["-t", "The cat sat on the mat and the dog", "--target", " sat",
                                        "--method", "exhaustive", "-o", "max_size=1"], "search bound"),
    ("greedy search capped by max_size", ["-t", "The cat sat on the mat and the dog", "--target", " sat",
                                          "--method", "greedy", "-o", "max_size=2"],
     "stopped at its bound (max_size=2)"),
    ("special token typed in the prompt", ["-t", "The cat </s> sat on the", "--target", " mat",
                                           "--method", "gradient_norm"], "spells the special token(s)"),
    ("integrated gradients that miss completeness", ["-t", "The cat sat on the mat.", "--target", " The dog",
                                                     "--method", "integrated_gradients", "-o", "steps=1"],
     "completeness check fails"),
])
def test_warning_in_console_html_and_json(gpt2_dir, tmp_path, name, argv, fragment):
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    result = CliRunner().invoke(app, ["explain", "-m", str(gpt2_dir), *argv, "--json", str(out_json),
                                      "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    console = " ".join(result.output.split())
    assert fragment in console, console[-2000:]
    assert fragment in " ".join(out_html.read_text(encoding="utf-8").split())
    saved = json.loads(out_json.read_text(encoding="utf-8"))
    assert any(fragment in w for w in saved["warnings"]), saved["warnings"]


def test_non_finite_scores_warning_everywhere(runner, custom_model, tmp_path):
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    result = runner.invoke(app, ["explain", "-m", "custom-nan", "-t", "The cat sat on the", "--target", " mat",
                                 "--method", "occlusion", "--json", str(out_json), "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    assert "NaN or infinite" in " ".join(result.output.split())
    assert "NaN or infinite" in out_html.read_text(encoding="utf-8")
    assert any("NaN or infinite" in w for w in json.loads(out_json.read_text(encoding="utf-8"))["warnings"])


@pytest.mark.parametrize("how", ["sum", "absmax"])
def test_warnings_survive_aggregate_in_console_html_and_json(gpt2_dir, tmp_path, how):
    """``--aggregate`` shows (and writes to --html) word-level scores: the warnings must come along."""
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    result = CliRunner().invoke(app, ["explain", "-m", str(gpt2_dir), "-t", LONG, "--target", " sat", "--truncate",
                                      "--method", "greedy", "-o", "max_size=1", "--aggregate", how,
                                      "--json", str(out_json), "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    page = " ".join(out_html.read_text(encoding="utf-8").split())
    saved = json.loads(out_json.read_text(encoding="utf-8"))
    for fragment in ("tokens were cut", "without the model predicting", "rationale not reached"):
        assert fragment in " ".join(result.output.split()), fragment
        assert fragment in page, fragment
    assert f"aggregated={how} over words" in page
    assert any("tokens were cut" in w for w in saved["warnings"]) and not any(saved["rationale"]["reached"])
    assert saved["aggregation"] is None  # --json writes the token-level result


def test_non_finite_scores_warning_survives_aggregate(runner, custom_model, tmp_path):
    out_html = tmp_path / "a.html"
    result = runner.invoke(app, ["explain", "-m", "custom-nan", "-t", "The cat sat on the", "--target", " mat",
                                 "--method", "occlusion", "--aggregate", "sum", "--html", str(out_html)])
    assert result.exit_code == 0, result.output
    page = out_html.read_text(encoding="utf-8")
    assert "NaN or infinite" in " ".join(result.output.split()) and "NaN or infinite" in page
    n = re.search(r"(\d+) score\(s\) are NaN or infinite", page)
    assert n and f"{n.group(1)} non-finite score(s)" in page  # every flagged cell is still flagged after aggregating


def test_typed_special_tokens_are_named_once_and_unk_is_not(bert):
    """A special token the user types is read as the model's own token and explained as a token of the text:
    the result says so, naming each such token once; the unknown token typed (``[UNK]``, as corpora write
    unknown words) means what it says and is not warned about; text without them gets no such warning."""
    import seqexplain as se

    wrapped = se.load_model(*bert)
    named = [w for w in se.explain(wrapped, "good [SEP] bad [SEP] [UNK]", None, "gradient_norm").warnings
             if "spells the special token" in w]
    assert named == ["the input spells the special token(s) [SEP]: the tokenizer reads them as the model's own "
                     "special tokens, not as characters, and they are explained as tokens of the input"]
    for text in ("good and bad", "good [UNK] bad"):
        assert not any("spells the special" in w for w in se.explain(wrapped, text, None, "gradient_norm").warnings)
