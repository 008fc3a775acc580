"""The one list of paper reproductions: papers → experiments → the function that runs each and the options it takes.

``seqexplain reproduce <paper> [<experiment>]`` is generated from :data:`PAPERS` (one typer subcommand per paper,
its options the union of its experiments' options); :func:`run_experiment` is the same call from Python. Every
command takes ``--out``, ``--data-root``, ``--quick``, ``--threads``, ``--seed`` and ``--no-progress`` (passed to
the runners that draw progress bars; the others draw none); an extra option is accepted only by the experiments
that list it, and giving it to one that does not is an :class:`~seqexplain.errors.InputError` (never silently
ignored).

Calling convention. An :class:`Experiment`'s ``runner`` (``"module:function"``, imported when the experiment runs,
so listing the registry loads no model code) is called as
``runner(out, quick=…, data_root=…, seed=…, **fixed, **options)`` plus ``progress``, ``threads`` and ``command``
for a runner whose signature names them. Without a ``runner``, the paper's ``module`` is used through the protocol
every recipe module may follow: ``module.run(experiment, out, *, quick, data_root, seed, **options)``.

Adding a paper: one entry in :data:`PAPERS`. For a module following the protocol (``EXPERIMENTS`` names →
descriptions, and ``run``)::

    Paper("snell2021", "Snell et al. (2021): ...", module="seqexplain.experiments.snell2021",
          experiments=(Experiment("tables", "Table 2 ..."), Experiment("probe", "...", options={"limit": "limit"})),
          options=(LIMIT,))

The experiment names and descriptions are written here (so ``--help`` imports nothing heavy);
``tests/test_experiment_registry.py`` checks that they match the module's ``EXPERIMENTS`` and that every option
an experiment lists is declared by its paper and is a keyword its runner takes.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqexplain.errors import InputError, UnsupportedError

__all__ = ["PAPERS", "SEED_MAX", "Experiment", "Option", "Paper", "check_seed", "get_paper", "run_experiment"]


@dataclass(frozen=True)
class Option:
    """An extra option: ``--<name with dashes>`` on the command line. ``type`` is ``int``, ``float``, ``str``,
    ``bool`` (a flag), ``Path`` or ``list`` (comma-separated names → a tuple of str). ``choices`` and ``minimum``
    are checked before the run; ``convert`` maps the given value to what the runner takes."""

    name: str
    type: type
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    convert: Callable[[Any], Any] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value the runner gets; :class:`InputError` for a value outside ``choices``, below ``minimum``, or a
        float that is not finite."""
        if self.type is list and isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
            if not value:
                raise InputError(f"{self.flag} needs at least one comma-separated name")
        for item in value if isinstance(value, tuple) else (value,):
            if self.choices and item not in self.choices:
                raise InputError(f"{self.flag}: {item!r} is not one of {', '.join(self.choices)}")
        if self.type is float and not math.isfinite(value):
            raise InputError(f"{self.flag} must be a finite number, got {value}")
        if self.minimum is not None and value < self.minimum:
            raise InputError(f"{self.flag} must be at least {self.minimum:g}, got {value}")
        return self.convert(value) if self.convert is not None else value


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``options`` maps the paper's option names it accepts to the runner's keywords; ``fixed``
    are keywords always passed (e.g. ``compatible=True``)."""

    name: str
    description: str
    runner: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Paper:
    """A paper's reproduction: ``single`` means its one experiment runs without being named on the command line."""

    name: str
    title: str
    experiments: tuple[Experiment, ...]
    options: tuple[Option, ...] = ()
    module: str | None = None
    single: bool = False

    def experiment(self, name: str | None) -> Experiment:
        if name is None and self.single:
            return self.experiments[0]
        for exp in self.experiments:
            if exp.name == name:
                return exp
        raise InputError(f"unknown experiment {name!r} of {self.name}; choose one of "
                         f"{', '.join(e.name for e in self.experiments)}")

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)


