"""Bad inputs about the model, through the API and the CLI: model folders that are missing, corrupt or
incomplete, a model forced into the wrong kind, bad devices and autocast types, and models that cannot do what
a method needs (no attention weights, an ignored attention mask, no input embeddings).

The contract each case is held to is in ``bad_input_cases``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from bad_input_cases import PROMPT, Case, check_bad_input, explain_argv, nothing

import seqexplain
from seqexplain.errors import InputError, ModelLoadError, UnsupportedError


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


def _without_tokenizer(ctx: Any) -> Path:
    path = _copy_gpt2(ctx)
    for f in path.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            f.unlink()
    return path


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


CASES = [
    Case("missing model directory", lambda c: c.tmp / "missing",
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("missing", "does not exist")),
    Case("model directory without config", lambda c: c.tmp,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("no config.json", "not a Hugging Face model directory")),
    Case("corrupt config", _corrupt_config,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("config",)),
    Case("weights cut inside the header", _truncated_weights(lambda n: 1000),
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("weights",)),
    Case("weights cut inside the tensors", _truncated_weights(lambda n: n // 3),
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat", "--method", "occlusion"),
         ModelLoadError, ("weights",)),
    Case("attention_last without attention weights", nothing,
         lambda c, _: seqexplain.explain(c.no_attention(), PROMPT, " mat", "attention_last"),
         lambda c, _: explain_argv("custom", PROMPT, "--target", " mat", "--method", "attention_last"),
         UnsupportedError, ("attention weights", "gradient or perturbation")),
    Case("attention_rollout without attention weights", nothing,
         lambda c, _: seqexplain.explain(c.no_attention(), PROMPT, " mat", "attention_rollout"),
         lambda c, _: explain_argv("custom", PROMPT, "--target", " mat", "--method", "attention_rollout"),
         UnsupportedError, ("attention weights", "gradient or perturbation")),
    Case("model that ignores its attention mask", nothing,
         lambda c, _: seqexplain.explain(_ignoring_model(c), PROMPT, " mat", "occlusion"), None,
         UnsupportedError, ("ignores its attention mask",)),
    Case("gradients of a model without input embeddings", nothing,
         lambda c, _: seqexplain.explain(_ignoring_model(c, embeddings=False), PROMPT, " mat", "gradient_norm"),
         None, UnsupportedError, ("get_input_embeddings",)),
    Case("a causal LM forced to be a classifier", _copy_gpt2,
         lambda c, path: seqexplain.load_model(path, kind="classifier"),
         lambda c, path: explain_argv(path, "a fine film", "--kind", "classifier", "--method", "occlusion"),
         ModelLoadError, ("initialised at random", "allow_new_head"), ("--allow-new-head",)),
    Case("a causal LM forced to be an encoder-decoder", _copy_gpt2,
         lambda c, path: seqexplain.load_model(path, kind="seq2seq"),
         lambda c, path: explain_argv(path, PROMPT, "--kind", "seq2seq", "--method", "occlusion"),
         InputError, ("holds a GPT2LMHeadModel model", "cannot load as a seq2seq", "drop --kind")),
    Case("an empty model path", nothing,
         lambda c, _: seqexplain.load_model(""),
         lambda c, _: explain_argv("", PROMPT, "--method", "occlusion"),
         InputError, ("model path is empty",)),
    Case("model directory without tokenizer files", _without_tokenizer,
         lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, PROMPT, "--method", "occlusion"),
         ModelLoadError, ("no usable tokenizer files",)),
    Case("unknown autocast type", nothing,
         lambda c, _: seqexplain.load_model(c.gpt2_dir, autocast="int8"), None,
         InputError, ("autocast", "bf16")),
    Case("a device that is not one", nothing,
         lambda c, _: seqexplain.load_model(c.gpt2_dir, device="tpu9"),
         lambda c, _: explain_argv(c.gpt2_dir, PROMPT, "--method", "occlusion", "--device", "tpu9"),
         InputError, ("tpu9",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, bad_input_ctx: Any, runner: Any) -> None:
    check_bad_input(case, bad_input_ctx, runner)
