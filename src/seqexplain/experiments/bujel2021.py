"""Bujel, Yannakoudakis & Rei (2021), "Zero-shot Sequence Labeling for Transformer-based Sentence Classifiers":
train sentence classifiers with a soft-attention head (MiniLM by default) and the Rei & Søgaard (2018) BiLSTM, then
label tokens with the soft attention, the encoder's own attention, LIME and seqexplain's attribution methods.

Experiments (:data:`EXPERIMENTS`): ``fce`` (error detection: train file, every 10th training sentence held out as
dev, the public test file), ``bioscope`` (speculation cues: abstracts → train/dev by document, full papers → test)
and ``sst`` (positive words from the trees; ``polarity`` option). Each split is a seeded random sample of
``max_train`` / ``max_dev`` / ``max_test`` sentences (CPU-feasible defaults; ``--quick`` is a smoke run).

Per source, on the test sample: token P/R/F1/F0.5 at the paper's fixed threshold 0.5 (sources whose scores are
probabilities or weights in [0, 1]: soft attention, LIME, raw attention; ``top_count`` > 0 also limits the positive
words per sentence), MAP and Pearson, and the F1 at the
threshold tuned on the dev sample (threshold-free comparison). The encoder-attention source is the layer and head
with the best dev MAP (and the last layer's head average beside it); ``random`` (uniform scores) is the chance
baseline. Sentence-level P/R/F1 of both classifiers.

Training goes through accelerate (:mod:`seqexplain.training.soft_attention_loop`): the CPU by default, accelerate's
configuration under ``accelerate launch``; with several processes only the main one evaluates and writes results.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.atomic import atomic_write_text
from seqexplain.data.paths import require_data
from seqexplain.data.token_labels import (
    LabelledSentence,
    bioscope_splits,
    check_label_sets,
    read_sst_token_labels,
    read_token_tsv,
)
from seqexplain.errors import InputError
from seqexplain.experiments import bujel2021_scores as src
from seqexplain.metrics.token_labelling import evaluate_scores, sentence_prf
from seqexplain.models.soft_attention import SoftAttentionAdapter
from seqexplain.models.soft_attention_lstm import SoftAttentionLSTMAdapter
from seqexplain.runs.claims import DATA_KEY, claim_folder, data_fingerprint
from seqexplain.runs.provenance import run_record
from seqexplain.training.soft_attention import (
    build_encoder_model,
    build_lstm_model,
    predict,
    save_trained_config,
    train_soft_attention,
)
from seqexplain.training.soft_attention_batches import EncoderBatcher, WordBatcher
from seqexplain.training.soft_attention_objective import SoftAttentionConfig, config_from_dict, load_config

EXPERIMENTS = {
    "fce": "FCE error detection: tokens labelled incorrect (i) from sentence labels",
    "bioscope": "BioScope speculation cues (CoNLL-2010 style hedge cues) from sentence labels",
    "sst": "SST sentiment words (positive by default) from sentence labels",
}
LABELS = {"fce": ("correct", "incorrect"), "bioscope": ("certain", "uncertain"), "sst": ("other", "sentiment")}
DEFAULT_METHODS = ("gradient_norm", "grad_x_input", "integrated_gradients", "occlusion")
BOUNDED = {"soft_attention", "bilstm_attention", "lime", "model_attention", "model_attention_mean", "random"}
PUBLISHED = {
    "fce": {"soft_attention": (20.76, 85.36, 33.31), "lime": (19.06, 34.70, 24.60),
            "bilstm_attention": (29.16, 29.04, 28.73)},
    "bioscope": {"soft_attention": (27.6, 91.0, 42.4), "bilstm_attention": (None, None, 79.9)},
}
QUICK = {"max_train": 160, "max_dev": 40, "max_test": 40, "steps": 10, "lstm_epochs": 2, "lime_samples": 40,
         "ig_steps": 8}
DEFAULT = {"max_train": 2000, "max_dev": 120, "max_test": 200, "steps": 150, "lstm_epochs": 8, "lime_samples": 64,
           "ig_steps": 16}


def load_splits(experiment: str, data_root: Path | str | None, polarity: str = "positive"
                ) -> dict[str, list[LabelledSentence]]:
    if experiment == "fce":
        folder = require_data("fce", data_root)
        train_all = read_token_tsv(folder / "fce-public.train.original.tsv", "i")
        test = read_token_tsv(folder / "fce-public.test.original.tsv", "i")
        check_label_sets(train_all, test)
        return {"train": [s for i, s in enumerate(train_all) if i % 10 != 9],
                "dev": [s for i, s in enumerate(train_all) if i % 10 == 9], "test": test}
    if experiment == "bioscope":
        return bioscope_splits(data_root)
    if experiment == "sst":
        return {split: read_sst_token_labels(split, polarity, root=data_root) for split in ("train", "dev", "test")}
    raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")


def _sample(sents: list[LabelledSentence], n: int, seed: int) -> list[LabelledSentence]:
    if n <= 0 or n >= len(sents):
        return list(sents)
    idx = sorted(random.Random(seed).sample(range(len(sents)), n))
    return [sents[i] for i in idx]


def _claim_folder(out: Path, experiment: str, cfg: SoftAttentionConfig, size: dict[str, int], on_long: str,
                  train: list[LabelledSentence], dev: list[LabelledSentence]) -> list[str]:
    """Record what defines the trained encoder and BiLSTM in ``out/training.json`` (the experiment, the config with
    its seed, the sizes, the sha256 of the training and dev sentences), or raise :class:`InputError` when ``out``
    holds another run's: the models there are resumed, and a finished one is not retrained, so another experiment,
    polarity, data root or seed would be evaluated with the old models under the new name. Evaluation options
    (methods, --max-test, --reduce, ...) may change between runs: they are recomputed. Returns the claim's warnings
    (a folder claimed without the data's sha256)."""
    digest = data_fingerprint([[s.words, s.labels, s.positive, s.sentence_label] for s in train] + [None]
                              + [[s.words, s.labels, s.positive, s.sentence_label] for s in dev])
    return claim_folder(out / "training.json", {
        "experiment": experiment, "config": cfg.model_dump(), "on_long": on_long, DATA_KEY: digest,
        **{k: size[k] for k in ("max_train", "max_dev", "steps", "lstm_epochs")}}, "bujel2021 models")


@contextlib.contextmanager
def _timer(log: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    log[name] = round(log.get(name, 0.0) + time.perf_counter() - t0, 1)


def run(experiment: str, out: Path | str, *, quick: bool = False, data_root: Path | str | None = None, seed: int = 0,
        config: Path | str | None = None, max_train: int | None = None, max_dev: int | None = None,
        max_test: int | None = None, steps: int | None = None, lime_samples: int | None = None,
        methods: Sequence[str] | None = None, on_long: str = "truncate", reduce: str = "max",
        polarity: str = "positive", top_count: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run one experiment (module docstring) and write ``results.json`` and ``table.md`` into ``out``."""
    if experiment not in EXPERIMENTS:
        raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    if on_long not in ("truncate", "error"):
        raise InputError(f"on_long is 'truncate' or 'error', not {on_long!r}")
    size = dict(QUICK if quick else DEFAULT)
    for key, value in (("max_train", max_train), ("max_dev", max_dev), ("max_test", max_test), ("steps", steps),
                       ("lime_samples", lime_samples)):
        if value is not None:
            size[key] = value
    methods = tuple(methods) if methods is not None else DEFAULT_METHODS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(config) if config is not None else SoftAttentionConfig()
    cfg = config_from_dict({**cfg.model_dump(), "seed": seed, "max_steps": size["steps"]}, "config")
    splits = load_splits(experiment, data_root, polarity)
    train = _sample(splits["train"], size["max_train"], seed)
    dev = _sample(splits["dev"], size["max_dev"], seed + 1)
    test = _sample(splits["test"], size["max_test"], seed + 2)
    labels = LABELS[experiment]
    claimed = _claim_folder(out, experiment, cfg, size, on_long, train, dev)  # warned already
    times: dict[str, float] = {}
    notes: list[str] = []

    # --- models
    model, tok = build_encoder_model(cfg, labels)
    batcher = EncoderBatcher(tok, cfg.max_seq_length, on_long, cfg.mask_prob if cfg.do_mask_words else 0.0)
    save_trained_config(out / "encoder", cfg, labels)
    with _timer(times, "train_encoder"):
        enc_train = train_soft_attention(model, batcher, train, dev, cfg, out / "encoder", progress=progress)
    lstm_cfg = config_from_dict({**cfg.model_dump(), "learning_rate": 1e-3, "weight_decay": 0.0, "max_steps": None,
                                 "num_train_epochs": float(size["lstm_epochs"]), "per_device_train_batch_size": 32,
                                 "warmup_ratio": 0.0}, "config")
    lstm, lstm_tok = build_lstm_model(train, labels, seed=seed, head={"dropout": 0.0})
    with _timer(times, "train_bilstm"):
        lstm_train = train_soft_attention(lstm, WordBatcher(lstm_tok), train, dev, lstm_cfg, out / "bilstm",
                                          progress=progress)
    if not enc_train.main_process:  # under `accelerate launch`: the other processes only help training
        return {}
    if enc_train.truncated:
        notes.append(f"{enc_train.truncated} training/dev sentence(s) longer than {cfg.max_seq_length} tokens were "
                     "truncated")
    adapter = SoftAttentionAdapter(model, tok, f"soft-attention {cfg.model_name}", cfg.max_seq_length,
                                   truncate=on_long == "truncate")
    lstm_adapter = SoftAttentionLSTMAdapter(lstm, lstm_tok, labels)

    # --- sentence level
    sentence = {}
    for name, m, b in (("soft_attention", model, batcher), ("bilstm_attention", lstm, WordBatcher(lstm_tok))):
        pred = predict(m, b, test, cfg.per_device_eval_batch_size)
        sentence[name] = sentence_prf([s.label for s in test], pred.labels.tolist())

    # --- token scores per source, dev and test
    gold = {"dev": [s.gold for s in dev], "test": [s.gold for s in test]}
    scores: dict[str, dict[str, list[np.ndarray]]] = {}
    splits_used = (("dev", dev), ("test", test))
    encoded = {k: src.encode_all(adapter, v) for k, v in splits_used}
    for k in ("dev", "test"):  # dev scores set the tuned thresholds, so their cut words matter too
        truncated = sum(1 for ex in encoded[k] if any(w.startswith("truncated") for w in ex.warnings))
        if truncated:
            notes.append(f"{truncated} {k} sentence(s) longer than {cfg.max_seq_length} tokens were truncated; their "
                         "cut words score NaN (never positive)")
    lstm_enc = {k: src.encode_all(lstm_adapter, v) for k, v in splits_used}
    scores["soft_attention"] = {k: src.soft_attention_scores(adapter, encoded[k], v, reduce) for k, v in splits_used}
    scores["bilstm_attention"] = {k: src.soft_attention_scores(lstm_adapter, lstm_enc[k], v, reduce)
                                  for k, v in splits_used}
    with _timer(times, "model_attention"):
        heads = {k: src.model_attention_scores(adapter, encoded[k], v, reduce) for k, v in splits_used}
    dev_maps = np.array([[evaluate_scores(gold["dev"], heads["dev"][i, j], threshold=None)["map"]
                          for j in range(heads["dev"].shape[1])] for i in range(heads["dev"].shape[0])])
    best = np.unravel_index(int(np.nanargmax(dev_maps)), dev_maps.shape)
    scores["model_attention"] = {k: heads[k][best] for k in heads}
    last = heads["dev"].shape[0] - 1
    scores["model_attention_mean"] = {k: [np.mean([heads[k][last, j][n] for j in range(heads[k].shape[1])], 0)
                                          for n in range(len(heads[k][last, 0]))] for k in heads}
    with _timer(times, "lime"):
        scores["lime"] = {k: src.lime_scores(adapter, encoded[k], v, size["lime_samples"], seed)
                          for k, v in splits_used}
    for method in methods:
        opts = {"steps": size["ig_steps"]} if method == "integrated_gradients" else {}
        got = {}
        for k, v in splits_used:
            with _timer(times, method):
                got[k], warns = src.method_scores(adapter, encoded[k], v, method, reduce, **opts)
            notes.extend(warns)
        scores[method] = got

    rng = np.random.default_rng(seed)  # a chance baseline: its tuned F1 is about that of labelling every word
    scores["random"] = {k: [rng.random(len(s.words)) for s in v] for k, v in splits_used}
    token = {name: evaluate_scores(gold["test"], sc["test"], threshold=0.5 if name in BOUNDED else None,
                                   top_count=top_count, dev_gold=gold["dev"], dev_scores=sc["dev"])
             for name, sc in scores.items()}
    result = {
        "experiment": experiment, "description": EXPERIMENTS[experiment],
        "run": run_record(seed, quick=quick, sizes=size, methods=list(methods), on_long=on_long, reduce=reduce,
                          top_count=top_count, polarity=polarity if experiment == "sst" else None),
        "config": cfg.model_dump(),
        "data": {k: {"sentences": len(v), "positive_sentences": sum(s.label for s in v),
                     "positive_words": sum(sum(s.gold) for s in v), "words": sum(len(s.words) for s in v)}
                 for k, v in (("train", train), ("dev", dev), ("test", test))},
        "training": {"encoder": vars(enc_train), "bilstm": vars(lstm_train)},
        "sentence": sentence, "token": token,
        "model_attention_head": {"layer": int(best[0]), "head": int(best[1]), "dev_map": float(dev_maps[best])},
        "seconds": times, "warnings": notes, "published": PUBLISHED.get(experiment, {}),
    }
    for w in notes:
        warnings.warn(w, stacklevel=2)
    result["warnings"] = claimed + notes
    result["markdown"] = markdown_table(result)
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / "table.md", result["markdown"] + "\n")
    return result


def _pct(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def markdown_table(result: dict[str, Any]) -> str:
    """Token-level table (percentages) and sentence-level lines of a result."""
    head = result["model_attention_head"]
    quick = "**--quick smoke run, not the documented one.** " if result["run"].get("quick") else ""
    test = result["data"]["test"]
    lines = [f"{quick}Token labelling, {result['experiment']} test sample ({test['sentences']} sentences, "
             f"{result['data']['test']['positive_words']} positive of {result['data']['test']['words']} words)", "",
             "| source | P@0.5 | R@0.5 | F1@0.5 | F0.5@0.5 | MAP | Pearson r | dev-tuned P | R | F1 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in result["token"].items():
        at = m.get("at_threshold") or {}
        label = name if name != "model_attention" else f"model_attention (layer {head['layer']}, head {head['head']})"
        r = "–" if np.isnan(m["pearson"]) else f"{m['pearson']:.3f}"
        lines.append(f"| {label} | {_pct(at.get('precision'))} | {_pct(at.get('recall'))} | {_pct(at.get('f1'))} | "
                     f"{_pct(at.get('f05'))} | {_pct(m['map'])} | "
                     f"{r} | {_pct(m['tuned']['precision'])} | "
                     f"{_pct(m['tuned']['recall'])} | {_pct(m['tuned']['f1'])} |")
    lines += ["", "| classifier | sentence P | R | F1 |", "|---|---:|---:|---:|"]
    for name, m in result["sentence"].items():
        lines.append(f"| {name} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} |")
    lines += [f"\n**warning:** {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)
