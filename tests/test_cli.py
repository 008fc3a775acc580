"""The command line: every command works on tiny fixture models, and every user error is one red line on
stderr with exit status 2 and no traceback. The bad inputs shared with the Python API are one table in
``tests/test_bad_input_*.py``; the errors here are the command line's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import seqexplain
from seqexplain.cli import app
from seqexplain.cli_support import parse_options, parse_value

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "HF_HUB_OFFLINE": "1"}


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
    with pytest.raises(seqexplain.errors.InputError, match="--option steps is given twice"):  # the last one won
        parse_options(["steps=8", "rule=riemann", "steps=16"])


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
    flat = " ".join(result.stdout.split())
    assert "steps: int ≥ 1" in flat and "(default 50)" in flat  # options with types, ranges and defaults


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


@pytest.mark.parametrize("model, target, kind, reason", [
    ("bert", None, "classifier", "a classifier model generates nothing"),
    ("gpt2", " mat", None, "--target gives the tokens explained"),
])
def test_an_unused_max_new_tokens_warns(runner, bert_dir, gpt2_dir, model, target, kind, reason):
    """--max-new-tokens was silently ignored for a classifier and beside --target."""
    argv = ["explain", "-m", bert_dir if model == "bert" else gpt2_dir, "-t", "a fine film", "--method",
            "occlusion", "--max-new-tokens", "3", *(["--target", target] if target else []),
            *(["--kind", kind] if kind else [])]
    result = invoke(runner, *argv)
    assert result.exit_code == 0, result.output
    assert f"--max-new-tokens 3 is not used: {reason}" in result.stderr
    quiet = invoke(runner, *argv[:7], *argv[9:])
    assert quiet.exit_code == 0 and "max-new-tokens" not in quiet.stderr


# ------------------------------------------------------ user errors of the command line (shared ones: test_bad_input_*)
def test_truncate_option_cuts_a_long_text(runner, gpt2_dir):
    """The fix the too-long error suggests (tests/test_bad_input_explain.py) works."""
    text = "The cat sat on the mat. " * 60
    ok = invoke(runner, "explain", "-m", gpt2_dir, "-t", text, "--target", " dog", "--method", "occlusion",
                "--truncate")
    assert ok.exit_code == 0, ok.output


def test_option_without_value(runner, gpt2_dir):
    """CLI syntax only (the API takes keyword arguments); unknown option names: tests/test_bad_input_explain.py."""
    assert_user_error(invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "-o", "steps"), "key=value")


def test_smollm2_rejects_other_kind(runner):
    assert_user_error(invoke(runner, "explain", "-m", "smollm2", "-t", "Hi", "--kind", "seq2seq"), "causal")


def test_nonfinite_warns_and_strict_accepts_finite_scores(runner, custom_model, tmp_path):
    """Without --strict non-finite scores are a warning; --strict on NaN scores: tests/test_bad_input_explain.py."""
    out_json = tmp_path / "nan.json"
    result = invoke(runner, "explain", "-m", "custom-nan", "-t", "The cat sat on the", "--target", " mat",
                    "--method", "occlusion", "--json", out_json)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "NaN or infinite" in result.stderr
    attr = seqexplain.Attribution.load(out_json)
    assert [0, 1] in attr.meta["nonfinite_cells"]
    shown = invoke(runner, "show", out_json)
    assert shown.exit_code == 0 and "NaN or infinite" in shown.stderr

    ok = invoke(runner, "explain", "-m", "custom", "-t", "The cat sat on the", "--target", " mat",
                "--method", "occlusion", "--strict")
    assert ok.exit_code == 0 and "warning" not in ok.stderr


# ------------------------------------------------------------------------------------------------ reproduce
def test_reproduce_group_lists_verwimp2018(runner):
    result = invoke(runner, "reproduce", "--help")
    assert result.exit_code == 0 and "verwimp2018" in result.stdout


def test_reproduce_missing_module_exits_2(runner, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "seqexplain.experiments.verwimp2018", None)  # makes the import fail
    monkeypatch.chdir(tmp_path)  # the default --out is out/verwimp2018 under the working folder
    assert_user_error(invoke(runner, "reproduce", "verwimp2018", "--quick"), "verwimp2018")
    assert not (tmp_path / "out").exists()  # refused before the out folder is made and locked


def test_reproduce_interrupted_says_what_is_kept(runner, monkeypatch, tmp_path):
    """Ctrl-C during a reproduction: exit 130 with one warning line saying the folder keeps its files and a rerun
    goes on from them; no traceback, and the folder's lock is released (a rerun starts)."""
    def run_reproduction(out_dir, data_root, quick, **_):
        raise KeyboardInterrupt

    fake = types.ModuleType("seqexplain.experiments.verwimp2018")
    fake.run_reproduction = run_reproduction  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seqexplain.experiments.verwimp2018", fake)
    for _ in range(2):
        result = invoke(runner, "reproduce", "verwimp2018", "--out", tmp_path / "o", "--quick")
        assert result.exit_code == 130, result.output
        assert "Traceback" not in result.output and "interrupted" in result.stderr
        assert "rerunning the same command reuses" in result.stderr


