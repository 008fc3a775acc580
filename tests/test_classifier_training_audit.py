"""Audit of the fine-tuning loop (:mod:`seqexplain.training.classifier`) against independent references: the loss of
a step against a hand cross-entropy of each text alone (padding excluded), the learning-rate schedule against
transformers' linear schedule, seeds, and refused edge inputs (a clear InputError before any training)."""

from __future__ import annotations

import math

import pytest
import torch
from oracles import transformers_rates
from transformers import BertConfig, BertForSequenceClassification

from seqexplain.errors import InputError
from seqexplain.training.classifier import ClassifierTrainConfig, train_classifier

TEXTS = ["the cat sat on the mat", "a dog ran", "what a lovely film it was", "dull", "the quick brown fox"]
LABELS = [0, 1, 1, 0, 1]


def _model(tokenizer, seed: int = 0, dropout: float = 0.0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(cfg)


def _cfg(**kw) -> ClassifierTrainConfig:
    return ClassifierTrainConfig(**{"max_length": 16, "epochs": 1, "batch_size": 2, "lr": 1e-3, "seed": 0,
                                    "checkpoint_every": 1000, **kw})


def test_first_step_loss_is_the_mean_cross_entropy_of_each_text_alone(tmp_path, bert):
    """A batch larger than the data is one batch per epoch; its loss = mean over the texts of −log p(label), each
    text run alone (no padding), so padding must not change any text's logits."""
    tok = bert[1]
    model = _model(tok)
    with torch.no_grad():
        ref = []
        for text, y in zip(TEXTS, LABELS, strict=True):
            logits = model(**tok(text, return_tensors="pt")).logits[0]
            ref.append(-torch.log_softmax(logits, -1)[y].item())
    got = train_classifier(model, tok, (TEXTS, LABELS), (TEXTS[:2], LABELS[:2]), _cfg(batch_size=100, epochs=2),
                           tmp_path, progress=False)
    assert got["steps"] == 2
    assert got["history"][0]["loss"] == pytest.approx(sum(ref) / len(ref), abs=1e-5)


def test_schedule_matches_transformers_after_warmup(tmp_path, bert):
    """Steps ``epochs × ⌈n / batch⌉``; after the warm-up the rate equals transformers' linear schedule (which reaches
    0 only after the last step); during warm-up this loop uses ``(step + 1) / warm`` where transformers starts at 0."""
    tok = bert[1]
    cfg = _cfg(epochs=3, batch_size=2, warmup=0.25)
    got = train_classifier(_model(tok), tok, (TEXTS, LABELS), (TEXTS[:1], LABELS[:1]), cfg, tmp_path, progress=False)
    total = 3 * math.ceil(len(TEXTS) / 2)
    assert got["steps"] == total == 9
    warm = max(1, round(0.25 * total))
    hf = transformers_rates("linear", warm, total, lr=cfg.lr)
    lrs = [h["lr"] for h in got["history"]]
    assert lrs[warm:] == pytest.approx(hf[warm:], rel=1e-12)
    assert lrs[:warm] == pytest.approx([cfg.lr * (s + 1) / warm for s in range(warm)], rel=1e-12)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, bert):
    tok = bert[1]

    def run(seed: int, name: str) -> list[torch.Tensor]:
        model = _model(tok, dropout=0.1)
        train_classifier(model, tok, (TEXTS, LABELS), (TEXTS[:1], LABELS[:1]), _cfg(seed=seed), tmp_path / name,
                         progress=False)
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = run(1, "a"), run(1, "b"), run(2, "c")
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": -1}, {"batch_size": 0}, {"max_steps": 0},
                                 {"lr": -1e-3}, {"warmup": 1.5}, {"warmup": -0.1}, {"max_grad_norm": 0.0},
                                 {"checkpoint_every": 0}, {"max_length": 0}])
def test_edge_configs_are_refused(bad):
    """epochs 0 / max_steps 0 were silent no-ops that saved an untrained 'fine-tuned' model; batch_size 0 was a
    ZeroDivisionError traceback. (lr 0 stays allowed: a documented control run, tests/test_training_resume_audit.)"""
    with pytest.raises(InputError):
        _cfg(**bad)


def test_validation_labels_are_checked_before_training(tmp_path, bert):
    """Validation texts and labels of different lengths crashed with a bare ValueError after the whole training."""
    tok = bert[1]
    with pytest.raises(InputError, match="validation"):
        train_classifier(_model(tok), tok, (TEXTS, LABELS), (TEXTS[:2], LABELS[:1]), _cfg(), tmp_path,
                         progress=False)
    assert not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize("labels", [[0, 1, 2, 0, 1], [0, -1, 1, 0, 1]])
def test_labels_outside_the_models_classes_are_refused(tmp_path, bert, labels):
    """A label outside ``0..num_labels-1`` was an IndexError traceback from inside the model at the first step."""
    tok = bert[1]
    with pytest.raises(InputError, match="label"):
        train_classifier(_model(tok), tok, (TEXTS, labels), (TEXTS[:1], [0]), _cfg(), tmp_path, progress=False)


@pytest.mark.parametrize(("lr", "steps"), [(float("inf"), 1), (1e30, 3)])
def test_training_that_diverges_is_an_error_not_a_model(tmp_path, bert, lr, steps):
    """An infinite learning rate left every weight NaN and the run reported "validation accuracy 1.000" (every
    prediction class 0, which all validation labels were); the loss or, after a single step, the weights say so."""
    tok = bert[1]
    with pytest.raises(InputError, match="training diverged by step .*lower --lr"):
        train_classifier(_model(tok), tok, (TEXTS, LABELS), (TEXTS[:2], LABELS[:2]),
                         _cfg(lr=lr, batch_size=100, epochs=steps, max_grad_norm=1e30), tmp_path, progress=False)
