"""Training the attention RNNs: resumable (a resumed run equals an uninterrupted one), best-validation checkpoint,
metrics against a hand loop, safetensors round trip, bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.attention_rnn import AttentionRNNConfig, load_attention_rnn, read_config, save_attention_rnn
from seqexplain.models.attention_rnn_adapter import VectorDocument
from seqexplain.training.attention_rnn import TrainConfig, evaluate, train

D = 5


def _docs(n: int, seed: int) -> list[VectorDocument]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 7))
        x = torch.tensor(rng.normal(size=(k, D)), dtype=torch.float32)
        types = [int(t) for t in rng.integers(0, 2, size=k)]
        out.append(VectorDocument([f"w{j}" for j in range(k)], x, types, int(float(x[:, 0].sum()) > 0)))
    return out


CFG = AttentionRNNConfig(input_dim=D, hidden=[6, 4], decoder="hier", n_event_types=2, dropout=0.2)


def test_resumed_run_equals_uninterrupted(tmp_path):
    tr, va = _docs(40, 0), _docs(12, 1)
    full = train(CFG, tr, va, tmp_path / "full", TrainConfig(epochs=3, batch_size=8, lr=0.05), tensorboard=False)
    train(CFG, tr, va, tmp_path / "part", TrainConfig(epochs=1, batch_size=8, lr=0.05), tensorboard=False)
    resumed = train(CFG, tr, va, tmp_path / "part", TrainConfig(epochs=3, batch_size=8, lr=0.05))
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in full["history"]]
    a, b = load_attention_rnn(tmp_path / "full" / "last.safetensors"), load_attention_rnn(
        tmp_path / "part" / "last.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    best = min(full["history"], key=lambda h: h["val_loss"])
    assert full["best"] == best
    got = evaluate(load_attention_rnn(tmp_path / "full" / "best.safetensors"), va)
    assert abs(got["loss"] - best["val_loss"]) < 1e-6
    assert list((tmp_path / "part" / "tb").iterdir())  # TensorBoard events
    saved = json.loads((tmp_path / "full" / "state.json").read_text())
    assert saved["epoch"] == 3 and saved["model"]["decoder"] == "hier"
    with pytest.raises(InputError, match="other settings"):
        train(CFG, tr, va, tmp_path / "full", TrainConfig(epochs=3, batch_size=8, lr=0.1), tensorboard=False)


def test_metrics_match_a_hand_loop(tmp_path):
    tr, va = _docs(30, 2), _docs(15, 3)
    train(CFG, tr, va, tmp_path, TrainConfig(epochs=2, batch_size=10, lr=0.05, optimizer="adam"), tensorboard=False)
    model = load_attention_rnn(tmp_path / "best.safetensors")
    got = evaluate(model, va, batch_size=4)
    preds, losses = [], []
    with torch.no_grad():
        for d in va:
            z, _ = model(d.vectors.unsqueeze(0), None, torch.tensor([d.event_types]))
            losses.append(float(-torch.log_softmax(z[0], -1)[d.label]))
            preds.append(int(z[0].argmax()))
    gold = [d.label for d in va]
    f1s = []
    for c in (0, 1):
        tp = sum(p == c and g == c for p, g in zip(preds, gold, strict=True))
        fp = sum(p == c and g != c for p, g in zip(preds, gold, strict=True))
        fn = sum(p != c and g == c for p, g in zip(preds, gold, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    assert abs(got["loss"] - np.mean(losses)) < 1e-5
    assert got["accuracy"] == np.mean(np.array(preds) == np.array(gold))
    assert abs(got["f1"] - np.mean(f1s)) < 1e-12


def test_weight_files(tmp_path):
    from seqexplain.models.attention_rnn import AttentionRNN

    model = AttentionRNN(CFG)
    save_attention_rnn(model, tmp_path / "m.safetensors")
    assert read_config(tmp_path / "m.safetensors") == CFG
    assert load_attention_rnn(tmp_path / "m.safetensors", numerics="original").config.numerics == "original"
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(ModelLoadError, match="not an attention-RNN weight file"):
        read_config(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="only numerics and dropout"):
        load_attention_rnn(tmp_path / "m.safetensors", hidden=[3])
    with pytest.raises(InputError, match="width 5"):
        train(AttentionRNNConfig(input_dim=7), _docs(4, 0), _docs(2, 1), tmp_path / "w", tensorboard=False)