def test_explain_interrupted_is_one_line(runner, monkeypatch, tmp_path, gpt2_dir):
    """Ctrl-C inside ``explain`` (here while the method runs): exit 130 with one warning line, no traceback and no
    half-written output file."""
    import importlib

    explain_module = importlib.import_module("seqexplain.explain")  # the module, not the function it exports

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain_module, "explain", interrupted)
    result = invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "--target", " sat", "--method",
                    "gradient_norm", "--json", tmp_path / "a.json")
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.strip()][-1].startswith("warning: interrupted")
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(("argv", "fragment"), [
    (["explain", "-t", "x", "--aggregate", "median"], "Invalid value for '--aggregate': 'median' is not one of"),
    (["explain", "-t", "x", "--top-k", "-1"], "Invalid value for '--top-k'"),
    (["explain", "-t", "x", "--bogus"], "No such option: --bogus"),
    (["explain"], "Missing option '--text'"),
])
def test_usage_errors_of_the_option_parser_are_one_line(runner, argv, fragment):
    """typer's own checks printed a boxed multi-line panel, not the one error line every other error gets."""
    result = invoke(runner, *argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert lines[0].endswith("see `seqexplain explain --help`") and "╭" not in result.output


@pytest.mark.parametrize("argv", [
    ["demo", "--out", ""],
    ["explain", "-t", "x", "--json", ""],
    ["explain", "-t", "x", "--html", " "],
    ["show", ""],
    ["run", ""],
    ["reproduce", "vafa2021", "--out", ""],
    ["reproduce", "verwimp2018", "--quick", "--docs", ""],
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(runner, argv):
    """Path("") is the current folder: ``--out ""`` wrote the demo into it, and ``--json ""`` named a folder."""
    result = invoke(runner, *argv)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "is empty; give a path (. for the current folder)" in lines[0], result.output


@pytest.mark.parametrize("name", ["a.safetensors", "a.SafeTensors"])
def test_a_safetensors_output_is_named_so(runner, gpt2_dir, tmp_path, name):
    """``--json a.safetensors`` writes safetensors (Attribution.save goes by the suffix); it printed "wrote JSON".
    The suffix in another case (``.SafeTensors``) wrote a JSON document under a safetensors name."""
    result = invoke(runner, "explain", "-m", gpt2_dir, "-t", "The cat", "--target", " sat", "--method",
                    "gradient_norm", "--json", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert "wrote safetensors" in result.output and "wrote JSON" not in result.output
    assert (tmp_path / name).read_bytes()[8:9] == b"{"  # a safetensors header, not a JSON document
    shown = invoke(runner, "show", tmp_path / name)
    assert shown.exit_code == 0 and "gradient_norm" in shown.output, shown.output


def test_an_output_file_named_like_a_folder_is_refused_and_home_is_expanded(runner, monkeypatch, tmp_path):
    """``--json newdir/`` wrote a file named ``newdir``, and ``--json=~/a.json`` (which no shell expands) a folder
    named ``~``."""
    result = invoke(runner, "explain", "-t", "x", "--json", str(tmp_path / "newdir") + "/")
    assert result.exit_code == 2 and "names a folder; give a file name" in result.output, result.output
    from seqexplain.cli_support import path_value

    monkeypatch.setenv("HOME", str(tmp_path))
    assert path_value("~/a.json") == tmp_path / "a.json"


@pytest.mark.parametrize(("argv", "fragment"), [
    (["reproduce", "vafa2021", "majority_class", "--quick", "--threads", "100000"],
     "--threads must be between 1 and 512"),  # the process crashed starting the threads
    (["run", "CONFIG", "--threads", "100000"], "--threads must be between 1 and 512"),
    (["reproduce", "eraser_movies", "train", "--quick", "--lr", "inf"], "--lr must be a finite number"),
])
def test_out_of_range_numbers_are_refused_before_any_work(runner, tmp_path, argv, fragment):
    config = tmp_path / "c.toml"
    config.write_text('[data]\nformat = "jsonl"\npath = "d.jsonl"\n[model]\npath = "m"\n[[methods]]\n'
                      'name = "occlusion"\n[output]\ndir = "out"\n', encoding="utf-8")
    argv = [str(config) if a == "CONFIG" else a for a in argv]
    result = invoke(runner, *argv, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_reproduce_passes_arguments_and_maps_errors(runner, monkeypatch, tmp_path):
    calls = []

    def run_reproduction(out_dir, data_root, quick, **_):
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
    assert_user_error(invoke(runner, "reproduce", "verwimp2018", "--out", tmp_path / "o2", "--data-root",
                             tmp_path / "nodata"),
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


CTRL_C_AT_IMPORT = """
import importlib.abc, os, signal, sys
class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)  # the handler raises KeyboardInterrupt inside this import
sys.meta_path.insert(0, CtrlC())
if {module!r} == "get_command":  # typer builds the click command from the app on every call
    import typer.main
    real = typer.main.get_command
    def get_command(app):
        os.kill(os.getpid(), signal.SIGINT)
        return real(app)
    typer.main.get_command = get_command
sys.argv[0] = {argv0!r}
from seqexplain.cli import app
sys.exit(app(["methods"]))
"""


@pytest.mark.parametrize("module", ["torch", "seqexplain.cli_reproduce", "seqexplain.experiments.registry",
                                    "get_command"])
@pytest.mark.parametrize("argv0", ["seqexplain", "python-program"])
def test_ctrl_c_while_starting_is_one_line_in_the_command_only(tmp_path, module, argv0):
    """Ctrl-C while torch (package) or the command line's own modules import, while the reproductions register, or
    while typer builds the command (before the command's own handler): the console script prints one line and exits
    130, no traceback; a program importing seqexplain gets its KeyboardInterrupt."""
    script = tmp_path / "start.py"
    script.write_text(CTRL_C_AT_IMPORT.format(module=module, argv0=str(tmp_path / argv0)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env={**os.environ, **ENV},
                          timeout=300, stdin=subprocess.DEVNULL)
    if argv0 == "seqexplain":
        assert (proc.returncode, proc.stderr, proc.stdout) == (130, "warning: interrupted\n", "")
    else:
        assert proc.returncode == -signal.SIGINT and proc.stderr.rstrip().endswith("KeyboardInterrupt"), proc.stderr


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


def test_seqexplains_own_python_warnings_are_one_warning_line(capsys):
    """A reproduction's analyses warn through Python's ``warnings``; the console showed them in Python's format (the
    source file and line, then the code line). The CLI shows seqexplain's as one ``warning:`` line; another
    library's keep Python's format."""
    import warnings

    import seqexplain.analysis.path_explanations as ours
    from seqexplain.cli_support import cli_warnings

    passed_on = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, *_: passed_on.append((filename, message))
        with cli_warnings():
            warnings.warn_explicit("integrated_gradients: 1 of 40 documents: misses", RuntimeWarning, ours.__file__, 7)
            warnings.warn_explicit("a library's own", UserWarning, "/elsewhere/lib.py", 3)
    err = capsys.readouterr().err
    assert "warning: integrated_gradients: 1 of 40 documents: misses" in err
    assert "path_explanations.py" not in err and "RuntimeWarning" not in err
    assert [(f, str(m)) for f, m in passed_on] == [("/elsewhere/lib.py", "a library's own")]  # shown as before


def test_no_progress_turns_the_hugging_face_bars_off_for_the_reproduction_only():
    """``reproduce … --no-progress`` still showed transformers' "Loading weights" and "Writing model shards" bars."""
    from transformers.utils import logging as hf_logging

    from seqexplain.cli_reproduce import _library_bars

    assert hf_logging.is_progress_bar_enabled()
    with _library_bars(False):
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    with _library_bars(True):
        assert hf_logging.is_progress_bar_enabled()


def test_a_state_gradient_delay_past_the_segments_is_refused_before_training(runner, tmp_path):
    """``reproduce verwimp2018 --quick --max-delay 100000`` trained, then filled 16 GB with zero Jacobians for
    delays that cannot exist (gradients stop at the 30-token segments of the quick setting). One line, exit 2,
    before any training: nothing in the output folder but its lock."""
    result = invoke(runner, "reproduce", "verwimp2018", "--quick", "--no-progress", "--out", tmp_path / "o",
                    "--max-delay", "30")
    assert_user_error(result, "--max-delay 30 reaches past the segments of 30 tokens")
    assert "give --max-delay <= 29" in " ".join(result.output.split())
    assert not (tmp_path / "o" / "training").exists() and not (tmp_path / "o" / "model").exists()
