"""``seqexplain.load_model`` / ``seqexplain explain --model`` on a trained soft-attention encoder folder: the folder
opens with the soft-attention adapter and explains exactly like the in-memory model; a folder without its weights is
a one-line ModelLoadError (CLI exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import seqexplain as se
from seqexplain.cli import app
from seqexplain.errors import ModelLoadError
from seqexplain.models.soft_attention import SoftAttentionAdapter
from seqexplain.training.soft_attention import build_encoder_model, save_trained_config, train_soft_attention
from seqexplain.training.soft_attention_batches import EncoderBatcher
from tests.test_soft_attention_training import CUES, FILLER, _cfg, _data

torch.set_num_threads(1)
TEXT = "the plot was awful and very boring"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any, Any]:
    """A tiny BERT encoder folder (random weights, WordPiece vocabulary of the test words), a soft-attention model on
    it trained for 2 steps into a folder, the in-memory model and its config."""
    from accelerate.state import AcceleratorState
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("soft-attention")
    enc = root / "encoder"
    enc.mkdir()
    (enc / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *FILLER, *CUES]) + "\n")
    BertTokenizerFast(str(enc / "vocab.txt")).save_pretrained(str(enc))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(FILLER) + len(CUES), hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)).save_pretrained(
        str(enc))
    cfg = _cfg(model_name=str(enc), max_steps=2, per_device_train_batch_size=4, attention_evidence_size=8,
               final_hidden_layer_size=8, max_seq_length=32)
    model, tok = build_encoder_model(cfg, ("neg", "pos"))
    run = root / "run"
    save_trained_config(run, cfg, ("neg", "pos"))
    AcceleratorState._reset_state(reset_partial_state=True)
    train_soft_attention(model, EncoderBatcher(tok), _data(8, 0), _data(4, 1), cfg, run, progress=False)
    return run, model, tok, cfg


def test_load_model_opens_the_folder_and_explains_like_the_module(trained: tuple[Path, Any, Any, Any]) -> None:
    run, model, tok, cfg = trained
    loaded = se.load_model(run)
    assert isinstance(loaded, SoftAttentionAdapter) and loaded.label_names() == ["neg", "pos"]
    memory = SoftAttentionAdapter(model, tok, max_length=cfg.max_seq_length)
    ex = loaded.encode(TEXT, target="pos")
    # oracle: the raw module's a_i, special positions from the tokenizer's own mask
    enc = tok(TEXT, return_special_tokens_mask=True, return_tensors="pt")
    with torch.no_grad():
        raw = model.eval()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           special_tokens_mask=enc["special_tokens_mask"])
    np.testing.assert_allclose(loaded.token_scores(ex), raw.token_scores[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(loaded.token_scores(ex), memory.token_scores(memory.encode(TEXT, target="pos")),
                               atol=1e-6)
    assert loaded.token_scores(ex)[0] == 0 and loaded.token_scores(ex)[-1] == 0  # [CLS], [SEP] never attended
    got = se.explain(loaded, TEXT, target="pos", method="occlusion")
    want = se.explain(memory, TEXT, target="pos", method="occlusion")
    assert got.tokens == want.tokens and got.target_tokens == ["pos"]
    np.testing.assert_allclose(np.asarray(got.scores), np.asarray(want.scores), atol=1e-6)
    assert np.abs(np.asarray(got.scores)).max() > 0


def test_folder_without_weights_is_a_one_line_error(trained: tuple[Path, Any, Any, Any], tmp_path: Path,
                                                    runner: Any) -> None:
    run = trained[0]
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "best.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="best.safetensors is missing") as err:
        se.load_model(broken)
    assert "\n" not in str(err.value)
    result = runner.invoke(app, ["explain", "--model", str(broken), "--text", TEXT, "--method", "occlusion"])
    assert result.exit_code == 2 and "best.safetensors is missing" in result.output
    assert "Traceback" not in result.output


def test_cli_explains_the_folder(trained: tuple[Path, Any, Any, Any], runner: Any) -> None:
    result = runner.invoke(app, ["explain", "--model", str(trained[0]), "--text", TEXT, "--method", "occlusion",
                                 "--target", "pos"])
    assert result.exit_code == 0, result.output
    assert "awful" in result.output


def test_config_without_the_training_config_is_a_one_line_error(trained: tuple[Path, Any, Any, Any],
                                                                tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(trained[0], broken)
    (broken / "config.json").write_text('{"model_type": "seqexplain-soft-attention", "labels": ["neg", "pos"]}')
    with pytest.raises(ModelLoadError, match="cannot read the soft-attention model config") as err:
        se.load_model(broken)
    assert "\n" not in str(err.value)