def _opts(*names: str, **renamed: str) -> dict[str, str]:
    return {**{n: n for n in names}, **renamed}


# --------------------------------------------------------------------------------------------- the options
LIMIT = Option("limit", int, "Seeded subsample of N examples (0: all; default: the experiment's).", minimum=0)
MAX_SIZE = Option("max_size", int, "Cap on greedy / baseline rationale size.", minimum=1)
_LM_METHODS = ("greedy", "gradient_norm", "grad_x_input", "integrated_gradients", "attention_rollout",
               "attention_last", "attention_all", "occlusion", "exhaustive")

_EVAL_METHODS = ("gradient_norm", "grad_x_input", "integrated_gradients", "occlusion", "attention_last",
                 "attention_all", "attention_rollout", "greedy")

_LM = "seqexplain.experiments.vafa2021_lm"
_MT = "seqexplain.experiments.vafa2021_translation"
_LM_OPTIONS = _opts("limit", "methods", "max_size", "exhaustive_max_size", "ig_steps", "train_steps")

VAFA2021 = Paper(
    "vafa2021",
    "Vafa et al. (2021): sequential rationales; one experiment of the paper per call.",
    experiments=(
        Experiment("majority_class", "Synthetic majority-class language: perplexity, compatibility, greedy.",
                   "seqexplain.experiments.vafa2021:run_majority_class"),
        Experiment("lambada", "Annotated LAMBADA: rationales of the last word vs the human ones (SmolLM2).",
                   f"{_LM}:run_lambada", {**_LM_OPTIONS, "compatible": "compatible"}),
        Experiment("lambada_compatible", "lambada after the LoRA + word-dropout fine-tune.", f"{_LM}:run_lambada",
                   _LM_OPTIONS, {"compatible": True}),
        Experiment("analogies", "Analogies: length, ratio, antecedent, no-distractor of every method.",
                   f"{_LM}:run_analogies", {**_LM_OPTIONS, "compatible": "compatible"}),
        Experiment("analogies_compatible", "analogies after the compatibility fine-tune.", f"{_LM}:run_analogies",
                   _LM_OPTIONS, {"compatible": True}),
        Experiment("timing", "Seconds per rationalized token of each method.", f"{_LM}:run_timing",
                   {**_LM_OPTIONS, "compatible": "compatible"}),
        Experiment("lm_paired", "Paired shipped-vs-compatible tables of the stored lambada/analogies runs.",
                   f"{_LM}:run_paired"),
        Experiment("translation_train", "Train (or resume) the Multi30K translation model.",
                   f"{_MT}:train_translation_model", _opts(src="src_lang", tgt="tgt_lang", no_resume="resume")),
        Experiment("distractors", "Distractor sentences: how much of a rationale falls in the unrelated half.",
                   f"{_MT}_distractors:run_distractors", _opts(n="n_pairs", methods="baselines")),
        Experiment("alignments", "Rationales vs gold word alignments (AER, IOU, F1, top-1).",
                   f"{_MT}_alignments:run_alignments", _opts(n="n_sentences", methods="baselines")),
    ),
    options=(
        LIMIT,
        Option("methods", list, "Comma-separated methods (LM: greedy, exhaustive and the baselines; translation: "
               "the baseline orders).", choices=_LM_METHODS),
        Option("compatible", bool, "Use the LoRA + word-dropout fine-tuned model (cached)."),
        MAX_SIZE,
        Option("exhaustive_max_size", int, "Largest rationale exhaustive search tries.", minimum=1),
        Option("ig_steps", int, "Integrated-gradients quadrature points.", minimum=1),
        Option("train_steps", int, "Compatibility fine-tune steps.", minimum=1),
        Option("src", str, "Source language of the translation model.", choices=("de", "en", "fr")),
        Option("tgt", str, "Target language of the translation model.", choices=("de", "en", "fr")),
        Option("no_resume", bool, "Start training over even if a checkpoint exists.", convert=lambda v: not v),
        Option("n", int, "Distractor pairs / alignment sentences to evaluate.", minimum=1),
    ),
)

