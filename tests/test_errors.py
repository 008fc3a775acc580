"""Every input a user can get wrong gives one :class:`SeqExplainError` with a message that says what to do."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import seqexplain
from seqexplain.errors import (
    InputError,
    ModelLoadError,
    NonFiniteScoresError,
    SeqExplainError,
    UnknownMethodError,
    UnsupportedError,
)


class NoAttentionLM(torch.nn.Module):
    """A causal LM with the Hugging Face calling convention but no attention weights to return: each position
    sees the masked running mean of the embeddings up to it."""

    seqexplain_kind = "causal"

    def __init__(self, vocab_size: int, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab_size, dim)
        self.out = torch.nn.Linear(dim, vocab_size)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.emb

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None):
        x = self.emb(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        h = torch.cumsum(x * m, dim=1) / torch.cumsum(m, dim=1).clamp(min=1.0)
        return SimpleNamespace(logits=self.logits(torch.tanh(h), attention_mask))

    def logits(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.out(h)


class NaNWhenDroppedLM(NoAttentionLM):
    """Like :class:`NoAttentionLM`, but its logits are NaN in every row where input position 1 is masked out,
    so occlusion's score for position 1 is NaN while everything else stays finite."""

    def logits(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.out(h)
        if attention_mask.shape[1] > 1:
            dropped = attention_mask[:, 1] == 0
            logits = torch.where(dropped.view(-1, 1, 1), torch.full_like(logits, float("nan")), logits)
        return logits


@pytest.fixture(scope="module")
def causal(gpt2):
    model, tok = gpt2
    return seqexplain.load_model(model, tok)


@pytest.fixture(scope="module")
def classifier(bert):
    model, tok = bert
    return seqexplain.load_model(model, tok)


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


def test_all_errors_are_seqexplain_errors():
    for cls in (InputError, ModelLoadError, NonFiniteScoresError, UnknownMethodError, UnsupportedError):
        assert issubclass(cls, SeqExplainError)


def test_empty_text(causal):
    for text in ("", "   \n"):
        with pytest.raises(InputError) as ei:
            seqexplain.explain(causal, text, " cat", "occlusion")
        assert "empty" in message(ei)


def test_text_longer_than_positions_states_limit_and_truncate_works(causal):
    text = "The cat sat on the mat. " * 60  # far more than the fixture's 128 positions
    with pytest.raises(InputError) as ei:
        seqexplain.explain(causal, text, " dog", "occlusion")
    assert "128" in message(ei) and "truncate" in message(ei)
    attr = seqexplain.explain(causal, text, " dog", "occlusion", truncate=True)
    assert len(attr.tokens) <= 128
    assert attr.target_tokens and np.isfinite(attr.scores[attr.visible()]).all()


def test_unknown_method_lists_known_ones(causal):
    with pytest.raises(UnknownMethodError) as ei:
        seqexplain.explain(causal, "The cat", " sat", "shapley_magic")
    msg = message(ei)
    assert "shapley_magic" in msg
    for m in seqexplain.available_methods():
        assert m.name in msg


def test_unknown_option_lists_options(causal):
    with pytest.raises(InputError) as ei:
        seqexplain.explain(causal, "The cat", " sat", "integrated_gradients", n_steps=3)
    assert "n_steps" in message(ei) and "steps" in message(ei)


def test_unknown_label_lists_labels(classifier):
    with pytest.raises(InputError) as ei:
        seqexplain.explain(classifier, "a fine film", "happy", "occlusion")
    msg = message(ei)
    assert "happy" in msg and "negative" in msg and "positive" in msg
    with pytest.raises(InputError) as ei:
        seqexplain.explain(classifier, "a fine film", 7, "occlusion")
    assert "out of range" in message(ei)
    attr = seqexplain.explain(classifier, "a fine film", "Positive", "occlusion")  # case-insensitive
    assert attr.target_tokens == ["positive"]


def test_target_that_tokenizes_to_nothing(causal):
    with pytest.raises(InputError) as ei:
        seqexplain.explain(causal, "The cat", "", "occlusion")
    assert "no tokens" in message(ei)


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelLoadError) as ei:
        seqexplain.load_model(tmp_path / "nope")
    assert "does not exist" in message(ei)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError) as ei:
        seqexplain.load_model(tmp_path)
    assert "config.json" in message(ei)


@pytest.fixture(scope="module")
def saved_gpt2(gpt2, tmp_path_factory):
    model, tok = gpt2
    path = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_config(saved_gpt2, tmp_path):
    path = _copy(saved_gpt2, tmp_path / "m")
    (path / "config.json").write_text("{ this is not json", encoding="utf-8")
    with pytest.raises(ModelLoadError) as ei:
        seqexplain.load_model(path)
    assert "config" in message(ei)


def test_truncated_weights(saved_gpt2, tmp_path):
    path = _copy(saved_gpt2, tmp_path / "m")
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError) as ei:
        seqexplain.load_model(path)
    assert "weights" in message(ei)


def test_saved_directory_loads(saved_gpt2):
    wrapped = seqexplain.load_model(saved_gpt2)
    assert wrapped.kind == "causal"


def test_unknown_kind(gpt2):
    model, tok = gpt2
    with pytest.raises(InputError) as ei:
        seqexplain.load_model(model, tok, kind="regression")
    assert "causal" in message(ei)


def test_attention_method_on_model_without_attentions(bpe):
    wrapped = seqexplain.load_model(NoAttentionLM(len(bpe)), bpe)
    for method in ("attention_last", "attention_rollout"):
        with pytest.raises(UnsupportedError) as ei:
            seqexplain.explain(wrapped, "The cat sat on the", " mat", method)
        assert "attention" in message(ei) and "gradient or perturbation" in message(ei)
    # the same model works with methods that only need scores and gradients
    for method in ("occlusion", "grad_x_input"):
        attr = seqexplain.explain(wrapped, "The cat sat on the", " mat", method)
        assert np.isfinite(attr.scores[attr.visible()]).all()


def test_nonfinite_scores_are_flagged_and_warned(bpe):
    wrapped = seqexplain.load_model(NaNWhenDroppedLM(len(bpe)), bpe)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        attr = seqexplain.explain(wrapped, "The cat sat on the", " mat", "occlusion")
    assert [0, 1] in attr.meta["nonfinite_cells"]
    assert (0, 1) in attr.nonfinite_cells()
    with pytest.raises(NonFiniteScoresError) as ei:
        attr.check_finite()
    assert "input 1" in message(ei)
    # the record survives a save/load round trip
    assert json.loads(json.dumps(attr.to_dict()))["meta"]["nonfinite_cells"] == attr.meta["nonfinite_cells"]


def test_nonfinite_scores_strict_raises(bpe):
    wrapped = seqexplain.load_model(NaNWhenDroppedLM(len(bpe)), bpe)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # strict raises instead of warning
        with pytest.raises(NonFiniteScoresError):
            seqexplain.explain(wrapped, "The cat sat on the", " mat", "occlusion", strict=True)


def test_unreadable_attribution_file(tmp_path):
    from seqexplain.errors import DataError

    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(DataError):
        seqexplain.Attribution.load(bad)
    with pytest.raises(DataError):
        seqexplain.Attribution.load(tmp_path / "missing.json")
