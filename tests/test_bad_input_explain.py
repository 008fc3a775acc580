"""Bad inputs to an explanation, through the API and the CLI: the text, the target, the foil and the objective,
the method and its options, ``explain_many`` items and groups, precomputed vectors, aggregations, and ``strict``
with non-finite scores.

The contract each case is held to is in ``bad_input_cases``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch
from bad_input_cases import PROMPT, Case, check_bad_input, explain_argv, nothing

import seqexplain
from seqexplain.cli_support import parse_options as cli_parse_options
from seqexplain.errors import InputError, NonFiniteScoresError, UnknownMethodError, UnreadableTextError

METHODS = tuple(m.name for m in seqexplain.available_methods())
LONG_TEXT = "The cat sat on the mat. " * 60  # far more than the fixture's 128 positions


class OptionRow(NamedTuple):
    """A bad method option (or combination) for ``PROMPT`` → ``" mat"`` on the GPT-2 fixture."""

    id: str
    method: str
    api_options: dict[str, Any] | None  # the options given to explain; None: the CLI's parser alone
    cli_options: tuple[str, ...]  # the CLI's -o values (and, with api_options None, what the parser is given)
    fragments: tuple[str, ...]
    error: type[BaseException] = InputError


OPTION_ROWS: list[OptionRow] = [
    OptionRow('steps that is not a number', 'integrated_gradients', {'steps': 'abc'}, ('steps=abc',),
              ('steps', 'int ≥ 1', "'abc'")),
    OptionRow('steps that is a fraction', 'integrated_gradients', {'steps': 1.5}, ('steps=1.5',),
              ('steps', 'int ≥ 1', '1.5')),
    OptionRow('steps that is a boolean', 'integrated_gradients', {'steps': True}, ('steps=true',),
              ('steps', 'int ≥ 1', 'True')),
    OptionRow('steps below its range', 'integrated_gradients', {'steps': 0}, ('steps=0',),
              ('steps', 'int ≥ 1', '0')),
    OptionRow('token_budget that is not a number', 'occlusion', {'token_budget': 'abc'}, ('token_budget=abc',),
              ('token_budget', 'int ≥ 1')),
    OptionRow('token_budget below its range', 'gradient_norm', {'token_budget': -5}, ('token_budget=-5',),
              ('token_budget', 'int ≥ 1')),
    OptionRow('max_size that is not a number', 'greedy', {'max_size': 'abc'}, ('max_size=abc',),
              ('max_size', 'int ≥ 1')),
    OptionRow('max_size of zero', 'exhaustive', {'max_size': 0}, ('max_size=0',),
              ('max_size', 'int ≥ 1')),
    OptionRow('unknown quadrature rule', 'integrated_gradients', {'rule': 'simpson'}, ('rule=simpson',),
              ('rule', 'gausslegendre')),
    OptionRow('order_options that is not a mapping', 'baseline_rationale', {'order_options': 'steps'},
              ('order_options=steps',), ('order_options', 'dict')),
    OptionRow('order_options that is broken JSON', 'baseline_rationale', None, ('order_options={steps: 2',),
              ('JSON object',)),
    OptionRow('replace_with id outside the vocabulary', 'occlusion', {'replace_with': 99999},
              ('replace_with=99999',), ('99999', 'outside the vocabulary')),
    OptionRow('baseline that is a boolean', 'integrated_gradients', {'baseline': True}, ('baseline=true',),
              ('baseline', 'str or int')),
    OptionRow("rationale ordered by a rationale method", "baseline_rationale", {"order_by": "greedy"},
              ("order_by=greedy",), ("order_by='greedy'", "attribution method")),
    OptionRow("rationale ordered by an unknown method", "baseline_rationale", {"order_by": "magic"},
              ("order_by=magic",), ("magic",), UnknownMethodError),
    OptionRow("trapezoid rule with one step", "integrated_gradients", {"steps": 1, "rule": "riemann_trapezoid"},
              ("steps=1", "rule=riemann_trapezoid"), ("at least 2 steps",)),
    OptionRow("replacement that is not one token", "occlusion", {"replace_with": "hello world"},
              ("replace_with=hello world",), ("not a single token",)),
    OptionRow("IG baseline that is not one token", "integrated_gradients", {"baseline": "nothing here"},
              ("baseline=nothing here",), ("not a single token",)),
    OptionRow("exhaustive search with no subsets allowed", "exhaustive", {"max_subsets": 0},
              ("max_subsets=0",), ("max_subsets", "int ≥ 1")),
    OptionRow("option without a value", "integrated_gradients", None, ("steps",), ("key=value",)),
    OptionRow("steps above its range", "integrated_gradients", {"steps": 100_001, "rule": "riemann_left"},
              ("steps=100001", "rule=riemann_left"), ("steps", "≤ 100000", "100001")),
    OptionRow("replace_with that is a fraction", "occlusion", {"replace_with": 2.5}, ("replace_with=2.5",),
              ("replace_with", "str or int or None", "2.5")),
    OptionRow("negative max_size of a baseline order", "baseline_rationale", {"max_size": -1}, ("max_size=-1",),
              ("max_size", "int ≥ 1 or None")),
    OptionRow("Gauss-Legendre with more steps than its nodes allow", "integrated_gradients", {"steps": 5000},
              ("steps=5000",), ("at most 1000", "riemann")),
    OptionRow("rationale ordered by IG with options IG refuses", "baseline_rationale",
              {"order_by": "integrated_gradients", "order_options": {"steps": 0}},
              ("order_by=integrated_gradients", 'order_options={"steps": 0}'), ("steps", "int ≥ 1")),
]


def _option_case(row: OptionRow) -> Case:
    """The case of a bad method option: ``explain(..., **api_options)`` and ``seqexplain explain -o ...``."""
    def api(c: Any, _: Any) -> object:
        if row.api_options is None:
            return cli_parse_options(list(row.cli_options))
        return seqexplain.explain(c.causal, PROMPT, " mat", row.method, **row.api_options)

    options = [arg for value in row.cli_options for arg in ("-o", value)]
    return Case(row.id, nothing, api,
                lambda c, _: explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", row.method, *options),
                row.error, row.fragments)


def _lm_case(rid: str, text: str, target: str, method: str, error: type[BaseException], fragments: tuple[str, ...],
             *, objective: str | None = None, foil: str | None = None) -> Case:
    """``explain(causal, text, target, method[, objective=][, foil=])`` and ``seqexplain explain`` with the same
    text, target, method (and ``--objective``, ``--foil`` when given)."""
    given = {k: v for k, v in (("objective", objective), ("foil", foil)) if v is not None}
    flags = [arg for k, v in given.items() for arg in (f"--{k}", v)]
    return Case(rid, nothing, lambda c, _: seqexplain.explain(c.causal, text, target, method, **given),
                lambda c, _: explain_argv(c.gpt2_dir, text, "--target", target, "--method", method, *flags),
                error, fragments)


def _vectors(ctx: Any, width: int) -> Any:
    ex = ctx.classifier.encode("a fine film", 2)
    return ex.replace(input_ids=None, input_vectors=torch.zeros(ex.length, width))


CASES = [
    _lm_case("empty text", "", " cat", "occlusion", UnreadableTextError, ("empty",)),
    _lm_case("blank text", "   \n", " cat", "occlusion", UnreadableTextError, ("empty",)),
    _lm_case("text longer than the positions", LONG_TEXT, " dog", "occlusion", InputError, ("128", "--truncate")),
    _lm_case("unknown method", "The cat", " sat", "shapley_magic", UnknownMethodError, ("shapley_magic", *METHODS)),
    Case("unknown option", nothing,
         lambda c, _: seqexplain.explain(c.causal, "The cat", " sat", "integrated_gradients", n_steps=3),
         lambda c, _: explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "integrated_gradients",
                                   "-o", "n_steps=3"),
         InputError, ("n_steps", "steps")),
    Case("unknown label", nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "happy", "occlusion"),
         lambda c, _: explain_argv(c.bert_dir, "a fine film", "--target", "happy", "--method", "occlusion"),
         InputError, ("happy", "negative, neutral, positive")),
    Case("label index out of range", nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", 7, "occlusion"),
         lambda c, _: explain_argv(c.bert_dir, "a fine film", "--target", "7", "--method", "occlusion"),
         InputError, ("7", "out of range", "negative, neutral, positive")),
    _lm_case("target that tokenizes to nothing", "The cat", "", "occlusion", InputError, ("no tokens",)),
    *[_option_case(row) for row in OPTION_ROWS],
    _lm_case("foil that tokenizes to nothing", PROMPT, " mat", "gradient_norm", InputError, ("foil", "no tokens"),
             objective="contrast", foil=""),
    _lm_case("contrast without a foil", PROMPT, " mat", "gradient_norm", InputError, ("needs a foil", "--foil"),
             objective="contrast"),
    _lm_case("foil with another number of tokens than the target", PROMPT, " mat", "occlusion", InputError,
             ("one foil token per target",), objective="contrast", foil=" log and the dog"),
    Case("text that is not a string", nothing,
         lambda c, _: seqexplain.explain(c.causal, 123, " mat", "occlusion"), None,
         InputError, ("must be a string, not int",)),
    _lm_case("text with bytes that are not UTF-8", "The cat \udcff sat", " mat", "occlusion", InputError,
             ("not valid Unicode",)),
    _lm_case("target with a lone surrogate", PROMPT, " \ud800", "occlusion", InputError,
             ("target is not valid Unicode",)),
    Case("text of nothing but special tokens", nothing,
         lambda c, _: seqexplain.explain(c.classifier, "\u200b", None, "occlusion"),
         lambda c, _: explain_argv(c.bert_dir, "\u200b", "--method", "occlusion"),
         UnreadableTextError, ("special tokens only",)),
    Case("max_new_tokens leaving no room for a cut prompt", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, None, "occlusion", max_new_tokens=500, truncate=True),
         lambda c, _: explain_argv(c.gpt2_dir, PROMPT, "--method", "occlusion", "--max-new-tokens", "500",
                                   "--truncate"),
         InputError, ("max_new_tokens=500 leaves no room for the prompt", "(CLI: --max-new-tokens)")),
    Case("max_new_tokens of zero", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, None, "occlusion", max_new_tokens=0),
         lambda c, _: explain_argv(c.gpt2_dir, PROMPT, "--method", "occlusion", "--max-new-tokens", "0"),
         InputError, ("max_new_tokens must be a positive number",)),
    Case("label index for a language model", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, 3, "occlusion"), None,
         InputError, ("text, not a label index",)),
    Case("unknown objective", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", objective="odds"), None,
         InputError, ("unknown objective", "contrast")),
    Case("classifier foil that is not a label", nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "positive", "occlusion", objective="contrast",
                                         foil="maybe"),
         lambda c, _: explain_argv(c.bert_dir, "a fine film", "--target", "positive", "--method", "occlusion",
                                   "--objective", "contrast", "--foil", "maybe"),
         InputError, ("unknown label", "maybe")),
    Case("classifier foil index out of range", nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "positive", "occlusion", objective="contrast",
                                         foil=9),
         lambda c, _: explain_argv(c.bert_dir, "a fine film", "--target", "positive", "--method", "occlusion",
                                   "--objective", "contrast", "--foil", "9"),
         InputError, ("9", "out of range")),
    _lm_case("a foil without the contrast objective", PROMPT, " mat", "occlusion", InputError,
             ("foil is only used with the contrast objective", "--objective contrast"), foil=" dog"),
    Case("explain_many items of mixed kinds", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, ["The cat", ("The dog", " sat")], "occlusion",
                                                   progress=False)), None,
         InputError, ("items of one kind",)),
    Case("explain_many item that is a number", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [3.5], "occlusion", progress=False)), None,
         InputError, ("not float",)),
    Case("explain_many mapping with an unknown key", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": "a", "label": 1}], "occlusion",
                                                   progress=False)), None,
         InputError, ("text, target, foil, groups, objective",)),
    Case("groups that overlap", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": PROMPT, "target": " mat",
                                                               "groups": {"spans": [[0, 1], [1, 2]]}}],
                                                   "occlusion", progress=False)), None,
         InputError, ("overlap at position 1",)),
    Case("groups outside the input", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": PROMPT, "target": " mat",
                                                               "groups": {"spans": [[0, 500]]}}],
                                                   "occlusion", progress=False)), None,
         InputError, ("500", "outside the input")),
    Case("explain_many items that are not an iterable", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, None, "occlusion", progress=False)), None,
         InputError, ("iterable of items", "not NoneType")),
    Case("explain_many items that are one text", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, PROMPT, "occlusion", progress=False)), None,
         InputError, ("iterable of items", "wrap one text in a list")),
    Case("explain_many items that are one mapping (iterating it would explain its keys)", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, {"text": PROMPT, "target": " mat"}, "occlusion",
                                                   progress=False)), None,
         InputError, ("iterable of items", "not dict", "wrap one mapping in a list")),
    Case("explain_many item with an empty text names the item", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, ["The cat", "The dog", "  "], "occlusion",
                                                   progress=False)), None,
         UnreadableTextError, ("explain_many item 2: the text is empty",)),
    Case("explain_many item with a bad group names the item", nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": PROMPT, "target": " mat"},
                                                              {"text": PROMPT, "target": " mat",
                                                               "groups": {"spans": [[0, 500]]}}],
                                                   "occlusion", progress=False, pack=1)), None,
         InputError, ("explain_many item 1: group 0", "outside the input")),
    Case("groups that are a list, not a mapping", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", groups=[[0]]), None,
         InputError, ("groups must be a mapping", "not list")),
    Case("a method that is not a name", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", ["occlusion"]), None,
         UnknownMethodError, ("method is given by its name", "not a list")),
    Case("precomputed vectors of the wrong width", nothing,
         lambda c, _: seqexplain.explain_example(c.classifier, _vectors(c, 5), "gradient_norm"), None,
         InputError, ("width 32",)),
    Case("aggregation that does not exist", nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion").aggregate("median"), None,
         InputError, ("median",)),
    Case("non-finite scores with strict", nothing,
         lambda c, _: seqexplain.explain(c.no_attention(nan_when_dropped=True), PROMPT, " mat", "occlusion",
                                         strict=True),
         lambda c, _: explain_argv("custom-nan", PROMPT, "--target", " mat", "--method", "occlusion", "--strict"),
         NonFiniteScoresError, ("non-finite", "input 1")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, bad_input_ctx: Any, runner: Any) -> None:
    check_bad_input(case, bad_input_ctx, runner)
