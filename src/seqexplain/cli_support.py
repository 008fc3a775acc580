"""Building blocks of the ``seqexplain`` command line (:mod:`seqexplain.cli`): consoles, user-error output, option
parsing and the choice enums.

* :func:`stdout_console` / :func:`stderr_console`: rich consoles without highlighting.
* :func:`print_error` / :func:`print_warning`: one red ``error:`` / yellow ``warning:`` line on stderr;
  :func:`fail` prints an error and exits with :data:`EXIT_USER_ERROR` (2).
* :class:`ErrorHandlingGroup`: the root command group; every :class:`~seqexplain.errors.SeqExplainError` raised
  below it, and every usage error of the option parser, becomes one error line and exit status 2, without a
  traceback or a boxed panel.
* :func:`parse_value` / :func:`parse_options`: ``--option key=value`` values.
* :class:`Kind`, :class:`ObjectiveName`, :class:`Aggregate`, :class:`Normalize`: the choices of ``explain`` and
  ``show``.
* :func:`rerun_command`: the shell command that reruns an invocation (recorded in results files).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

import click
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from seqexplain.errors import InputError, SeqExplainError
from seqexplain.startup import EXIT_INTERRUPTED

EXIT_USER_ERROR = 2


def stdout_console() -> Console:
    """A rich console on stdout, without automatic highlighting."""
    return Console(highlight=False)


def stderr_console() -> Console:
    """A rich console on stderr, without automatic highlighting."""
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr (the message is printed literally, never as rich markup)."""
    line = Text("error: ", style="bold red")
    line.append(message, style="red")
    stderr_console().print(line, soft_wrap=True)


def print_warning(message: str) -> None:
    line = Text("warning: ", style="bold yellow")
    line.append(message, style="yellow")
    stderr_console().print(line, soft_wrap=True)


