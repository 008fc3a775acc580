"""Every bad input a user can give, through the Python API and through the command line, in one table.

Each row is one mistake. The API call must raise the row's exception class with a message holding every
fragment; the same mistake on the command line (typer's ``CliRunner``) must exit with status 2 (a handled
``SystemExit``, not a crash), print one ``error:`` line on stderr holding every fragment (and the row's CLI-only
fragments), and print no traceback.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import seqexplain
from seqexplain.cli import app
from seqexplain.cli import parse_options as cli_parse_options
from seqexplain.errors import (
    DataError,
    InputError,
    ModelLoadError,
    NonFiniteScoresError,
    UnknownMethodError,
    UnsupportedError,
)

METHODS = tuple(m.name for m in seqexplain.available_methods())
LONG_TEXT = "The cat sat on the mat. " * 60  # far more than the fixture's 128 positions
PROMPT = "The cat sat on the"


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Any], Any]  # ctx -> an argument for api and cli (a path, ...)
    api: Callable[[Any, Any], object]  # (ctx, arg) -> the call that must raise
    cli: Callable[[Any, Any], list[Any]]  # (ctx, arg) -> argv
    error: type[BaseException]
    fragments: tuple[str, ...]
    cli_fragments: tuple[str, ...] = ()


def _nothing(ctx: Any) -> None:
    return None


def _copy_gpt2(ctx: Any) -> Path:
    return Path(shutil.copytree(ctx.gpt2_dir, ctx.tmp / "model"))


def _corrupt_config(ctx: Any) -> Path:
    path = _copy_gpt2(ctx)
    (path / "config.json").write_text("{ this is not json", encoding="utf-8")
    return path


def _truncated_weights(keep: Callable[[int], int]) -> Callable[[Any], Path]:
    def setup(ctx: Any) -> Path:
        path = _copy_gpt2(ctx)
        weights = path / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: keep(len(data))])
        return path

    return setup


def _file(content: str | None) -> Callable[[Any], Path]:
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / "x.json"
        if content is not None:
            path.write_text(content, encoding="utf-8")
        return path

    return setup


def _blocked_output(ctx: Any) -> Path:
    blocker = ctx.tmp / "file"
    blocker.write_text("x", encoding="utf-8")
    return blocker / "sub" / "a.json"  # its folder would have to be created inside a file


def _explain_argv(model: Any, text: str, *rest: Any) -> list[Any]:
    return ["explain", "-m", model, "-t", text, *rest]


OPTION_ROWS: list[tuple[str, str, dict[str, Any] | None, str, tuple[str, ...]]] = [
    # (id, method, options given to the API (None: the CLI's parser alone), the CLI's -o value, fragments)
    ('steps that is not a number', 'integrated_gradients', {'steps': 'abc'}, 'steps=abc',
     ('steps', 'int ≥ 1', "'abc'")),
    ('steps that is a fraction', 'integrated_gradients', {'steps': 1.5}, 'steps=1.5',
     ('steps', 'int ≥ 1', '1.5')),
    ('steps that is a boolean', 'integrated_gradients', {'steps': True}, 'steps=true',
     ('steps', 'int ≥ 1', 'True')),
    ('steps below its range', 'integrated_gradients', {'steps': 0}, 'steps=0',
     ('steps', 'int ≥ 1', '0')),
    ('token_budget that is not a number', 'occlusion', {'token_budget': 'abc'}, 'token_budget=abc',
     ('token_budget', 'int ≥ 1')),
    ('token_budget below its range', 'gradient_norm', {'token_budget': -5}, 'token_budget=-5',
     ('token_budget', 'int ≥ 1')),
    ('max_size that is not a number', 'greedy', {'max_size': 'abc'}, 'max_size=abc',
     ('max_size', 'int ≥ 1')),
    ('max_size of zero', 'exhaustive', {'max_size': 0}, 'max_size=0',
     ('max_size', 'int ≥ 1')),
    ('unknown quadrature rule', 'integrated_gradients', {'rule': 'simpson'}, 'rule=simpson',
     ('rule', 'gausslegendre')),
    ('order_options that is not a mapping', 'baseline_rationale', {'order_options': 'steps'}, 'order_options=steps',
     ('order_options', 'dict')),
    ('order_options that is broken JSON', 'baseline_rationale', None, 'order_options={steps: 2',
     ('JSON object',)),
    ('replace_with id outside the vocabulary', 'occlusion', {'replace_with': 99999}, 'replace_with=99999',
     ('99999', 'outside the vocabulary')),
    ('baseline that is a boolean', 'integrated_gradients', {'baseline': True}, 'baseline=true',
     ('baseline', 'str or int')),
]


def _option_case(rid: str, method: str, api_options: dict[str, Any] | None, cli_option: str,
                 fragments: tuple[str, ...]) -> Case:
    """A bad method option: checked from the method's one declaration before any model work."""
    def api(c: Any, _: Any) -> object:
        if api_options is None:
            return cli_parse_options([cli_option])
        return seqexplain.explain(c.causal, PROMPT, " mat", method, **api_options)

    return Case(rid, _nothing, api,
                lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", method, "-o",
                                           cli_option),
                InputError, fragments)


