"""Every bad input a user can give, through the Python API and through the command line, in one table.

Each row is one mistake. The API call must raise the row's exception class with a message holding every
fragment; the same mistake on the command line (typer's ``CliRunner``) must exit with status 2 (a handled
``SystemExit``, not a crash), print one ``error:`` line on stderr holding every fragment (and the row's CLI-only
fragments), and print no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import seqexplain
import seqexplain.report
from seqexplain.cli import app
from seqexplain.cli_support import parse_options as cli_parse_options
from seqexplain.errors import (
    DataError,
    InputError,
    ModelLoadError,
    NonFiniteScoresError,
    UnknownMethodError,
    UnsafeOutputError,
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
    cli: Callable[[Any, Any], list[Any]] | None  # (ctx, arg) -> argv; None: a mistake only the API can make
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


def _special_output(kind: str) -> Callable[[Any], Path]:
    """``out.json`` as a symbolic link to a file, a FIFO, a folder, or a plain file with content."""
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / "out.json"
        if kind == "link":
            (ctx.tmp / "target.txt").write_text("keep me", encoding="utf-8")
            os.symlink(ctx.tmp / "target.txt", path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
            (path / "inside.txt").write_text("keep me", encoding="utf-8")
        else:
            path.write_text("keep me", encoding="utf-8")
        return path

    return setup


def _same_outputs(path: Path) -> object:
    from seqexplain.runs import distinct_outputs

    return distinct_outputs(("--json", path), ("--html", path))


def _demo(path: Path) -> object:
    from seqexplain.demo import run_demo

    return run_demo(path)


def _reproduce(path: Path) -> object:
    from seqexplain.runs import output_dir

    return output_dir(path)


def _copy_bert(ctx: Any) -> Path:
    return Path(shutil.copytree(ctx.bert_dir, ctx.tmp / "model"))


def _without_tokenizer(ctx: Any) -> Path:
    path = _copy_gpt2(ctx)
    for f in path.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    return path


def _saved(mangle: Callable[[dict[str, Any]], Any]) -> Callable[[Any], Path]:
    """A real saved attribution (gpt2, greedy), its JSON document changed by ``mangle``."""
    def setup(ctx: Any) -> Path:
        attr = seqexplain.explain(ctx.causal, PROMPT, " mat", "greedy", max_size=2)
        doc = attr.to_dict()
        doc = mangle(doc) or doc
        path = ctx.tmp / "saved.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return setup


def _bytes_file(name: str, data: bytes) -> Callable[[Any], Path]:
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / name
        path.write_bytes(data)
        return path

    return setup


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mangle(doc: dict[str, Any]) -> dict[str, Any]:
        doc[key] = value
        return doc

    return mangle


def _bad_rationale(doc: dict[str, Any]) -> dict[str, Any]:
    doc["rationale"]["positions"][0] = [999]
    return doc


class _MaskIgnoringLM(torch.nn.Module):
    """Takes attention_mask (through **kwargs) and ignores it."""

    seqexplain_kind = "causal"

    def __init__(self, vocab: int, embeddings: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, 8)
        self.out = torch.nn.Linear(8, vocab)
        self.embeddings = embeddings

    def get_input_embeddings(self) -> torch.nn.Module:
        if not self.embeddings:
            raise NotImplementedError
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        return SimpleNamespace(logits=self.out(torch.cumsum(x, dim=1)))


def _ignoring_model(ctx: Any, embeddings: bool = True) -> Any:
    return seqexplain.load_model(_MaskIgnoringLM(len(ctx.bpe), embeddings), ctx.bpe)


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
    Case("unwritable output", _blocked_output,
         lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--json", path),
         InputError, ("a.json",)),
    Case("output that is a symbolic link", _special_output("link"),
         lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--json", path),
         InputError, ("out.json", "symbolic link")),
    Case("output that is a FIFO", _special_output("fifo"),
         lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--json", path),
         InputError, ("out.json", "FIFO")),
    Case("output that is a folder", _special_output("folder"),
         lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--html", path),
         InputError, ("out.json", "folder")),
    Case("HTML output that is a symbolic link", _special_output("link"),
         lambda c, path: seqexplain.report.save_html(seqexplain.explain(c.causal, "The cat", " sat", "occlusion"),
                                                     path),
         lambda c, path: _explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                       "--html", path),
         UnsafeOutputError, ("out.json", "symbolic link")),
    Case("the same file for JSON and HTML", _special_output("file"),
         lambda c, path: _same_outputs(path), lambda c, path: _explain_argv(
             c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion", "--json", path, "--html", path),
         InputError, ("out.json", "--json", "--html")),
    Case("attribution file that is a folder", _special_output("folder"),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("out.json", "is a folder")),
    Case("attribution file that is a FIFO", _special_output("fifo"),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("out.json",)),
    Case("demo output folder that is a file", _special_output("file"),
         lambda c, path: _demo(path),
         lambda c, path: ["demo", "--out", path],
         InputError, ("out.json", "is a file, not a folder")),
    Case("reproduction output folder that is a file", _special_output("file"),
         lambda c, path: _reproduce(path),
         lambda c, path: ["reproduce", "verwimp2018", "--quick", "--out", path],
         InputError, ("out.json", "is a file, not a folder")),
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
    Case("text that is not a string", _nothing,
         lambda c, _: seqexplain.explain(c.causal, 123, " mat", "occlusion"), None,
         InputError, ("must be a string, not int",)),
    Case("text with bytes that are not UTF-8", _nothing,
         lambda c, _: seqexplain.explain(c.causal, "The cat \udcff sat", " mat", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, "The cat \udcff sat", "--target", " mat", "--method", "occlusion"),
         InputError, ("not valid Unicode",)),
    Case("target with a lone surrogate", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " \ud800", "occlusion"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " \ud800", "--method", "occlusion"),
         InputError, ("target is not valid Unicode",)),
    Case("text of nothing but special tokens", _nothing,
         lambda c, _: seqexplain.explain(c.classifier, "\u200b", None, "occlusion"),
         lambda c, _: _explain_argv(c.bert_dir, "\u200b", "--method", "occlusion"),
         InputError, ("special tokens only",)),
    Case("max_new_tokens of zero", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, None, "occlusion", max_new_tokens=0),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--method", "occlusion", "--max-new-tokens", "0"),
         InputError, ("max_new_tokens must be a positive number",)),
    Case("label index for a language model", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, 3, "occlusion"), None,
         InputError, ("text, not a label index",)),
    Case("model that ignores its attention mask", _nothing,
         lambda c, _: seqexplain.explain(_ignoring_model(c), PROMPT, " mat", "occlusion"), None,
         UnsupportedError, ("ignores its attention mask",)),
    Case("gradients of a model without input embeddings", _nothing,
         lambda c, _: seqexplain.explain(_ignoring_model(c, embeddings=False), PROMPT, " mat", "gradient_norm"),
         None, UnsupportedError, ("get_input_embeddings",)),
    Case("a causal LM forced to be a classifier", _copy_gpt2,
         lambda c, path: seqexplain.load_model(path, kind="classifier"),
         lambda c, path: _explain_argv(path, "a fine film", "--kind", "classifier", "--method", "occlusion"),
         ModelLoadError, ("initialised at random", "allow_new_head"), ("--allow-new-head",)),
    Case("an empty model path", _nothing,
         lambda c, _: seqexplain.load_model(""),
         lambda c, _: _explain_argv("", PROMPT, "--method", "occlusion"),
         InputError, ("model path is empty",)),
    Case("model directory without tokenizer files", _without_tokenizer,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: _explain_argv(path, PROMPT, "--method", "occlusion"),
         ModelLoadError, ("no usable tokenizer files",)),
    Case("unknown autocast type", _nothing,
         lambda c, _: seqexplain.load_model(c.gpt2_dir, autocast="int8"), None,
         InputError, ("autocast", "bf16")),
    Case("a device that is not one", _nothing,
         lambda c, _: seqexplain.load_model(c.gpt2_dir, device="tpu9"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--method", "occlusion", "--device", "tpu9"),
         InputError, ("tpu9",)),
    Case("unknown objective", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", objective="odds"), None,
         InputError, ("unknown objective", "contrast")),
    Case("classifier foil that is not a label", _nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "positive", "occlusion", objective="contrast",
                                         foil="maybe"),
         lambda c, _: _explain_argv(c.bert_dir, "a fine film", "--target", "positive", "--method", "occlusion",
                                    "--objective", "contrast", "--foil", "maybe"),
         InputError, ("unknown label", "maybe")),
    Case("classifier foil index out of range", _nothing,
         lambda c, _: seqexplain.explain(c.classifier, "a fine film", "positive", "occlusion", objective="contrast",
                                         foil=9),
         lambda c, _: _explain_argv(c.bert_dir, "a fine film", "--target", "positive", "--method", "occlusion",
                                    "--objective", "contrast", "--foil", "9"),
         InputError, ("9", "out of range")),
    Case("a foil without the contrast objective", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", foil=" dog"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "occlusion",
                                    "--foil", " dog"),
         InputError, ("foil is only used with objective='contrast'",)),
    Case("rationale ordered by a rationale method", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "baseline_rationale", order_by="greedy"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "baseline_rationale",
                                    "-o", "order_by=greedy"),
         InputError, ("order_by='greedy'", "attribution method")),
    Case("rationale ordered by an unknown method", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "baseline_rationale", order_by="magic"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "baseline_rationale",
                                    "-o", "order_by=magic"),
         UnknownMethodError, ("magic",)),
    Case("trapezoid rule with one step", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "integrated_gradients", steps=1,
                                         rule="riemann_trapezoid"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "integrated_gradients",
                                    "-o", "steps=1", "-o", "rule=riemann_trapezoid"),
         InputError, ("at least 2 steps",)),
    Case("replacement that is not one token", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion", replace_with="hello world"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "occlusion",
                                    "-o", "replace_with=hello world"),
         InputError, ("not a single token",)),
    Case("IG baseline that is not one token", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "integrated_gradients", baseline="nothing here"),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "integrated_gradients",
                                    "-o", "baseline=nothing here"),
         InputError, ("not a single token",)),
    Case("exhaustive search with no subsets allowed", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "exhaustive", max_subsets=0),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "exhaustive",
                                    "-o", "max_subsets=0"),
         InputError, ("max_subsets", "int ≥ 1")),
    Case("option without a value", _nothing,
         lambda c, _: cli_parse_options(["steps"]),
         lambda c, _: _explain_argv(c.gpt2_dir, PROMPT, "--target", " mat", "--method", "integrated_gradients",
                                    "-o", "steps"),
         InputError, ("key=value",)),
    Case("explain_many items of mixed kinds", _nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, ["The cat", ("The dog", " sat")], "occlusion",
                                                   progress=False)), None,
         InputError, ("items of one kind",)),
    Case("explain_many item that is a number", _nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [3.5], "occlusion", progress=False)), None,
         InputError, ("not float",)),
    Case("explain_many mapping with an unknown key", _nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": "a", "label": 1}], "occlusion",
                                                   progress=False)), None,
         InputError, ("text, target, foil, groups, objective",)),
    Case("groups that overlap", _nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": PROMPT, "target": " mat",
                                                               "groups": {"spans": [[0, 1], [1, 2]]}}],
                                                   "occlusion", progress=False)), None,
         InputError, ("overlap at position 1",)),
    Case("groups outside the input", _nothing,
         lambda c, _: list(seqexplain.explain_many(c.causal, [{"text": PROMPT, "target": " mat",
                                                               "groups": {"spans": [[0, 500]]}}],
                                                   "occlusion", progress=False)), None,
         InputError, ("500", "outside the input")),
    Case("precomputed vectors of the wrong width", _nothing,
         lambda c, _: seqexplain.explain_example(c.classifier, _vectors(c, 5), "gradient_norm"), None,
         InputError, ("width 32",)),
    Case("aggregation that does not exist", _nothing,
         lambda c, _: seqexplain.explain(c.causal, PROMPT, " mat", "occlusion").aggregate("median"), None,
         InputError, ("median",)),
    Case("saved attribution that is a JSON list", _file("[1, 2, 3]"),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("x.json",)),
    Case("saved attribution with offsets beyond the text", _saved(_set("offsets", [[0, 999]] * 20)),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("saved.json",)),
    Case("saved rationale with positions out of range", _saved(_bad_rationale),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("saved.json", "999")),
    Case("saved attribution from a newer seqexplain", _saved(_set("version", 99)),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("newer seqexplain", "99")),
    Case("random bytes named .safetensors", _bytes_file("x.safetensors", bytes(range(256)) * 4),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("x.safetensors",)),
    Case("scores of the wrong shape", _saved(_set("scores", [[1.0, 2.0]])),
         lambda c, path: seqexplain.Attribution.load(path),
         lambda c, path: ["show", path],
         DataError, ("saved.json",)),
    Case("non-finite scores with strict", _nothing,
         lambda c, _: seqexplain.explain(c.no_attention(nan_when_dropped=True), PROMPT, " mat", "occlusion",
                                         strict=True),
         lambda c, _: _explain_argv("custom-nan", PROMPT, "--target", " mat", "--method", "occlusion", "--strict"),
         NonFiniteScoresError, ("non-finite", "input 1")),
]


def _vectors(ctx: Any, width: int) -> Any:
    ex = ctx.classifier.encode("a fine film", 2)
    return ex.replace(input_ids=None, input_vectors=torch.zeros(ex.length, width))


@pytest.fixture()
def ctx(gpt2, bert, gpt2_dir, bert_dir, tmp_path, no_attention_lm, custom_model):
    work = tmp_path / "work"
    work.mkdir()
    return SimpleNamespace(causal=seqexplain.load_model(*gpt2), classifier=seqexplain.load_model(*bert),
                           gpt2_dir=gpt2_dir, bert_dir=bert_dir, tmp=work, no_attention=no_attention_lm,
                           bpe=gpt2[1])


def _snapshot(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``folder``: its kind and, for files, its bytes."""
    out = {}
    for p in sorted(folder.rglob("*")):
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file" if p.is_file() else "other"
        out[str(p.relative_to(folder))] = (kind, p.read_bytes() if kind == "file" else b"")
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ctx, runner):
    arg = case.setup(ctx)
    before = _snapshot(ctx.tmp)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the error itself, not a warning on the way to it
        with pytest.raises(case.error) as excinfo:
            case.api(ctx, arg)
    assert type(excinfo.value) is case.error  # the class itself, not just a subclass
    message = str(excinfo.value)
    for fragment in case.fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message.strip(), message  # one line
    assert _snapshot(ctx.tmp) == before  # nothing on disk was lost, changed or added
    if case.cli is None:
        return

    result = runner.invoke(app, [str(a) for a in case.cli(ctx, arg)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # handled, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr  # one error line (model loading may print progress bars before it)
    for fragment in case.fragments + case.cli_fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert _snapshot(ctx.tmp) == before
