"""The ``seqexplain reproduce <paper>`` subcommands, generated from the experiment registry
(:mod:`seqexplain.experiments.registry`): :func:`register_reproductions` adds one typer command per paper to the
``reproduce`` group of :mod:`seqexplain.cli`; :func:`reproduce_command` builds one of them (its parameters:
:func:`reproduce_parameters`, the options every recipe takes, then the paper's own).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from seqexplain.cli_support import (
    EXIT_INTERRUPTED,
    path_option,
    print_warning,
    rerun_command,
    stderr_console,
    stdout_console,
)

THREADS_HELP = "Torch CPU threads, set before any work (the documented runs used 1)."
SEED_HELP = "Random seed, 0 to 2147483647 (the documented runs used 0)."


def reproduce_parameters(paper: Any) -> list[inspect.Parameter]:
    """The typer parameters of ``seqexplain reproduce <paper>``: the experiment (unless the paper has one), the
    options every recipe takes, then the paper's own (default ``None`` / off = not given)."""
    kw = inspect.Parameter.KEYWORD_ONLY
    names = ", ".join(e.name for e in paper.experiments)
    params = [] if paper.single else [inspect.Parameter(
        "experiment", kw, annotation=Annotated[str, typer.Argument(help=f"One of: {names}.", show_default=False)])]
    common: list[tuple[str, Any, Any]] = [
        ("out", Annotated[Path, path_option("--out", help="Output folder.")], Path(f"out/{paper.name}")),
        ("data_root", Annotated[Path | None, path_option(
            "--data-root", help="Data root (default: $SEQEXPLAIN_DATA or ../shared/data).")], None),
        ("quick", Annotated[bool, typer.Option("--quick", help="A small, fast configuration (smoke test).")], False),
        ("threads", Annotated[int, typer.Option("--threads", help=THREADS_HELP)], 1),
        ("seed", Annotated[int, typer.Option("--seed", help=SEED_HELP)], 0),
        ("no_progress", Annotated[bool, typer.Option("--no-progress", help="No progress bars.")], False),
    ]
    params += [inspect.Parameter(n, kw, annotation=a, default=d) for n, a, d in common]
    for option in paper.options:
        users = ", ".join(e.name for e in paper.experiments if option.name in e.options)
        extra = f" One of: {', '.join(option.choices)}." if option.choices else ""
        help_text = f"{option.help}{extra}" + ("" if paper.single else f" (Used by: {users}.)")
        kind = bool if option.type is bool else str if option.type is list else option.type
        make = path_option if kind is Path else typer.Option
        annotation = (Annotated[bool, typer.Option(option.flag, help=help_text)] if kind is bool else
                      Annotated[kind | None, make(option.flag, help=help_text, show_default=False)])
        default = False if kind is bool else None
        params.append(inspect.Parameter(option.name, kw, annotation=annotation, default=default))
    return params


@contextlib.contextmanager
def _library_bars(shown: bool) -> Iterator[None]:
    """Hugging Face's own progress bars (loading and saving weights) off for the block unless ``shown``
    (``--no-progress`` silences every bar, not only seqexplain's)."""
    if shown:
        yield
        return
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def reproduce_command(paper: Any) -> Any:
    """The typer command of one registry paper (:mod:`seqexplain.experiments.registry`)."""

    def command(**values: Any) -> None:
        from seqexplain.experiments.registry import check_options, check_seed, resolve, run_experiment
        from seqexplain.runs import reproduction

        experiment = paper.experiment(values.pop("experiment", None))
        out, data_root, quick = values.pop("out"), values.pop("data_root"), values.pop("quick")
        threads, seed, no_progress = values.pop("threads"), values.pop("seed"), values.pop("no_progress")
        check_seed(seed)
        check_options(paper, experiment, values)  # before anything is written,
        resolve(paper, experiment)  # as is importing the runner: a missing module leaves no locked out folder
        given = {o.flag: values[o.name] for o in paper.options}
        prefix = ["seqexplain", "reproduce", paper.name] + ([] if paper.single else [experiment.name])
        command_text = rerun_command(prefix, {"--out": out, "--data-root": data_root, "--quick": quick,
                                              "--threads": threads, "--seed": seed, "--no-progress": no_progress,
                                              **given})
        try:
            with reproduction(out, command_text, threads), _library_bars(not no_progress):
                result = run_experiment(paper.name, None if paper.single else experiment.name, out, quick=quick,
                                        data_root=data_root, seed=seed, progress=not no_progress, threads=threads,
                                        command=command_text, **values)
        except KeyboardInterrupt:
            print_warning(f"interrupted; {out} keeps what was written so far — rerunning the same command reuses what "
                          "the recipe can (finished models, checkpoints, dumps) and redoes the rest")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        table = (result.get("markdown") or result.get("table")) if isinstance(result, dict) else None
        if table:
            stdout_console().print(Text(str(table)))
        label = paper.name if paper.single else f"{paper.name} {experiment.name}"
        stderr_console().print(Text(f"{label}: results in {out}", style="green"))

    params = reproduce_parameters(paper)
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    listing = "\n\n".join(f"{e.name}: {e.description}" for e in paper.experiments)
    command.__doc__ = f"{paper.title}\n\n{listing}"
    return command


def register_reproductions(group: typer.Typer) -> None:
    """One subcommand of ``group`` (the ``reproduce`` group) per paper of the experiment registry."""
    from seqexplain.experiments.registry import PAPERS

    for paper in PAPERS.values():
        group.command(paper.name)(reproduce_command(paper))


__all__ = ["SEED_HELP", "THREADS_HELP", "register_reproductions", "reproduce_command", "reproduce_parameters"]
