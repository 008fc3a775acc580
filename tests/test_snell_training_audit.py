"""Audit of the Snell et al. training loop's edge inputs: a clear InputError before anything is written, never a
ZeroDivisionError or a silent no-op."""

from __future__ import annotations

import pytest

from seqexplain.errors import InputError
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.snell_classifier import SnellClassifierConfig
from seqexplain.training.snell import SnellTrainConfig, batch_indices, train_snell_classifier


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"batch_size": -1}, {"lr": 0.0}, {"lr": -1e-3}, {"steps": 0},
                                 {"checkpoint_every": -1}])
def test_config_refuses_edge_values(bad):
    """lr 0 trained nothing while writing every checkpoint; batch_size 0 was a ZeroDivisionError at the first step."""
    with pytest.raises(InputError):
        SnellTrainConfig(**bad)  # type: ignore[arg-type]


def test_batch_indices_refuse_batch_size_zero():
    with pytest.raises(InputError, match="batch_size"):
        batch_indices(5, 0, seed=0, step=0)


def test_batch_larger_than_the_data_is_refused_before_the_run_folder_is_written(tmp_path):
    """It used to write train.json and checkpoint 0 first, then fail at the first step, so a rerun with a fixed
    batch size was refused as 'a run with other settings'."""
    vocab = Vocab.build(["a", "b", "c"])
    train = [([1, 2, 3], 0), ([1, 3], 1), ([2, 2], 0)]
    mcfg = SnellClassifierConfig(len(vocab), 2, 4, 3, 2)
    with pytest.raises(InputError, match="exceeds"):
        train_snell_classifier(mcfg, train, SnellTrainConfig(steps=2, batch_size=4, tensorboard=False), tmp_path,
                               vocab)
    assert not (tmp_path / "train.json").exists()
    train_snell_classifier(mcfg, train, SnellTrainConfig(steps=2, batch_size=3, tensorboard=False), tmp_path, vocab)


def test_translator_evaluation_and_training_refuse_empty_input(tmp_path):
    """teacher_forced on no pairs was a ZeroDivisionError; a pair with an empty target a tensor-size RuntimeError."""
    import torch

    from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig
    from seqexplain.training.snell_translation import teacher_forced, train_snell_translator

    cfg = SnellTranslatorConfig(10, 6, 4, 2, 0.0, False, 0, 1, 2)
    torch.manual_seed(0)
    with pytest.raises(InputError, match="no pairs"):
        teacher_forced(SnellTranslator(cfg), [])
    with pytest.raises(InputError, match="pair 1"):
        train_snell_translator(cfg, [([4, 5, 2], [6, 2]), ([4, 2], [])], SnellTrainConfig(steps=1, batch_size=2,
                               tensorboard=False), tmp_path, "hash")
