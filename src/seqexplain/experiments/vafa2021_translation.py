"""Vafa et al. 2021 ("Rationales for Sequential Predictions"), translation experiments, on Multi30K and CPU.

Three steps (``seqexplain reproduce vafa2021 {translation_train,distractors,alignments} --out DIR
[--quick]``):

* ``translation_train`` — :func:`train_translation_model`: a small
  :class:`~seqexplain.models.seq2seq.Seq2SeqTransformer` trained on Multi30K with compatibility word dropout
  (``inverse_length``, mixture 0.5, as the paper's IWSLT model); test BLEU with sacrebleu. Models live in
  ``DIR/models/<src>-<tgt>/model``.
* ``distractors`` — :func:`seqexplain.experiments.vafa2021_translation_distractors.run_distractors`: the paper's
  distractor experiment (concatenated pairs of test sentences; how much of a rationale falls in the unrelated half).
* ``alignments`` — :func:`seqexplain.experiments.vafa2021_translation_alignments.run_alignments`: rationales of gold
  reference translations against gold word alignments (Length, AER, IOU, F1, Top1).

This module holds what both experiments share: the training settings, the model store (a missing model is trained
first) and the rationale methods compared: ``greedy`` and the baseline-ordered rationales (``baseline_rationale``
with ``order_by`` gradient norm, gradient × input, integrated gradients, attention rollout, last-layer attention,
all-layer attention), all with the same stopping rule (stop when the model's argmax from the rationale is the
target). Tables and result files are in :mod:`seqexplain.experiments.vafa2021_translation_report`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError
from seqexplain.runs import apply_threads, run_record
from seqexplain.training.translation import (
    TranslationTrainConfig,
    load_translation_model,
    train_translation,
)

FULL_TRAIN: dict[str, Any] = {
    "vocab_size": 5000, "d_model": 128, "n_heads": 4, "ffn_dim": 512, "encoder_layers": 2, "decoder_layers": 2,
    "epochs": 20, "batch_tokens": 3000, "lr": 1.5e-3, "warmup_steps": 150, "max_minutes": 45.0,
    "schedule": "linear_time",
}
"""The documented CPU run: at most 20 epochs or 45 minutes of training on one core, the learning rate decaying
linearly to 0 over whichever runs out first."""

QUICK_TRAIN: dict[str, Any] = {
    "vocab_size": 600, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1,
    "max_train_examples": 800, "epochs": 1, "batch_tokens": 1500, "lr": 3e-3, "warmup_steps": 5, "max_len": 40,
    "valid_bleu_examples": 0, "test_bleu_examples": 50, "checkpoint_every": 1000,
}
"""A seconds-long run for tests: the pipeline, not a usable model."""

BASELINES: tuple[str, ...] = ("gradient_norm", "grad_x_input", "integrated_gradients", "attention_rollout",
                              "attention_last", "attention_all")
QUICK_BASELINES: tuple[str, ...] = ("gradient_norm", "attention_last")


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        apply_threads(threads)


def model_home(out_dir: Path | str, src_lang: str, tgt_lang: str) -> Path:
    """``<out_dir>/models/<src>-<tgt>``: the training folder of that direction (``model/`` holds the result)."""
    return Path(out_dir) / "models" / f"{src_lang}-{tgt_lang}"


# ----------------------------------------------------------------------------------------------- training
def train_translation_model(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                            src_lang: str = "de", tgt_lang: str = "en", resume: bool = True, progress: bool = True,
                            threads: int | None = 1, **overrides: Any) -> dict[str, Any]:
    """Train (or resume) the ``src_lang → tgt_lang`` model under ``<out_dir>/models/<src>-<tgt>`` with the full or
    quick settings (``overrides`` replace single settings of :class:`TranslationTrainConfig`); return the run's
    ``results.json`` (test BLEU, timing, history)."""
    _set_threads(threads)
    settings = {**(QUICK_TRAIN if quick else FULL_TRAIN), **overrides, "src_lang": src_lang, "tgt_lang": tgt_lang}
    cfg = TranslationTrainConfig(**settings)
    home = model_home(out_dir, src_lang, tgt_lang)
    train_translation(cfg, home, data_root=data_root, resume=resume, progress=progress)
    results: dict[str, Any] = json.loads((home / "model" / "results.json").read_text(encoding="utf-8"))
    results["train_config"] = asdict(cfg)
    results["run"] = run_record(cfg.seed, quick=quick)
    atomic_write_text(home / "run.json", json.dumps(results["run"], indent=2))
    return results


def ensure_model(out_dir: Path | str, quick: bool, data_root: Path | str | None, src_lang: str, tgt_lang: str,
                 progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, results)`` of the ``src → tgt`` model under ``out_dir``, training it first when it is
    missing (with the torch thread count already in effect: entry points set it first); a model trained in the other
    mode (``quick`` or not, recorded in ``run.json``) is refused."""
    home = model_home(out_dir, src_lang, tgt_lang)
    made = json.loads((home / "run.json").read_text(encoding="utf-8")) if (home / "run.json").is_file() else {}
    if made.get("quick", quick) != quick:  # the other mode's model would be reused silently
        raise InputError(f"{home} holds a model trained {'with' if made['quick'] else 'without'} --quick; use "
                         "another --out folder for this run")
    if not (home / "model" / "results.json").is_file():
        train_translation_model(out_dir, quick, data_root, src_lang=src_lang, tgt_lang=tgt_lang, progress=progress,
                                threads=None)
    model, tok = load_translation_model(home / "model")
    results = json.loads((home / "model" / "results.json").read_text(encoding="utf-8"))
    return model, tok, results


# ------------------------------------------------------------------------------------------------ methods
def method_specs(baselines: Sequence[str] | None, quick: bool, ig_steps: int = 20,
                 max_size: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label key, registered method, options)`` for greedy and each baseline order."""
    names = tuple(baselines) if baselines is not None else (QUICK_BASELINES if quick else BASELINES)
    specs: list[tuple[str, str, dict[str, Any]]] = [("greedy", "greedy", {"max_size": max_size})]
    for name in names:
        order_opts: dict[str, Any] = {"steps": ig_steps} if name == "integrated_gradients" else {}
        specs.append((name, "baseline_rationale", {"order_by": name, "order_options": order_opts,
                                                    "max_size": max_size}))
    return specs


def rationalize(wrapped: Any, example: Any, method: str,
                options: dict[str, Any]) -> tuple[list[list[int]], list[bool]]:
    """``(rationales, reached)`` of every target of ``example`` by the registered ``method`` with ``options``:
    input-axis positions per target, and whether its search reached the stopping rule."""
    from seqexplain.methods.registry import get_method

    spec = get_method(method)
    spec.check_options(options)
    res = spec.fn(wrapped, example, **options)
    if res.rationales is None:
        raise InputError(f"{method} returned no rationales")
    reached = [bool(x) for x in res.meta.get("reached", [True] * len(res.rationales))]
    return [list(map(int, r)) for r in res.rationales], reached


def wrap_model(model: Any, tokenizer: Any, name: str) -> Any:
    """The trained translation model and its tokenizer as seqexplain's ``seq2seq`` model, named ``name``."""
    from seqexplain.models.loading import load_model

    return load_model(model, tokenizer, kind="seq2seq", model_id=name)
