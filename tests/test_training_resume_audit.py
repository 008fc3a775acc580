"""Resumption of the training loops after a kill at awkward points, and refusal of a changed configuration; the
oracle is an uninterrupted run with the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqexplain.errors import ModelLoadError
from seqexplain.models.rnn import RNNLanguageModel, RNNLMConfig
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.training import lm as lm_training
from seqexplain.training.lm import TrainConfig, train_lm

_TOKENS = ("the cat sat on the mat <eos> a dog ran home <eos> " * 40).split()


def _lm() -> RNNLanguageModel:
    torch.manual_seed(7)
    return RNNLanguageModel(RNNLMConfig(vocab_size=len(Vocab.build(_TOKENS)), embedding_size=8, hidden_size=8,
                                        dropout=0.3))


def _lm_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{"batch_size": 4, "num_steps": 8, "epochs": 3, "max_epoch": 1, "seed": 3, **kw})


def test_rnn_lm_resume_refuses_a_changed_training_config(tmp_path: Path) -> None:
    vocab = Vocab.build(_TOKENS)
    ids = vocab.encode(_TOKENS)
    train_lm(_lm(), ids, None, _lm_cfg(epochs=1), out_dir=tmp_path, vocab=vocab, progress=False)
    # more epochs is a continuation; another learning rate or batch size would mix two runs silently
    for changed in ({"lr": 0.5}, {"batch_size": 2}, {"seed": 4}):
        with pytest.raises(ModelLoadError, match=next(iter(changed))):
            train_lm(_lm(), ids, None, _lm_cfg(**changed), out_dir=tmp_path, vocab=vocab, progress=False)
    train_lm(_lm(), ids, None, _lm_cfg(epochs=2), out_dir=tmp_path, vocab=vocab, progress=False)


def test_rnn_lm_kill_while_writing_a_checkpoint_resumes_as_uninterrupted(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = Vocab.build(_TOKENS)
    ids = vocab.encode(_TOKENS)
    whole = _lm()
    train_lm(whole, ids, None, _lm_cfg(), out_dir=tmp_path / "whole", vocab=vocab, progress=False)

    # killed after the second epoch's weights were written but before its train_state.json
    real = lm_training.atomic_write_text
    calls = []

    def killed_on_second(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(lm_training, "atomic_write_text", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        train_lm(_lm(), ids, None, _lm_cfg(), out_dir=tmp_path / "cut", vocab=vocab, progress=False)
    monkeypatch.setattr(lm_training, "atomic_write_text", real)
    resumed = _lm()
    res = train_lm(resumed, ids, None, _lm_cfg(), out_dir=tmp_path / "cut", vocab=vocab, progress=False)
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
