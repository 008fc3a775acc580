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


def test_a_finished_run_saves_the_same_model_again_atomically_and_readable(tmp_path, tokenizer, monkeypatch):
    """Rerun after it finished, the trainer loads the last checkpoint and saves the model again: its config.json
    lost ``problem_type`` (set by the first training forward, which a finished run does not make), the weights were
    written 0600 while every other output is 0644, and the save went straight into ``model/`` (an interrupted one
    left a partial model). The second save equals the first byte for byte, files get the default mode, and a save
    that fails leaves the earlier model whole."""
    import json
    import os

    from seqexplain.atomic import default_file_mode

    cfg = ClassifierTrainConfig(max_length=16, epochs=1, batch_size=4, lr=1e-3, checkpoint_every=2, seed=3)
    data, valid = (TEXTS, LABELS), (TEXTS[:2], LABELS[:2])
    folder = tmp_path / "run" / "model"
    train_classifier(_model(tokenizer, 0), tokenizer, data, valid, cfg, tmp_path / "run", progress=False)
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert all(os.stat(p).st_mode & 0o777 == default_file_mode() for p in folder.iterdir())
    train_classifier(_model(tokenizer, 1), tokenizer, data, valid, cfg, tmp_path / "run", progress=False)
    again = {p.name: p.read_bytes() for p in folder.iterdir()}
    summaries = [json.loads(files.pop("training.json")) for files in (first, again)]
    assert again == first  # config.json and the weights too
    timeless = [{k: v for k, v in s.items() if k != "seconds"} for s in summaries]
    assert timeless[0] == timeless[1]  # the summary but its time, which adds this call's
    first["training.json"] = (folder / "training.json").read_bytes()

    def broken_save(self, *args, **kwargs):
        raise Stop
    monkeypatch.setattr(BertForSequenceClassification, "save_pretrained", broken_save)
    with pytest.raises(Stop):
        train_classifier(_model(tokenizer, 1), tokenizer, data, valid, cfg, tmp_path / "run", progress=False)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first
