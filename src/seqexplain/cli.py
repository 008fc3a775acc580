"""``seqexplain`` command line: a thin layer over the Python API.

Commands: ``explain``, ``methods``, ``show``, ``demo`` and the ``reproduce`` group (one subcommand per paper).
Every :class:`~seqexplain.errors.SeqExplainError` raised by any command (including subcommands other modules
register on :data:`reproduce_app`) is printed as one red line on stderr and the process exits with status 2,
without a traceback: the root group (:class:`ErrorHandlingGroup`) catches them around the whole invocation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from seqexplain.errors import InputError, SeqExplainError

EXIT_USER_ERROR = 2
DEFAULT_MODEL = "smollm2"


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr (the message is printed literally, never as rich markup)."""
    line = Text("error: ", style="bold red")
    line.append(message, style="red")
    _stderr().print(line, soft_wrap=True)


def print_warning(message: str) -> None:
    line = Text("warning: ", style="bold yellow")
    line.append(message, style="yellow")
    _stderr().print(line, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 2."""
    print_error(message)
    raise typer.Exit(EXIT_USER_ERROR)


class ErrorHandlingGroup(TyperGroup):
    """Root command group: turns user errors raised anywhere below it into a message and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeqExplainError as exc:
            fail(str(exc) or type(exc).__name__)


app = typer.Typer(
    name="seqexplain",
    cls=ErrorHandlingGroup,
    help="Explain the predictions of sequence models (causal LMs, encoder-decoders, classifiers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
reproduce_app = typer.Typer(
    help="Reproduce the experiments of a paper (one subcommand per paper).",
    no_args_is_help=True,
)
app.add_typer(reproduce_app, name="reproduce")


class Kind(str, Enum):
    causal = "causal"
    seq2seq = "seq2seq"
    classifier = "classifier"


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


# ----------------------------------------------------------------------------------------------- helpers
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
    """``["steps=20", "rule=riemann"]`` → ``{"steps": 20, "rule": "riemann"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"--option takes key=value (e.g. --option steps=20), got {item!r}")
        out[key] = parse_value(value)
    return out


def load_cli_model(spec: str, kind: str | None = None, status: Any = None, device: str | None = None,
                   allow_new_head: bool = False) -> Any:
    """``smollm2`` (the embedded default), a model directory or a ``.gguf`` file → a wrapped model."""
    from seqexplain.models.loading import check_device, load_model

    if not spec.strip():
        raise InputError(f"--model: the model path is empty; give a model directory, a .gguf file or {DEFAULT_MODEL!r}")
    if device is not None:
        check_device(device)  # before any loading work
    if spec.strip().lower() == DEFAULT_MODEL:
        from seqexplain.models.smollm2 import smollm2

        if kind not in (None, "causal"):
            raise InputError(f"{DEFAULT_MODEL} is a causal LM; drop --kind or use --kind causal")
        return smollm2(status=status, device=device)
    return load_model(spec, kind=kind, device=device, allow_new_head=allow_new_head)  # type: ignore[arg-type]


def _check_outputs(*outputs: tuple[str, Path | None]) -> None:
    """Before any work: each ``(option, path)`` given must be writable without destroying anything (see
    :mod:`seqexplain.atomic`: only a regular file is ever replaced, never a link, folder, FIFO or device), and no
    two options may name the same file."""
    from seqexplain.runs import distinct_outputs, output_file

    for option, path in outputs:
        if path is not None and option.startswith("--"):  # plain names (FILE) are inputs, only compared
            output_file(path, f"{option} file")
    distinct_outputs(*outputs)


def _check_input_file(option: str, path: Path) -> None:
    """A file to read must be a file (a folder or a FIFO gets a message saying so, not "does not exist")."""
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder, not a file; give a JSON file saved with `seqexplain explain "
                         "--json`")
    if path.exists() and not path.is_file():
        raise InputError(f"{option} {path} is not a regular file; give a JSON file saved with `seqexplain explain "
                         "--json`")


def _write(what: str, path: Path, writer: Any) -> None:
    from seqexplain.atomic import UnsafeOutputError

    try:
        writer(path)
    except UnsafeOutputError as exc:  # the path changed since it was checked
        raise InputError(str(exc)) from exc
    except OSError as exc:
        raise InputError(f"cannot write the {what} file {path}: {exc.strerror or exc}") from exc
    _stderr().print(Text(f"wrote {what}: {path}", style="green"), soft_wrap=True)


def _nonfinite_message(n_bad: int, strict_hint: bool) -> str:
    msg = (f"{n_bad} attribution score(s) are NaN or infinite (shown magenta); the model likely overflowed or a "
           "target has probability 0")
    return msg + ("; pass --strict to make this an error" if strict_hint else "")


# display options shared by `explain` and `show`
NUMBERS_OPTION = typer.Option(
    "--numbers/--no-numbers",
    help="Print the scores as numbers (token=score per position, and a top-k table per target) instead of "
    "colours; default: numbers when the output has no colour (not a terminal, NO_COLOR).",
    show_default=False,
)
TOP_K_OPTION = typer.Option(
    "--top-k", min=0, help="Rows of the top-k table per target (default 5 with numbers, none with colours; 0: no "
    "table).", show_default=False,
)


# ---------------------------------------------------------------------------------------------- commands
@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        from seqexplain import __version__

        _stdout().print(f"seqexplain {__version__}")
        raise typer.Exit(0)


@app.command()
def explain(
    text: Annotated[str, typer.Option("--text", "-t", help="Prompt (causal LM), source sentence or input text.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory, a .gguf file, or 'smollm2' "
                                       "(the embedded SmolLM2-135M-Instruct).")] = DEFAULT_MODEL,
    target: Annotated[str | None, typer.Option(help="Continuation / target text / label name or index; "
                                               "default: the model's own prediction.")] = None,
    method: Annotated[str, typer.Option("--method", help="Attribution method (see `seqexplain methods`).")
                      ] = "integrated_gradients",
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="Method option key=value "
                                                    "(repeatable), e.g. -o steps=20.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate when no --target is given (≥ 1).")
                              ] = 10,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut the oldest context tokens when the input "
                                           "is longer than the model's positions.")] = False,
    aggregate: Annotated[Aggregate | None, typer.Option(help="Show (and write to --html) word-level scores "
                                                        "combined this way.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the token-level attribution as JSON.")
                        ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML page.")] = None,
    kind: Annotated[Kind | None, typer.Option(help="Model kind; detected from the model by default.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with status 2 on NaN/infinite scores.")] = False,
    normalize: Annotated[Normalize, typer.Option(help="Display normalisation.")] = Normalize.row_max_abs,
    objective: Annotated[ObjectiveName, typer.Option(help="What is explained: log p(target), p(target), its "
                                                     "logit, or log p(target) − log p(foil).")
                         ] = ObjectiveName.logprob,
    foil: Annotated[str | None, typer.Option(help="With --objective contrast: the foil text (one token per "
                                             "target) or label.")] = None,
    device: Annotated[str | None, typer.Option(help="Device to run on: cpu, cuda, cuda:N.")] = None,
    allow_new_head: Annotated[bool, typer.Option("--allow-new-head", help="With --kind: explain a model whose "
                                                 "head is missing from the weights (initialised at random).")
                              ] = False,
    numbers: Annotated[bool | None, NUMBERS_OPTION] = None,
    top_k: Annotated[int | None, TOP_K_OPTION] = None,
) -> None:
    """Explain a model's prediction of TARGET from TEXT with one method; print a heatmap, write files."""
    from seqexplain.explain import explain as run_explain
    from seqexplain.methods.registry import get_method
    from seqexplain.models.tokenization import token_decoder
    from seqexplain.report import render_console, save_html

    options = parse_options(option)
    get_method(method).check_options(options)  # fail fast, before loading a model
    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens: max_new_tokens must be a positive number of tokens, got {max_new_tokens}")
    _check_outputs(("--json", json_out), ("--html", html_out))
    err = _stderr()
    with err.status(f"loading model {model}") as status:
        wrapped = load_cli_model(model, kind.value if kind else None, status=status.update, device=device,
                                 **({"allow_new_head": True} if allow_new_head else {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        attr = run_explain(wrapped, text, target, method, max_new_tokens=max_new_tokens, truncate=truncate,
                           strict=strict, objective=objective.value, foil=foil, progress=True, **options)
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and "non-finite" not in str(w.message):
            print_warning(str(w.message))
    n_bad = len(attr.nonfinite_cells())
    if n_bad:
        print_warning(_nonfinite_message(n_bad, strict_hint=True))
    shown = attr.aggregate(aggregate.value) if aggregate else attr
    decode = token_decoder(getattr(wrapped, "tokenizer", None))
    render_console(shown, console=_stdout(), normalize=normalize.value, numbers=numbers, top_k=top_k,
                   decode=decode)
    if json_out is not None:
        _write("JSON", json_out, attr.save)
    if html_out is not None:
        _write("HTML", html_out, lambda p: save_html(shown, p, normalize=normalize.value, decode=decode))


@app.command("methods")
def list_methods() -> None:
    """List the registered attribution methods with their options and defaults."""
    from seqexplain.methods.registry import available_methods

    table = Table(title="seqexplain methods", show_lines=True)
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("family")
    table.add_column("description", overflow="fold")
    table.add_column("options: type, range (default)", overflow="fold")
    for m in available_methods():
        opts = "\n".join(f"{k}: {spec.describe()}" for k, spec in m.options().items()) or "—"
        table.add_row(m.name, m.family, m.description, opts)
    _stdout().print(table)


@app.command()
def show(
    file: Annotated[Path, typer.Argument(help="An attribution saved with --json (or Attribution.save).")],
    html_out: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML page.")
                        ] = None,
    aggregate: Annotated[Aggregate | None, typer.Option(help="Show word-level scores combined this way.")] = None,
    normalize: Annotated[Normalize, typer.Option(help="Display normalisation.")] = Normalize.row_max_abs,
    numbers: Annotated[bool | None, NUMBERS_OPTION] = None,
    top_k: Annotated[int | None, TOP_K_OPTION] = None,
) -> None:
    """Render a saved attribution in the terminal (and optionally as HTML)."""
    from seqexplain.attribution import Attribution
    from seqexplain.report import render_console, save_html

    _check_input_file("the attribution file", file)
    _check_outputs(("FILE", file if html_out is not None else None), ("--html", html_out))
    attr = Attribution.load(file)
    shown = attr.aggregate(aggregate.value) if aggregate else attr
    n_bad = len(shown.nonfinite_cells())
    if n_bad:
        print_warning(_nonfinite_message(n_bad, strict_hint=False))
    render_console(shown, console=_stdout(), normalize=normalize.value, numbers=numbers, top_k=top_k)
    if html_out is not None:
        _write("HTML", html_out, lambda p: save_html(shown, p, normalize=normalize.value))


THREADS_HELP = "Torch CPU threads, set before any work (the documented runs used 1)."
SEED_HELP = "Random seed (the documented runs used 0)."


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for demo.html and the JSON files.")] = Path("out/demo"),
    method: Annotated[list[str] | None, typer.Option("--method", help="Method to run (repeatable); default: "
                                                     "integrated_gradients, occlusion, attention_rollout.")
                      ] = None,
) -> None:
    """Explain SmolLM2-135M-Instruct's next word for a fixed prompt with several methods (offline)."""
    from seqexplain.demo import DEFAULT_METHODS, run_demo
    from seqexplain.runs import reproduction

    methods = tuple(method) if method else DEFAULT_METHODS
    command = _command(["seqexplain", "demo"], {"--out": out}, [("--method", m) for m in method or []])
    with reproduction(out, command, threads=None):  # checks --out, locks it
        run_demo(out, methods=methods, console=_stdout())


def _command(prefix: list[str], options: dict[str, Any], repeated: Sequence[tuple[str, str]] = ()) -> str:
    """The shell command that reruns this invocation, every option spelled out (recorded in results files)."""
    from seqexplain.runs import command_line

    return command_line(prefix, (), options) + "".join(f" {command_line([k, v])}" for k, v in repeated)


@reproduce_app.command("vafa2021")
def reproduce_vafa2021(
    experiment: Annotated[str, typer.Argument(help="majority_class, lambada, lambada_compatible, analogies, "
                                                   "analogies_compatible, timing, lm_paired, distractors or "
                                                   "alignments.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/vafa2021"),
    data_root: Annotated[Path | None, typer.Option(help="Data root (default: $SEQEXPLAIN_DATA or ../shared/data).")
                         ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small, fast configuration (smoke test).")] = False,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 1,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
) -> None:
    """Vafa et al. (2021): sequential rationales; one experiment of the paper per call."""
    from seqexplain.experiments.vafa2021 import EXPERIMENTS, run
    from seqexplain.runs import reproduction

    if experiment not in EXPERIMENTS:
        raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    command = _command(["seqexplain", "reproduce", "vafa2021", experiment],
                       {"--out": out, "--data-root": data_root, "--quick": quick, "--threads": threads, "--seed": seed})
    with reproduction(out, command, threads):
        result = run(experiment, out, quick=quick, data_root=data_root, seed=seed)
    table = result.get("markdown") or result.get("table") if isinstance(result, dict) else None
    if table:
        _stdout().print(Text(str(table)))
    _stderr().print(Text(f"vafa2021 {experiment}: results in {out}", style="green"))


@reproduce_app.command("verwimp2018")
def reproduce_verwimp2018(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/verwimp2018"),
    data_root: Annotated[Path | None, typer.Option(help="Data root (default: $SEQEXPLAIN_DATA or ../shared/data).")
                         ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small, fast configuration (smoke test).")] = False,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 1,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
) -> None:
    """Verwimp et al. (2018): state gradients of word-level RNN language models."""
    try:
        from seqexplain.experiments.verwimp2018 import run_reproduction
    except ImportError as exc:
        fail(f"the verwimp2018 reproduction is not available in this installation ({exc})")
    from seqexplain.runs import reproduction

    command = _command(["seqexplain", "reproduce", "verwimp2018"],
                       {"--out": out, "--data-root": data_root, "--quick": quick, "--threads": threads, "--seed": seed})
    with reproduction(out, command, threads):
        result = run_reproduction(out_dir=out, data_root=data_root, quick=quick, seed=seed, command=command)
    _stderr().print(Text(f"verwimp2018: results in {out}", style="green"))
    if result is not None and not isinstance(result, (str, Path)):
        _stdout().print(result)


@reproduce_app.command("bujel2021")
def reproduce_bujel2021(
    experiment: Annotated[str, typer.Argument(help="fce, bioscope or sst.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/bujel2021"),
    data_root: Annotated[Path | None, typer.Option(help="Data root (default: $SEQEXPLAIN_DATA or ../shared/data).")
                         ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A small, fast configuration (smoke test).")] = False,
    threads: Annotated[int, typer.Option("--threads", help=THREADS_HELP)] = 1,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    config: Annotated[Path | None, typer.Option(help="Training config (.conf with the original's keys, .json, "
                                                     ".yaml); unknown keys and wrong types are errors.")] = None,
    max_train: Annotated[int | None, typer.Option(help="Training sentences sampled (0: all).")] = None,
    max_dev: Annotated[int | None, typer.Option(help="Development sentences sampled (0: all).")] = None,
    max_test: Annotated[int | None, typer.Option(help="Test sentences sampled (0: all).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps of the encoder model.")] = None,
    lime_samples: Annotated[int | None, typer.Option(help="LIME perturbations per sentence.")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help="Attribution method (repeatable); default: "
                                                     "gradient_norm, grad_x_input, integrated_gradients, occlusion."
                                                     )] = None,
    on_long: Annotated[str, typer.Option(help="Sentences longer than max_seq_length: truncate (warned, counted) or "
                                              "error.")] = "truncate",
    reduce: Annotated[str, typer.Option(help="Sub-token scores to a word: max, mean, sum or first.")] = "max",
    polarity: Annotated[str, typer.Option(help="sst: positive or negative words.")] = "positive",
    top_count: Annotated[int, typer.Option(help="At most this many positive words per sentence (0: no limit).")] = 0,
) -> None:
    """Bujel et al. (2021): zero-shot token labelling with soft attention over a pretrained encoder."""
    from seqexplain.experiments.bujel2021 import EXPERIMENTS, run
    from seqexplain.runs import reproduction

    if experiment not in EXPERIMENTS:
        raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    command = _command(["seqexplain", "reproduce", "bujel2021", experiment],
                       {"--out": out, "--data-root": data_root, "--quick": quick, "--threads": threads, "--seed": seed,
                        "--config": config, "--max-train": max_train, "--max-dev": max_dev, "--max-test": max_test,
                        "--steps": steps, "--lime-samples": lime_samples, "--on-long": on_long, "--reduce": reduce,
                        "--polarity": polarity, "--top-count": top_count}, [("--method", m) for m in method or []])
    with reproduction(out, command, threads):
        result = run(experiment, out, quick=quick, data_root=data_root, seed=seed, config=config,
                     max_train=max_train, max_dev=max_dev, max_test=max_test, steps=steps, lime_samples=lime_samples,
                     methods=method or None, on_long=on_long, reduce=reduce, polarity=polarity, top_count=top_count)
    _stdout().print(Text(result["markdown"]))
    _stderr().print(Text(f"bujel2021 {experiment}: results in {out}", style="green"))


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
