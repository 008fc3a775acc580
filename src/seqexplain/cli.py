"""``seqexplain`` command line: a thin layer over the Python API.

Commands: ``explain``, ``methods``, ``show``, ``demo``, ``run`` and the ``reproduce`` group (one subcommand per paper).
Every :class:`~seqexplain.errors.SeqExplainError` raised by any command (including subcommands other modules
register on :data:`reproduce_app`) is printed as one red line on stderr and the process exits with status 2,
without a traceback: the root group (:class:`~seqexplain.cli_support.ErrorHandlingGroup`) catches them around the
whole invocation. Consoles, error output, option parsing and the choice enums live in :mod:`seqexplain.cli_support`;
the ``reproduce`` subcommands are generated from the experiment registry by :mod:`seqexplain.cli_reproduce`.
"""

from __future__ import annotations

from seqexplain.startup import interruptible_start

with interruptible_start():
    import warnings
    from pathlib import Path
    from typing import Annotated, Any

    import typer
    from rich.table import Table
    from rich.text import Text

    from seqexplain.cli_reproduce import register_reproductions
    from seqexplain.cli_support import (
        EXIT_INTERRUPTED,
        Aggregate,
        ErrorHandlingGroup,
        Kind,
        Normalize,
        ObjectiveName,
        cli_warnings,
        parse_options,
        path_argument,
        path_option,
        print_warning,
        rerun_command,
        skipped_message,
        stderr_console,
        stdout_console,
    )
    from seqexplain.errors import InputError

DEFAULT_MODEL = "smollm2"


class _App(typer.Typer):
    """The root app: typer builds the click command (reading every command's signature) on each call, before the
    command's own Ctrl-C handler exists; a Ctrl-C there is one line and exit 130 too."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with interruptible_start(), cli_warnings():
            return super().__call__(*args, **kwargs)


app = _App(
    name="seqexplain",
    cls=ErrorHandlingGroup,
    help="Explain the predictions of sequence models (causal LMs, encoder-decoders, classifiers, token labellers).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
reproduce_app = typer.Typer(
    help="Reproduce the experiments of a paper (one subcommand per paper).",
    no_args_is_help=True,
)
app.add_typer(reproduce_app, name="reproduce")


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
    stderr_console().print(Text(f"wrote {what}: {path}", style="green"), soft_wrap=True)


def _nonfinite_message(n_bad: int, strict_hint: bool) -> str:
    msg = (f"{n_bad} attribution score(s) are NaN or infinite (flagged: magenta in colour, '!' after the number); "
           "the model likely overflowed or a target has probability 0")
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

        stdout_console().print(f"seqexplain {__version__}")
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
    max_new_tokens: Annotated[int | None, typer.Option(help="Tokens to generate when no --target is given (≥ 1; "
                                                       "default 10). A language or translation model only.")
                              ] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut an input longer than the model's positions: "
                                           "a prompt loses its oldest tokens, a source or classifier input its "
                                           "end (the result warns how many).")] = False,
    aggregate: Annotated[Aggregate | None, typer.Option(help="Show (and write to --html) word-level scores "
                                                        "combined this way.")] = None,
    json_out: Annotated[Path | None, path_option("--json", file=True, help="Write the token-level attribution as "
                                                 "JSON (.safetensors: the scores as a tensor).")] = None,
    html_out: Annotated[Path | None, path_option("--html", file=True, help="Write a self-contained HTML page.")] = None,
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
    from seqexplain.attribution_io import is_safetensors
    from seqexplain.explain import explain as run_explain
    from seqexplain.methods.registry import get_method
    from seqexplain.models.tokenization import token_decoder
    from seqexplain.report import render_console, save_html

    options = parse_options(option)
    get_method(method).check_options(options)  # fail fast, before loading a model
    if max_new_tokens is not None and max_new_tokens < 1:
        raise InputError(f"--max-new-tokens: max_new_tokens must be a positive number of tokens, got {max_new_tokens}")
    _check_outputs(("--json", json_out), ("--html", html_out))
    err = stderr_console()
    with err.status(f"loading model {model}") as status:
        wrapped = load_cli_model(model, kind.value if kind else None, status=status.update, device=device,
                                 **({"allow_new_head": True} if allow_new_head else {}))
    if max_new_tokens is not None and (target is not None or wrapped.kind not in ("causal", "seq2seq")):
        print_warning(f"--max-new-tokens {max_new_tokens} is not used: " + (
            "--target gives the tokens explained" if wrapped.kind in ("causal", "seq2seq")
            else f"a {wrapped.kind} model generates nothing"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        attr = run_explain(wrapped, text, target, method, max_new_tokens=max_new_tokens or 10, truncate=truncate,
                           strict=strict, objective=objective.value, foil=foil, progress=True, **options)
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and "non-finite" not in str(w.message):
            print_warning(str(w.message))
    n_bad = len(attr.nonfinite_cells())
    if n_bad:
        print_warning(_nonfinite_message(n_bad, strict_hint=True))
    shown = attr.aggregate(aggregate.value) if aggregate else attr
    decode = token_decoder(getattr(wrapped, "tokenizer", None))
    render_console(shown, console=stdout_console(), normalize=normalize.value, numbers=numbers, top_k=top_k,
                   decode=decode)
    if json_out is not None:
        _write("safetensors" if is_safetensors(json_out) else "JSON", json_out, attr.save)
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
    stdout_console().print(table)


@app.command()
def show(
    file: Annotated[Path, path_argument("FILE", help="An attribution saved with --json (or Attribution.save).")],
    html_out: Annotated[Path | None, path_option("--html", file=True, help="Also write a self-contained HTML page.")
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
    render_console(shown, console=stdout_console(), normalize=normalize.value, numbers=numbers, top_k=top_k)
    if html_out is not None:
        _write("HTML", html_out, lambda p: save_html(shown, p, normalize=normalize.value))


@app.command()
def demo(
    out: Annotated[Path, path_option("--out", help="Folder for demo.html and the JSON files.")] = Path("out/demo"),
    method: Annotated[list[str] | None, typer.Option("--method", help="Method to run (repeatable); default: "
                                                     "integrated_gradients, occlusion, attention_rollout.")
                      ] = None,
) -> None:
    """Explain SmolLM2-135M-Instruct's next word for a fixed prompt with several methods (offline)."""
    from seqexplain.demo import DEFAULT_METHODS, run_demo
    from seqexplain.runs import reproduction

    methods = tuple(method) if method else DEFAULT_METHODS
    command = rerun_command(["seqexplain", "demo"], {"--out": out}, [("--method", m) for m in method or []])
    with reproduction(out, command, threads=None):  # checks --out, locks it
        run_demo(out, methods=methods, console=stdout_console())