VERWIMP2018 = Paper(
    "verwimp2018",
    "Verwimp et al. (2018): state gradients of word-level RNN language models.",
    experiments=(
        Experiment("state_gradients", "Train the LSTM LM, then singular values of state gradients by delay and "
                   "word class.", "seqexplain.experiments.verwimp2018:run_reproduction",
                   _opts("corpus", "epochs", "max_delay", "positions", "tag_file", "class_file", "store_raw",
                         tags="tag_source", docs="docs_dir")),
    ),
    options=(
        Option("corpus", str, "Training corpus.", choices=("wikitext2", "ptb")),
        Option("epochs", int, "Training epochs.", minimum=1),
        Option("max_delay", int, "Largest delay of the state gradients.", minimum=1),
        Option("positions", int, "Number of test positions to analyse.", minimum=1),
        Option("tags", str, "Word-class tagger.", choices=("auto", "spacy", "lexicon", "none")),
        Option("tag_file", Path, "word -> tags file (one word then its tags per line)."),
        Option("class_file", Path, "Class definitions (name TAG TAG ... per line)."),
        Option("store_raw", bool, "Also store every gradient matrix (float16 npz chunks)."),
        Option("docs", Path, "Also write <DOCS>/verwimp2018.md and its images."),
    ),
    single=True,
)

ERASER_MOVIES = Paper(
    "eraser_movies",
    "ERASER movie reviews (DeYoung et al. 2020): fine-tune MiniLM, then evaluate every attribution method.",
    module="seqexplain.experiments.eraser_movies",
    experiments=(
        Experiment("train", "Fine-tune MiniLM with a 2-class head on the 1,600 training reviews.",
                   "seqexplain.experiments.eraser_movies.train:run_train",
                   _opts("max_length", "epochs", "max_steps", "batch_size", "lr")),
        Experiment("evaluate", "Faithfulness, plausibility and agreement of every method on the test reviews.",
                   "seqexplain.experiments.eraser_movies.evaluate:run_evaluate",
                   _opts("limit", "methods", "greedy_limit", "ig_steps", "model")),
    ),
    options=(
        Option("max_length", int, "Word pieces a document is cut to (default 256).", minimum=8),
        Option("epochs", int, "Training epochs (default 2).", minimum=1),
        Option("max_steps", int, "Cap on training steps.", minimum=1),
        Option("batch_size", int, "Training batch size (default 8).", minimum=1),
        Option("lr", float, "Peak learning rate (default 5e-5).", minimum=0),
        LIMIT,
        Option("methods", list, "Comma-separated attribution methods (default: all).", choices=_EVAL_METHODS),
        Option("greedy_limit", int, "Test documents greedy rationales run on (default 10; quick 1).", minimum=0),
        Option("ig_steps", int, "Integrated-gradients steps (default 20).", minimum=1),
        Option("model", Path, "A classifier directory to evaluate instead of <out>/model."),
    ),
)