@contextlib.contextmanager
def cli_warnings() -> Iterator[None]:
    """While active, a Python warning issued by seqexplain's own modules (a reproduction's analyses, a data reader)
    is shown as the CLI's one ``warning:`` line, its message only (Python's format adds the source file, line and
    code, which a user cannot act on); other libraries' warnings are shown as Python shows them."""
    from seqexplain.runs.warning_log import from_seqexplain

    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if from_seqexplain(filename):
            print_warning(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 2."""
    print_error(message)
    raise typer.Exit(EXIT_USER_ERROR)


def path_value(value: str | Path) -> Path:
    """A path given on the command line, ``~`` expanded (a shell leaves ``--json=~/a.json`` as it is). An empty one
    is refused: it would silently mean the current folder."""
    if not str(value).strip():
        raise typer.BadParameter("is empty; give a path (. for the current folder)")
    return Path(value).expanduser()


def file_value(value: str | Path) -> Path:
    """:func:`path_value` of a file to write: a path ending with a separator names a folder, and is refused."""
    if str(value).endswith(("/", os.sep)):
        raise typer.BadParameter(f"{value} names a folder; give a file name (e.g. {str(value)}result.json)")
    return path_value(value)


def path_option(*names: str, file: bool = False, **options: Any) -> Any:
    """``typer.Option`` for a path: an empty value is refused (:func:`path_value`; with ``file``, one naming a
    folder too: :func:`file_value`)."""
    return typer.Option(*names, parser=file_value if file else path_value, metavar="PATH", **options)


def path_argument(metavar: str, **options: Any) -> Any:
    """``typer.Argument`` for a path: an empty value is refused (:func:`path_value`)."""
    return typer.Argument(parser=path_value, metavar=metavar, **options)


class ErrorHandlingGroup(TyperGroup):
    """Root command group: turns user errors raised anywhere below it into a message and exit status 2, and Ctrl-C
    into one warning line and exit status 130 (commands with work to keep, ``run`` and ``reproduce``, say what is
    kept themselves before this)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        """click's main, with its own usage errors (a bad choice, a value out of range, an unknown option) as one
        ``error:`` line naming the command's ``--help`` and exit status 2, instead of a boxed panel."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            print_warning("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except typer.TyperException as exc:  # the parser's usage errors (typer's own click), and click's others
            status = int(getattr(exc, "exit_code", 1))
            ctx = getattr(exc, "ctx", None)
            where = f"; see `{ctx.command_path} --help`" if status == EXIT_USER_ERROR and ctx is not None else ""
            message = " ".join((exc.format_message() if hasattr(exc, "format_message") else str(exc)).split())
            if message:  # (none when the help was printed instead: a group called without a command)
                print_error(message.replace("Value error, ", "").rstrip(".") + where)
            sys.exit(status)
        # the status of an Exit (click returns it in this mode; seqexplain's commands themselves return None)
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeqExplainError as exc:
            fail(str(exc) or type(exc).__name__)
        except KeyboardInterrupt:
            print_warning("interrupted; files are written whole or not at all, so only those reported as written "
                          "above exist")
            raise typer.Exit(EXIT_INTERRUPTED) from None


class Kind(str, Enum):
    causal = "causal"
    seq2seq = "seq2seq"
    classifier = "classifier"
    labeller = "labeller"


class ObjectiveName(str, Enum):
    logprob = "logprob"
    prob = "prob"
    logit = "logit"
    contrast = "contrast"


class Aggregate(str, Enum):
    sum = "sum"
    mean = "mean"
    max = "max"
    absmax = "absmax"


class Normalize(str, Enum):
    none = "none"
    max_abs = "max_abs"
    row_max_abs = "row_max_abs"
    row_sum_abs = "row_sum_abs"


def parse_value(raw: str) -> Any:
    """``--option`` values: ``true``/``false`` → bool, ``none``/``null`` → None, a JSON object ``{...}`` → dict,
    then int, float, else str."""
    low = raw.strip().lower()
    if low.startswith("{"):
        import json

        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"option value {raw!r} starts like a JSON object but is not one: {exc}") from exc
        if not isinstance(value, dict):
            raise InputError(f"option value {raw!r} must be a JSON object")
        return value
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["steps=20", "rule=riemann"]`` → ``{"steps": 20, "rule": "riemann"}``; a key given twice is an
    :class:`InputError` (the last value won silently)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--option takes key=value (e.g. --option steps=20), got {item!r}")
        if key in out:
            raise InputError(f"--option {key} is given twice ({out[key]!r} and {parse_value(value)!r}); give it once")
        out[key] = parse_value(value)
    return out


def rerun_command(prefix: list[str], options: dict[str, Any], repeated: Sequence[tuple[str, str]] = ()) -> str:
    """The shell command that reruns this invocation, every option spelled out (recorded in results files)."""
    from seqexplain.runs import command_line

    return command_line(prefix, (), options) + "".join(f" {command_line([k, v])}" for k, v in repeated)


def skipped_message(n_skipped: int, shards: list[dict[str, Any]] | None) -> str:
    """The warning for a run's skipped examples, counted by reason from the manifest's ``shards`` (each with its
    ``skipped`` list of ``{index, id, reason}``); the ``--truncate`` advice only when some were too long."""
    reasons = [k.get("reason", "") for shard in shards or [] for k in shard.get("skipped", [])]
    if len(reasons) != n_skipped:  # no manifest to count from
        return (f"{n_skipped} example(s) were skipped, too long or with nothing the tokenizer reads (each listed with "
                "its reason in manifest.json); to cut too-long ones instead, rerun with --truncate and another --out "
                "(this folder keeps its configuration)")
    from seqexplain.runs.compute import count_skips

    too_long, unreadable = count_skips(reasons)
    parts = [f"{too_long} too long"] * bool(too_long) + [f"{unreadable} with nothing the tokenizer reads"] * bool(
        unreadable)
    advice = ("; to cut too-long ones instead, rerun with --truncate and another --out (this folder keeps its "
              "configuration)") if too_long else ""
    return (f"{n_skipped} example(s) were skipped: {', '.join(parts)} (each listed with its reason in "
            f"manifest.json){advice}")


__all__ = ["EXIT_USER_ERROR", "Aggregate", "ErrorHandlingGroup", "Kind", "Normalize", "ObjectiveName", "cli_warnings",
           "fail", "parse_options", "parse_value", "print_error", "print_warning", "rerun_command", "skipped_message",
           "stderr_console", "stdout_console"]
