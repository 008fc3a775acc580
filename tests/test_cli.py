"""The command line: every command works on tiny fixture models, and every user error is one red line on
stderr with exit status 2 and no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import seqexplain
from seqexplain import cli
from seqexplain.cli import app, parse_options, parse_value

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}


class NoAttentionLM(torch.nn.Module):
    """Hugging Face calling convention, no attention weights; logits NaN where input 1 is masked when
    ``nan_when_dropped``."""

    seqexplain_kind = "causal"

    def __init__(self, vocab_size: int, nan_when_dropped: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab_size, 16)
        self.out = torch.nn.Linear(16, vocab_size)
        self.nan_when_dropped = nan_when_dropped

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        logits = self.out(torch.tanh(torch.cumsum(x * m, 1) / torch.cumsum(m, 1).clamp(min=1.0)))
        if self.nan_when_dropped and attention_mask.shape[1] > 1:
            dropped = (attention_mask[:, 1] == 0).view(-1, 1, 1)
            logits = torch.where(dropped, torch.full_like(logits, float("nan")), logits)
        return SimpleNamespace(logits=logits)


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def assert_user_error(result, *fragments: str) -> str:
    """Exit 2, an ``error:`` line naming each fragment, no traceback."""
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    assert "error:" in result.stderr
    for frag in fragments:
        assert frag in result.stderr, (frag, result.stderr)
    return result.stderr


@pytest.fixture(scope="module")
def gpt2_dir(gpt2, tmp_path_factory) -> Path:
    model, tok = gpt2
    path = tmp_path_factory.mktemp("gpt2-cli")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(bert, tmp_path_factory) -> Path:
    model, tok = bert
    path = tmp_path_factory.mktemp("bert-cli")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------ parsing
def test_parse_value_types():
    assert parse_value("20") == 20 and isinstance(parse_value("20"), int)
    assert parse_value("0.5") == 0.5
    assert parse_value("1e-3") == 1e-3
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("riemann") == "riemann"
    assert parse_options(["steps=8", "rule=riemann", "baseline-x=pad"]) == {
        "steps": 8, "rule": "riemann", "baseline_x": "pad"}
    with pytest.raises(seqexplain.errors.InputError):
        parse_options(["steps"])


# ----------------------------------------------------------------------------------------------- commands
def test_version(runner):
    result = invoke(runner, "--version")
    assert result.exit_code == 0 and seqexplain.__version__ in result.stdout


def test_methods_lists_all(runner):
    result = invoke(runner, "methods")
    assert result.exit_code == 0, result.output
    for m in seqexplain.available_methods():
        assert m.name in result.stdout
        assert m.family in result.stdout
    assert "steps=50" in result.stdout  # options with defaults


def test_explain_writes_json_and_html_and_show_round_trips(runner, gpt2_dir, tmp_path):
    out_json, out_html = tmp_path / "a.json", tmp_path / "a.html"
    result = invoke(runner, "explain", "--model", gpt2_dir, "--text", "The cat sat on the", "--target", " mat",
                    "--method", "integrated_gradients", "-o", "steps=8", "--json", out_json, "--html", out_html)
    assert result.exit_code == 0, result.output
    assert "integrated_gradients" in result.stdout and "log p" in result.stdout and "The" in result.stdout
    assert out_json.is_file() and out_html.is_file()
    assert "<html" in out_html.read_text(encoding="utf-8")
    attr = seqexplain.Attribution.load(out_json)
    assert attr.method == "integrated_gradients" and attr.options["steps"] == 8
    assert attr.target_text == " mat" and attr.model_kind == "causal"

    again_html = tmp_path / "b.html"
    shown = invoke(runner, "show", out_json, "--html", again_html)
    assert shown.exit_code == 0, shown.output
    assert "integrated_gradients" in shown.stdout and "The" in shown.stdout
    assert again_html.is_file()
    words = invoke(runner, "show", out_json, "--aggregate", "absmax")
    assert words.exit_code == 0, words.output


def test_explain_predicts_target_and_aggregates(runner, gpt2_dir, tmp_path):
    out_json = tmp_path / "p.json"
    result = invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat sat on the", "--method", "occlusion",
                    "--max-new-tokens", "2", "--aggregate", "sum", "--json", out_json)
    assert result.exit_code == 0, result.output
    attr = seqexplain.Attribution.load(out_json)  # JSON holds the token-level result
    assert len(attr.target_tokens) == 2 and "aggregated" not in attr.options and attr.aggregation is None
    assert "aggregated=sum over words" in result.stdout


def test_explain_classifier_label(runner, bert_dir):
    result = invoke(runner, "explain", "-m", bert_dir, "-t", "a fine film", "--target", "positive",
                    "--method", "grad_x_input", "--kind", "classifier")
    assert result.exit_code == 0, result.output
    assert "positive" in result.stdout


# ------------------------------------------------------------------------------------------- user errors
def test_empty_text(runner, gpt2_dir):
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "  ", "--method", "occlusion"), "empty")


def test_too_long_states_limit_and_truncate_works(runner, gpt2_dir):
    text = "The cat sat on the mat. " * 60
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", text, "--target", " dog",
                             "--method", "occlusion"), "128", "--truncate")
    ok = invoke(runner, "explain", "-m", gpt2_dir, "-t", text, "--target", " dog", "--method", "occlusion",
                "--truncate")
    assert ok.exit_code == 0, ok.output


def test_unknown_method_lists_known(runner, gpt2_dir):
    err = assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "--method", "magic"),
                            "magic")
    for m in seqexplain.available_methods():
        assert m.name in err


def test_bad_options(runner, gpt2_dir):
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "-o", "steps"), "key=value")
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "-o", "n_steps=3"), "n_steps")


def test_unknown_label(runner, bert_dir):
    assert_user_error(invoke(runner, "explain", "-m", bert_dir, "-t", "a fine film", "--target", "happy",
                             "--method", "occlusion"), "happy", "negative, neutral, positive")


def test_empty_target(runner, gpt2_dir):
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "--target", "",
                             "--method", "occlusion"), "no tokens")


def test_missing_model_directory(runner, tmp_path):
    assert_user_error(invoke(runner, "explain", "-m", tmp_path / "missing", "-t", "The cat"), "does not exist")


def test_corrupt_config(runner, gpt2_dir, tmp_path):
    bad = Path(shutil.copytree(gpt2_dir, tmp_path / "bad"))
    (bad / "config.json").write_text("garbage{", encoding="utf-8")
    assert_user_error(invoke(runner, "explain", "-m", bad, "-t", "The cat", "--method", "occlusion"), "config")


def test_truncated_weights(runner, gpt2_dir, tmp_path):
    bad = Path(shutil.copytree(gpt2_dir, tmp_path / "bad"))
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert_user_error(invoke(runner, "explain", "-m", bad, "-t", "The cat", "--method", "occlusion"), "weights")


def test_smollm2_rejects_other_kind(runner):
    assert_user_error(invoke(runner, "explain", "-m", "smollm2", "-t", "Hi", "--kind", "seq2seq"), "causal")


def test_show_unreadable_file(runner, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2", encoding="utf-8")
    assert_user_error(invoke(runner, "show", bad), "x.json")
    assert_user_error(invoke(runner, "show", tmp_path / "missing.json"), "does not exist")


def test_unwritable_output(runner, gpt2_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "--target", " sat",
                             "--method", "occlusion", "--json", blocker / "sub" / "a.json"), "cannot write")


@pytest.fixture()
def custom_model(monkeypatch, bpe):
    """Make ``--model custom`` / ``--model custom-nan`` load the hand-written modules above."""

    def fake_load(spec, kind=None, status=None, device=None):
        return seqexplain.load_model(NoAttentionLM(len(bpe), nan_when_dropped=spec.endswith("nan")), bpe)

    monkeypatch.setattr(cli, "load_cli_model", fake_load)


def test_attention_method_unsupported(runner, custom_model):
    assert_user_error(invoke(runner, "explain", "-m", "custom", "-t", "The cat sat on the", "--target", " mat",
                             "--method", "attention_rollout"), "attention weights", "gradient or perturbation")


def test_nonfinite_warns_and_strict_exits_2(runner, custom_model, tmp_path):
    out_json = tmp_path / "nan.json"
    result = invoke(runner, "explain", "-m", "custom-nan", "-t", "The cat sat on the", "--target", " mat",
                    "--method", "occlusion", "--json", out_json)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "NaN or infinite" in result.stderr
    attr = seqexplain.Attribution.load(out_json)
    assert [0, 1] in attr.meta["nonfinite_cells"]
    shown = invoke(runner, "show", out_json)
    assert shown.exit_code == 0 and "NaN or infinite" in shown.stderr

    strict = invoke(runner, "explain", "-m", "custom-nan", "-t", "The cat sat on the", "--target", " mat",
                    "--method", "occlusion", "--strict")
    assert_user_error(strict, "non-finite")
    ok = invoke(runner, "explain", "-m", "custom", "-t", "The cat sat on the", "--target", " mat",
                "--method", "occlusion", "--strict")
    assert ok.exit_code == 0 and "warning" not in ok.stderr


# ------------------------------------------------------------------------------------------------ reproduce
def test_reproduce_group_lists_verwimp2018(runner):
    result = invoke(runner, "reproduce", "--help")
    assert result.exit_code == 0 and "verwimp2018" in result.stdout


def test_reproduce_missing_module_exits_2(runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "seqexplain.experiments.verwimp2018", None)  # makes the import fail
    assert_user_error(invoke(runner, "reproduce", "verwimp2018", "--quick"), "verwimp2018")


def test_reproduce_passes_arguments_and_maps_errors(runner, monkeypatch, tmp_path):
    calls = []

    def run_reproduction(out_dir, data_root, quick):
        calls.append((out_dir, data_root, quick))
        if data_root is not None and not Path(data_root).exists():
            raise seqexplain.errors.DataError(f"data folder {data_root} is missing; set SEQEXPLAIN_DATA")
        return {"ok": 1}

    fake = types.ModuleType("seqexplain.experiments.verwimp2018")
    fake.run_reproduction = run_reproduction  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seqexplain.experiments.verwimp2018", fake)
    result = invoke(runner, "reproduce", "verwimp2018", "--out", tmp_path / "o", "--quick")
    assert result.exit_code == 0, result.output
    assert calls[-1] == (tmp_path / "o", None, True)
    # an error raised inside a subcommand of a nested group is handled by the root group too
    assert_user_error(invoke(runner, "reproduce", "verwimp2018", "--data-root", tmp_path / "nodata"),
                      "SEQEXPLAIN_DATA")


# ------------------------------------------------------------------------------------------ real process
def test_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, **ENV}
    proc = subprocess.run([sys.executable, "-m", "seqexplain.cli", "explain", "--model", str(tmp_path / "nope"),
                           "--text", "hello"], capture_output=True, text=True, env=env, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().startswith("error:") and "does not exist" in proc.stderr


def test_scores_from_cli_match_api(runner, gpt2_dir, gpt2, tmp_path):
    out_json = tmp_path / "o.json"
    result = invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat sat on the", "--target", " mat",
                    "--method", "occlusion", "--json", out_json)
    assert result.exit_code == 0, result.output
    model, tok = gpt2
    api = seqexplain.explain(seqexplain.load_model(model, tok), "The cat sat on the", " mat", "occlusion")
    got = seqexplain.Attribution.load(out_json)
    np.testing.assert_allclose(got.scores, api.scores, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_reproduce_vafa2021_unknown_experiment_exits_2():
    from typer.testing import CliRunner

    from seqexplain.cli import app

    result = CliRunner().invoke(app, ["reproduce", "vafa2021", "nonsense", "--out", "unused"])
    assert result.exit_code == 2
    assert "unknown experiment" in result.output and "majority_class" in result.output
    assert "Traceback" not in result.output