def _steps(values: tuple[str, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError as exc:
        raise InputError(f"--checkpoint-steps takes comma-separated update counts, got {','.join(values)!r}") from exc


_SNELL = _opts("steps", "batch_size", "hidden", "checkpoint_every", "max_eval", "checkpoint_steps", "emb_dim",
               "device", runs="n_runs")

SNELL2021 = Paper(
    "snell2021",
    "Snell et al. (2021): attention training dynamics of LSTM attention models (A/ξ table, plots).",
    module="seqexplain.experiments.snell2021",
    experiments=(
        Experiment("sst2", "SST-2 (binary sentiment from the SST trees): BiLSTM attention classifiers, uniform run, "
                   "A/ξ table", options=_SNELL),
        Experiment("agnews", "AG News (4 topics; the stored test split split 80/10/10): the same pipeline, "
                   "multi-class β", options=_SNELL),
        Experiment("multi30k", "Multi30k de→en: LSTM encoder-decoders with attention, uniform run, per-target-row "
                   "table, BLEU", options={**_SNELL, **_opts("n_train", "vocab_size")}),
    ),
    options=(
        Option("runs", int, "Normal runs (gold run A plus comparison runs).", minimum=2),
        Option("steps", int, "Training updates per run.", minimum=1),
        Option("batch_size", int, "Examples per update.", minimum=1),
        Option("hidden", int, "LSTM units per direction.", minimum=1),
        Option("checkpoint_every", int, "Checkpoint every N updates.", minimum=1),
        Option("max_eval", int, "Examples dumped per split.", minimum=1),
        Option("checkpoint_steps", list, "Extra checkpoints, comma-separated (e.g. 10,25,50).", convert=_steps),
        Option("emb_dim", int, "Embedding width.", minimum=1),
        Option("n_train", int, "Use the first N training pairs.", minimum=1),
        Option("vocab_size", int, "SentencePiece pieces.", minimum=8),
        Option("device", str, "Where training, dumps, baselines and evaluation run: cpu (default), cuda, cuda:N or "
                              "auto (cuda when available)."),
    ),
)

_GER = _opts("n_train", "n_eval", "epochs", "event_types", "max_types", "max_words", "words_from",
             valley_steps="valley_max_steps")

GER2021 = Paper(
    "ger2021",
    "Ger, Klabjan & Utke: attention-RNN explanations of two equally good models, their clusters, low-loss paths.",
    module="seqexplain.experiments.ger2021",
    experiments=(
        Experiment("sst2", "SST-2 sentences (../shared/data/sst): two avg and two hier attention RNNs over MiniLM "
                   "vectors", options=_GER),
        Experiment("movies", "ERASER movie reviews (../shared/data/eraser_movies), documents cut to max_words words",
                   options=_GER),
    ),
    options=(
        Option("n_train", int, "Training documents (default 2000; quick 160).", minimum=1),
        Option("n_eval", int, "Documents explained and clustered (default 300).", minimum=2),
        Option("epochs", int, "Training epochs per model (default 4).", minimum=1),
        Option("event_types", str, "Event types (default wordnet).", choices=("wordnet", "supersense", "pos",
                                                                              "kmeans")),
        Option("max_types", int, "Event types kept, the rest <other> (default 15).", minimum=1),
        Option("valley_steps", int, "Most valley-tracking steps (default 60).", minimum=1),
        Option("max_words", int, "Words kept per document (default 60).", minimum=1),
        Option("words_from", str, "Keep the first (start, default) or the last (end) max_words words of a document "
               "(movie reviews end with the verdict).", choices=("start", "end")),
    ),
)

_BUJEL = _opts("config", "max_train", "max_dev", "max_test", "steps", "lime_samples", "on_long", "reduce",
               "top_count", method="methods")

BUJEL2021 = Paper(
    "bujel2021",
    "Bujel et al. (2021): zero-shot token labelling with soft attention over a pretrained encoder.",
    module="seqexplain.experiments.bujel2021",
    experiments=(
        Experiment("fce", "FCE error detection: tokens labelled incorrect (i) from sentence labels", options=_BUJEL),
        Experiment("bioscope", "BioScope speculation cues (CoNLL-2010 style hedge cues) from sentence labels",
                   options=_BUJEL),
        Experiment("sst", "SST sentiment words (positive by default) from sentence labels",
                   options={**_BUJEL, "polarity": "polarity"}),
    ),
    options=(
        Option("config", Path, "Training config (.conf with the original's keys, .json, .yaml); unknown keys and "
               "wrong types are errors."),
        Option("max_train", int, "Training sentences sampled (0: all).", minimum=0),
        Option("max_dev", int, "Development sentences sampled (0: all).", minimum=0),
        Option("max_test", int, "Test sentences sampled (0: all).", minimum=0),
        Option("steps", int, "Optimiser steps of the encoder model.", minimum=1),
        Option("lime_samples", int, "LIME perturbations per sentence.", minimum=1),
        Option("method", list, "Comma-separated attribution methods (default: gradient_norm, grad_x_input, "
               "integrated_gradients, occlusion).", choices=_EVAL_METHODS),
        Option("on_long", str, "Sentences longer than max_seq_length: truncate (warned, counted) or error (default "
               "truncate).", choices=("truncate", "error")),
        Option("reduce", str, "Sub-token scores to a word (default max).", choices=("max", "mean", "sum", "first")),
        Option("polarity", str, "Positive or negative sentiment words (default positive).",
               choices=("positive", "negative")),
        Option("top_count", int, "At most this many positive words per sentence (0: no limit; default 0).",
               minimum=0),
    ),
)

PAPERS: dict[str, Paper] = {p.name: p for p in (VAFA2021, VERWIMP2018, ERASER_MOVIES, SNELL2021, GER2021, BUJEL2021)}


def get_paper(name: str) -> Paper:
    if name not in PAPERS:
        raise InputError(f"unknown paper {name!r}; choose one of {', '.join(PAPERS)}")
    return PAPERS[name]


SEED_MAX = 2**31 - 1  # numpy, scikit-learn and Python's RNGs take 0..2**32-1; the recipes add small offsets


def check_seed(seed: int) -> int:
    """``seed`` when it is in ``0..SEED_MAX``; :class:`InputError` otherwise (a negative seed crashed deep in a
    recipe, e.g. after training, with a traceback)."""
    if not 0 <= seed <= SEED_MAX:
        raise InputError(f"--seed must be between 0 and {SEED_MAX}, got {seed}")
    return seed


def check_options(paper: Paper, experiment: Experiment, given: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's keywords for the options ``given`` (``None`` and ``False`` mean "not given"); an option that
    ``experiment`` does not take is an :class:`InputError` naming the ones it does."""
    out: dict[str, Any] = {}
    for name, value in given.items():
        if value is None or value is False:
            continue
        option = paper.option(name)
        if name not in experiment.options:
            takes = ", ".join(paper.option(o).flag for o in experiment.options) or "no extra options"
            raise InputError(f"{option.flag} is not used by {paper.name} {experiment.name} (it takes {takes})")
        out[experiment.options[name]] = option.check(value)
    return out


def resolve(paper: Paper, experiment: Experiment) -> Callable[..., Any]:
    """The function that runs ``experiment`` (imported now; :class:`UnsupportedError` when its module cannot be)."""
    module, _, attr = (experiment.runner or f"{paper.module}:run").partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedError(f"the {paper.name} reproduction is not available in this installation ({exc}); "
                               "install seqexplain with its papers extra") from exc
    if experiment.runner is not None:
        return fn  # type: ignore[no-any-return]
    return functools.partial(fn, experiment.name)  # its signature still names progress, threads, ...


def run_experiment(paper_name: str, experiment_name: str | None, out: Path | str, *, quick: bool = False,
                   data_root: Path | str | None = None, seed: int = 0, progress: bool = True,
                   threads: int | None = None, command: str | None = None, **options: Any) -> Any:
    """Run one experiment (module docstring): options are checked, then passed under the runner's keywords.
    (Callers set the thread count and lock ``out`` first: :func:`seqexplain.runs.reproduction`.)"""
    paper = get_paper(paper_name)
    experiment = paper.experiment(experiment_name)
    check_seed(seed)
    unknown = sorted(set(options) - {o.name for o in paper.options})
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)} for {paper.name}")
    kwargs = {**experiment.fixed, **check_options(paper, experiment, options)}
    fn = resolve(paper, experiment)
    accepted = _keywords(fn)
    for name, value in (("progress", progress), ("threads", threads), ("command", command)):
        if name in accepted and name not in kwargs:
            kwargs[name] = value
    return fn(Path(out), quick=quick, data_root=data_root, seed=seed, **kwargs)


def _keywords(fn: Callable[..., Any]) -> set[str]:
    """The parameters ``fn`` names (its ``**kwargs`` do not count: they may be settings overrides)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
