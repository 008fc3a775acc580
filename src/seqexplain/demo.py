"""The demo: explain SmolLM2-135M-Instruct's next word for a fixed prompt with several methods, offline.

``seqexplain demo`` (or ``make demo``) runs :func:`run_demo`: it loads the embedded SmolLM2 (converting and
caching it on first use, see :mod:`seqexplain.models.smollm2`), lets the model predict the next token of a
prompt whose answer depends on an earlier word, explains that prediction with each method, prints coloured
heatmaps and a word-level summary, and writes ``demo.html`` plus one JSON file per method.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from seqexplain.attribution import Attribution
from seqexplain.explain import explain_example
from seqexplain.methods.registry import get_method
from seqexplain.models.base import SequenceModel
from seqexplain.report import display_token, render_console, save_html

DEMO_PROMPT = "When Mary and John went to the store, John gave a drink to"
"""Indirect-object prompt: the right next word (" Mary") is the name that is *not* repeated, so a good
explanation should point at the earlier names rather than only at the last few words."""

DEFAULT_METHODS: tuple[str, ...] = ("integrated_gradients", "occlusion", "attention_rollout")


def _top_words(attr: Attribution, k: int = 3) -> str:
    words = attr.aggregate("sum")
    row = words.scores[0]
    order = [j for j in words.top_k(0, len(words.tokens)) if not math.isnan(row[j])][:k]
    return ", ".join(f"{words.tokens[j].strip()} ({row[j]:+.3g})" for j in order)


def run_demo(
    out_dir: str | os.PathLike[str],
    methods: Sequence[str] = DEFAULT_METHODS,
    prompt: str = DEMO_PROMPT,
    console: Console | None = None,
    *,
    model: SequenceModel | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[Attribution]:
    """Explain the next-token prediction of SmolLM2 for ``prompt`` with each of ``methods``.

    Prints heatmaps and a word-level summary to ``console`` and writes ``out_dir/demo.html`` (all methods on
    one page) and ``out_dir/<method>.json``. ``model`` replaces SmolLM2 (any wrapped causal LM); ``cache_dir``
    is SmolLM2's cache root. Returns the attributions in the order of ``methods``.

    Raises:
        UnknownMethodError: a name in ``methods`` is not registered (checked before anything slow).
        InputError: ``out_dir`` is not a writable folder, or a file to write there is a link, folder, FIFO or
            device (:mod:`seqexplain.atomic`; checked before anything slow).
        ModelLoadError: SmolLM2's package is missing (the message says what to install).
    """
    from seqexplain.runs import output_dir, output_file
    from seqexplain.runs.warning_log import log_result_warnings

    console = console or Console(highlight=False)
    out = output_dir(out_dir, "demo output folder")  # a file, FIFO, ... fails here, before loading anything
    specs = [get_method(m) for m in methods]  # unknown names fail here, before loading anything
    for name in ["demo.html"] + [f"{spec.name}.json" for spec in specs]:
        output_file(out / name)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with console.status("loading SmolLM2-135M-Instruct") as status:
        t0 = time.perf_counter()
        if model is None:
            from seqexplain.models.smollm2 import smollm2

            model = smollm2(cache_dir=cache_dir, status=status.update)
        timings["load model"] = time.perf_counter() - t0
        status.update("predicting the next token")
        example = model.encode(prompt, None, max_new_tokens=1)
        attrs: list[Attribution] = []
        for spec in specs:
            status.update(f"explaining with {spec.name}")
            t0 = time.perf_counter()
            attrs.append(explain_example(model, example, spec.name))
            timings[spec.name] = time.perf_counter() - t0

    predicted = example.target_text
    logp = attrs[0].target_logprobs[0] if attrs and attrs[0].target_logprobs else float("nan")
    head = Text("prompt: ", style="bold")
    head.append(repr(prompt))
    head.append("\nnext token: ", style="bold")
    head.append(repr(predicted), style="bold yellow")
    head.append(f"  (p = {math.exp(logp):.2f})")
    console.print(head)
    for attr in attrs:
        console.print()
        render_console(attr, console=console)

    summary = Table(title="Which words drove the prediction? (word-level, summed token scores)", show_lines=False)
    summary.add_column("method", style="bold cyan", no_wrap=True)
    summary.add_column("top words (score)", overflow="fold")
    summary.add_column("time", justify="right", no_wrap=True)
    for attr in attrs:
        summary.add_row(attr.method, _top_words(attr), f"{timings[attr.method]:.1f} s")
    console.print()
    console.print(summary)

    for attr in attrs:
        log_result_warnings(f"{attr.method}.json", attr.warnings)
    html = save_html(attrs, out / "demo.html", title=f"seqexplain demo: why {display_token(predicted)!r}?")
    written = [html] + [attr.save(out / f"{attr.method}.json") for attr in attrs]
    console.print(Text(f"\nmodel load {timings['load model']:.1f} s, total {time.perf_counter() - started:.1f} s",
                       style="dim"))
    for path in written:
        console.print(Text(f"wrote {path}", style="green"))
    console.print(Text(f"open {html} in a browser for the interactive report", style="bold green"))
    return attrs


__all__ = ["DEFAULT_METHODS", "DEMO_PROMPT", "run_demo"]