with interruptible_start():  # it reads the experiment registry
    register_reproductions(reproduce_app)


@app.command("run")
def run_corpus(
    config: Annotated[Path, path_argument("CONFIG", help="The run configuration (.toml or .yaml; see "
                                          "examples/run_sst.toml).", show_default=False)],
    out: Annotated[Path | None, path_option("--out", help="Output folder (overrides output.dir).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch CPU threads (overrides threads; not part "
                                                "of the results' identity).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (overrides seed; another seed is another run, "
                                             "so it needs another output folder).")] = None,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut too-long examples to data.max_length (or the "
                                           "model's maximum) with a warning, instead of skipping them.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar with an ETA "
                                           "on stderr.")] = True,
) -> None:
    """Explain a corpus with several methods, score them, and stream the results to Parquet.

    CONFIG (.toml or .yaml) names the data, model, methods, metrics and output folder.

    Results: OUT/shards/*.parquet, one row per example x method, each shard written atomically.

    When every shard is done: manifest.json, results.parquet, report.html and summary.md.

    Resume: run the same command again; finished shards are kept, the others redone.

    A folder made by another configuration is refused, never mixed.

    Scale-out: torchrun --nproc-per-node N -m seqexplain.cli run CONFIG shares the shards out.
    """
    from seqexplain.experiments.registry import check_seed
    from seqexplain.runs.config import read_config
    from seqexplain.runs.provenance import check_threads
    from seqexplain.runs.runner import run

    cfg = read_config(config)
    if out is not None:
        cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": str(out)})})
    if threads is not None:
        cfg = cfg.model_copy(update={"threads": check_threads(threads)})
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": check_seed(seed)})
    if truncate:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"truncate": True})})
    command = rerun_command(["seqexplain", "run", str(config)], {"--out": out, "--threads": threads, "--seed": seed,
                                                            "--truncate": truncate})
    try:
        result = run(cfg, progress=progress, command=command)
    except KeyboardInterrupt:
        print_warning(f"interrupted; the finished shards in {cfg.output.dir} are kept — rerun the same command to "
                      "resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if result.rank != 0:
        return
    err = stderr_console()
    by = f" by this process (rank 0 of {result.world}; the others wrote their own)" if result.world > 1 else ""
    err.print(Text(f"run {result.config_hash[:12]}: {result.n_items} examples in {result.n_shards} shard(s); "
                   f"{len(result.written)} written now{by}, {len(result.found)} found finished "
                   f"({result.seconds:.1f} s)", style="green"), soft_wrap=True)
    skipped = (result.manifest or {}).get("n_skipped", result.skipped)
    if skipped:
        print_warning(skipped_message(skipped, (result.manifest or {}).get("shards")))
    for path in [result.folder / "results.parquet", *result.reports]:
        if path.exists():
            err.print(Text(f"wrote {path}", style="green"), soft_wrap=True)


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
