"""Fine-tuning loop: a run interrupted after a checkpoint and resumed ends with the same weights as an uninterrupted
one; a checkpoint made with other settings is refused."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from seqexplain.errors import ModelLoadError
from seqexplain.training.classifier import ClassifierTrainConfig, train_classifier

TEXTS = ["the cat sat on the mat", "a dog ran far away", "what a lovely film", "dull and boring plot",
         "the quick brown fox", "great acting all round"]
LABELS = [0, 1, 1, 0, 0, 1]


@pytest.fixture(scope="module")
def tokenizer(bert):
    return bert[1]


def _model(tokenizer, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(cfg)


class Stop(Exception):
    pass


def test_resume_repeats_the_uninterrupted_run(tmp_path, tokenizer, monkeypatch):
    cfg = ClassifierTrainConfig(max_length=16, epochs=2, batch_size=4, lr=1e-3, checkpoint_every=2, seed=3)
    data, valid = (TEXTS, LABELS), (TEXTS[:2], LABELS[:2])
    whole = _model(tokenizer, 0)
    summary = train_classifier(whole, tokenizer, data, valid, cfg, tmp_path / "a", progress=False)
    assert summary["steps"] == 4 and (tmp_path / "a" / "model" / "model.safetensors").is_file()

    broken = _model(tokenizer, 0)
    calls = {"n": 0}
    forward = broken.forward

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th training step: the checkpoint of step 2 is on disk
            raise Stop
        return forward(*args, **kwargs)

    monkeypatch.setattr(broken, "forward", failing)
    with pytest.raises(Stop):
        train_classifier(broken, tokenizer, data, valid, cfg, tmp_path / "b", progress=False)
    resumed = _model(tokenizer, 99)  # other initial weights: everything comes from the checkpoint
    again = train_classifier(resumed, tokenizer, data, valid, cfg, tmp_path / "b", progress=False)
    assert [h["loss"] for h in again["history"]] == pytest.approx([h["loss"] for h in summary["history"]])
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, msg=name)

    other = ClassifierTrainConfig(max_length=16, epochs=2, batch_size=4, lr=5e-4, checkpoint_every=2, seed=3)
    with pytest.raises(ModelLoadError, match="other settings"):
        train_classifier(_model(tokenizer, 0), tokenizer, data, valid, other, tmp_path / "b", progress=False)
