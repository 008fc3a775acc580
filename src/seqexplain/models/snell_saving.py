"""Model folders of the Snell et al. (2021) models, which :func:`seqexplain.load_model` opens with their own adapters.

A folder holds ``config.json`` (the model config plus ``model_type``, the marker :mod:`seqexplain.models.loading`
dispatches on: ``seqexplain-snell-classifier`` or ``seqexplain-snell-translator``; a classifier also stores its
``labels``), ``model.safetensors`` (weights saved from the CPU, so a folder written on a GPU loads anywhere) and the
tokenizer: ``vocab.json`` (the classifier's word list, read as ``<bos> words <eos>`` by
:class:`~seqexplain.models.snell_classifier.BosEosTokenizer`) or ``tokenizer.json`` (the translator's SentencePiece /
BPE tokenizer). :func:`load_snell` gives :class:`~seqexplain.models.snell_classifier.SnellClassifierAdapter` or
:class:`~seqexplain.models.snell_translation.SnellTranslationAdapter` — not the generic Hugging Face seq2seq adapter,
whose attention questions the LSTM translator cannot answer. Files are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.base import SequenceModel
from seqexplain.models.native import build_from_config, load_safetensors_weights, read_config_json
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.snell_classifier import (
    BosEosTokenizer,
    SnellClassifier,
    SnellClassifierAdapter,
    SnellClassifierConfig,
)
from seqexplain.models.snell_translation import SnellTranslationAdapter, SnellTranslator, SnellTranslatorConfig

CLASSIFIER = "seqexplain-snell-classifier"
TRANSLATOR = "seqexplain-snell-translator"
MODEL_TYPES = (CLASSIFIER, TRANSLATOR)


def _write(model: torch.nn.Module, folder: Path, config: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    atomic_write_text(folder / "config.json", json.dumps(config, indent=1, ensure_ascii=False))


def save_snell_classifier(model: SnellClassifier, vocab: Vocab, folder: Path | str,
                          labels: Sequence[str] | None = None) -> Path:
    """Write a classifier folder (module docstring); ``labels`` default to ``"0", "1", …``."""
    names = [str(n) for n in labels] if labels is not None else [str(i) for i in range(model.config.n_classes)]
    if len(names) != model.config.n_classes:
        raise InputError(f"{len(names)} label names for a {model.config.n_classes}-class model; give one per class")
    if len(vocab) != model.config.vocab_size:
        raise InputError(f"the vocabulary has {len(vocab)} words but the model {model.config.vocab_size}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / "vocab.json")
    _write(model, out, {"model_type": CLASSIFIER, **model.config.to_dict(), "labels": names})
    return out


def save_snell_translator(model: SnellTranslator, tokenizer: Any, folder: Path | str) -> Path:
    """Write a translator folder (module docstring); ``tokenizer`` is a Hugging Face fast tokenizer."""
    from seqexplain.data.tokenizers import save_tokenizer

    if len(tokenizer) != model.config.vocab_size:
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the model {model.config.vocab_size}")
    out = Path(folder)
    save_tokenizer(tokenizer, out)
    _write(model, out, {"model_type": TRANSLATOR, **model.config.to_dict()})
    return out


def load_snell(folder: Path | str, tokenizer: Any = None, model_id: str | None = None) -> SequenceModel:
    """The adapter of a Snell model folder (eval mode, on the CPU); ``tokenizer`` overrides the folder's. A corrupt
    or mismatched folder (weights, config, labels, or a vocabulary or tokenizer larger than the model's table) is a
    :class:`ModelLoadError`; a given ``tokenizer`` larger than the table an :class:`InputError`."""
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} has no config.json; save the model with save_snell_classifier / "
                             "save_snell_translator")
    config = read_config_json(path / "config.json")
    model_type = config.pop("model_type", None)
    name = model_id or str(path)
    if model_type == CLASSIFIER:
        labels = config.pop("labels", None)
        classifier = build_from_config(lambda: SnellClassifier(SnellClassifierConfig.from_dict(config)), path)
        if not isinstance(labels, list) or len(labels) != classifier.config.n_classes:
            raise ModelLoadError(f"{path / 'config.json'} names labels {labels!r}, not one per class of the "
                                 f"{classifier.config.n_classes}-class model")
        _load_weights(classifier, path)
        if tokenizer is None:
            vocab = Vocab.load(path / "vocab.json")
            if len(vocab) != classifier.config.vocab_size:
                raise ModelLoadError(f"{path / 'vocab.json'} holds {len(vocab)} words but the model "
                                     f"{classifier.config.vocab_size}; save the model with its own vocabulary")
            tokenizer = BosEosTokenizer(vocab)
        return SnellClassifierAdapter(classifier, tokenizer, labels, name)
    if model_type == TRANSLATOR:
        from seqexplain.data.tokenizers import load_tokenizer

        translator = build_from_config(lambda: SnellTranslator(SnellTranslatorConfig.from_dict(config)), path)
        _load_weights(translator, path)
        tok = tokenizer or load_tokenizer(path)
        if len(tok) > translator.config.vocab_size:
            error = InputError if tokenizer is not None else ModelLoadError
            raise error(f"the tokenizer has {len(tok)} tokens but the model's embedding table "
                        f"{translator.config.vocab_size}: it does not belong to this model; give the tokenizer the "
                        "model was trained with")
        return SnellTranslationAdapter(translator, tok, name)
    raise ModelLoadError(f"{path}: {model_type!r} is not a Snell model type ({', '.join(MODEL_TYPES)})")


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{weights} is missing; save the model with save_snell_classifier / save_snell_translator")
    load_safetensors_weights(model, weights)
    model.eval()


__all__ = ["MODEL_TYPES", "load_snell", "save_snell_classifier", "save_snell_translator"]