CASES = [
    Case("empty text", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "", " cat", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, "", "--target", " cat", "--method", "occlusion"),
         InputError, ("empty",)),
    Case("blank text", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "   \n", " cat", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, "   \n", "--target", " cat", "--method", "occlusion"),
         InputError, ("empty",)),
    Case("text longer than the positions", _nothing,
         lambda c, _: seqexplain.explain(c.causal, LONG_TEXT, " dog", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, LONG_TEXT, "--target", " dog", "--method", "occlusion"),
         InputError, ("128", "--truncate")),
    Case("unknown method", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "The cat", " sat", "shapley_magic"),
         lambda c, _: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "shapley_magic"),
         UnknownMethodError, ("shapley_magic", *METHODS)),
    Case("unknown option", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "The cat", " sat", "integrated_gradients", n_steps=3),
         lambda c, _: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "integrated_gradients",
                                    "-o", "n_steps=3"),
         InputError, ("n_steps", "steps")),
    Case("unknown label", _nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "happy", "occlusion"),
         lambda c, _: _explain_argv(c.bert_dir, "a fine film", "--target", "happy", "--method", "occlusion"),
         InputError, ("happy", "negative, neutral, positive")),
    Case("label index out of range", _nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", 7, "occlusion"),
         lambda c, _: _explain_argv(c.bert_dir, "a fine film", "--target", "7", "--method", "occlusion"),
         InputError, ("7", "out of range", "negative, neutral, positive")),
    Case("target that tokenizes to nothing", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "The cat", "", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, "The cat", "--target", "", "--method", "occlusion"),
         InputError, ("no tokens",)),
    Case("missing model directory", lambda c: c.tmp / "missing",
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("missing", "does not exist")),
    Case("model directory without config", lambda c: c.tmp,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("no config.json", "not a Hugging Face model directory")),
    Case("corrupt config", _corrupt_config,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("config",)),
    Case("weights cut inside the header", _truncated_weights(lambda n: 1000),
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("weights",)),
    Case("weights cut inside the tensors", _truncated_weights(lambda n: n // 3),
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("weights",)),
    Case("attribution file that is not JSON", _file("[1, 2"),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("x.json", "not a readable")),
    # (this message does not name the file, unlike the other DataErrors: Attribution.load re-raises from_dict's)
    Case("attribution file without an attribution", _file('{"hello": 1}'),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("not a seqexplain attribution file", "format")),
    Case("missing attribution file", _file(None),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("x.json", "does not exist")),
    # the API passes the operating system's error on; the CLI names the file it could not write
    Case("unwritable output", _blocked_output,
         lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--json", path),
         NotADirectoryError, ("Not a directory",), ("cannot write", "a.json")),
    Case("attention_last without attention weights", _nothing,
         lambda c, _: seqexplain.explain(c.no_attention(), PROMPT, " mat", "attention_last"),
         lambda c, _: _explain_argv("custom", PROMPT, "--target", " mat", "--method", "attention_last"),
         UnsupportedError, ("attention weights", "gradient or perturbation")),
    Case("attention_rollout without attention weights", _nothing,
         lambda c, _: seqexplain.explain(c.no_attention(), PROMPT, " mat", "attention_rollout"),
         lambda c, _: _explain_argv("custom", PROMPT, "--target", " mat", "--method", "attention_rollout"),
         UnsupportedError, ("attention weights", "gradient or perturbation")),
    *[_option_case(*row) for row in OPTION_ROWS],
    Case("foil that tokenizes to nothing", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "gradient_norm", objective="contrast", foil=""),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "gradient_norm",
                                    "--objective", "contrast", "--foil", ""),
         InputError, ("foil", "no tokens")),
    Case("contrast without a foil", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "gradient_norm", objective="contrast"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "gradient_norm",
                                    "--objective", "contrast"),
         InputError, ("needs a foil",)),
    Case("foil with another number of tokens than the target", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", objective="contrast",
                                         foil=" log and the dog"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "occlusion",
                                    "--objective", "contrast", "--foil", " log and the dog"),
         InputError, ("one foil token per target",)),
    Case("non-finite scores with strict", _nothing,
         lambda c, _: seqexplain.explain(c.no_attention(nan_when_dropped=True), PROMPT, " mat", "occlusion",
                                         strict=True),
         lambda c, _: _explain_argv("custom-nan", PROMPT, "--target", " mat", "--method", "occlusion", "--strict"),
         NonFiniteScoresError, ("non-finite", "input 1")),
]


@pytest.fixture()
def ctx(gpt2, bert, gpt2_dir, bert_dir, tmp_path, no_attention_lm, custom_model):
    return SimpleNamespace(causal=seqexplain.load_model(*gpt2), classifier=seqexplain.load_model(*bert),
                           gpt2_dir=gpt2_dir, bert_dir=bert_dir, tmp=tmp_path, no_attention=no_attention_lm)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx, runner):
    arg = case.setup(ctx)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error itself, not a warning on the way to it
        with pytest.raises(case.error) as excinfo:
            case.api(ctx, arg)
    assert type(excinfo.value) is case.error  # the class itself, not just a subclass
    message = str(excinfo.value)
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)

    result = runner.invoke(app, [str(a) for a in case.cli(ctx, arg)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr  # one error line (model loading may print progress bars before it)
    for fragment in case.fragments + case.cli_fragments:
        assert fragment in errors[0], (fragment, errors[0])
