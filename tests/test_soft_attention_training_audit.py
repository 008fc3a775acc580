"""Audit of the soft-attention loop: without a dev set there is nothing to choose by, so the weights after the last
step are the result (they were silently those of the first evaluation); out-of-range settings are InputErrors."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.errors import InputError
from seqexplain.training.soft_attention import build_lstm_model, train_soft_attention
from seqexplain.training.soft_attention_batches import WordBatcher
from seqexplain.training.soft_attention_objective import SoftAttentionConfig, config_from_dict

WORDS = ["the", "a", "film", "plot", "was", "awful", "boring", "fine"]


def _data(n: int) -> list[LabelledSentence]:
    rng = random.Random(0)
    out = []
    for k in range(n):
        words = rng.sample(WORDS[:5], 3) + ([rng.choice(WORDS[5:7])] if k % 2 else [])
        out.append(LabelledSentence(tuple(words), tuple("C" if w in WORDS[5:7] else "O" for w in words), "C"))
    return out


def test_without_a_dev_set_the_final_weights_are_kept(tmp_path):
    torch.manual_seed(0)
    train = _data(16)
    model, tok = build_lstm_model(train, ("neg", "pos"), seed=0, word_dim=8, char_dim=0, hidden=8, word_hidden=8,
                                  dropout=0.0, head={"evidence_size": 4, "final_hidden": 4, "dropout": 0.0})
    cfg = SoftAttentionConfig(learning_rate=0.05, weight_decay=0.0, per_device_train_batch_size=8, warmup_ratio=0.0,
                              num_train_epochs=3)
    res = train_soft_attention(model, WordBatcher(tok), train, [], cfg, tmp_path, progress=False)
    assert res.steps == 6 and [h["step"] for h in res.history] == [2, 4, 6]
    assert res.best_step == 6
    last = load_file(str(tmp_path / "last.safetensors"))  # written at the last evaluation (step 6)
    for name, value in model.state_dict().items():
        assert torch.equal(value.cpu(), last[name]), name


@pytest.mark.parametrize("bad", [{"per_device_train_batch_size": 0}, {"per_device_eval_batch_size": 0},
                                 {"num_train_epochs": 0}, {"gradient_accumulation_steps": 0}, {"max_steps": 0},
                                 {"eval_steps": 0}, {"warmup_ratio": 1.5}, {"learning_rate": -1e-3},
                                 {"mask_prob": 1.5}, {"max_grad_norm": 0.0}, {"max_seq_length": 1}, {"zero_n": -1}])
def test_edge_settings_are_input_errors(bad):
    """num_train_epochs 0 silently trained one step (max(1, 0)); max_steps 0 silently meant 'use the epochs'
    (``max_steps or ...``); batch size or accumulation 0 were ZeroDivisionError tracebacks."""
    with pytest.raises(InputError, match=next(iter(bad))):
        config_from_dict(bad)


def test_zero_learning_rate_and_no_max_steps_stay_valid():
    assert config_from_dict({"learning_rate": 0.0, "max_steps": None, "eval_steps": None}).learning_rate == 0.0


@pytest.mark.parametrize("bad", [{"freeze_layers": -1}, {"freeze_bert_layers_up_to": -1}])
def test_negative_freeze_counts_are_refused(bad):
    """freeze_bert_layers_up_to=-1 was the slice children[:-1]: every top-level child but the last frozen, silently."""
    with pytest.raises(InputError, match=next(iter(bad))):
        config_from_dict(bad)


def test_freezing_more_layers_than_the_encoder_has_is_refused():
    from transformers import BertConfig, BertModel

    from seqexplain.training.soft_attention import freeze

    enc = BertModel(BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=16))
    with pytest.raises(InputError, match="2 layers"):
        freeze(enc, config_from_dict({"freeze_layers": 3}))
