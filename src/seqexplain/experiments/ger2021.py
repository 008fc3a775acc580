"""Ger, Klabjan & Utke, "Reproducibility of attention-based explanations for RNNs": do two equally accurate RNNs
explain the same predictions the same way, and how do explanations change along a low-loss path between them?

Recipe (one experiment per corpus: ``sst2`` sentences, ``movies`` ERASER movie reviews cut to ``max_words``
from their start or their end, ``words_from``):

1. Words → frozen MiniLM word vectors (cached under ``<out>/cache``); event types from WordNet hypernyms at
   ``wordnet_depth`` (or supersenses / spaCy POS / KMeans of the vectors: ``event_types``), the ``max_types`` most
   frequent on the training split, the rest (and words WordNet does not know) ``<other>``.
2. For each decoder (``avg``, ``hier``) two models of one architecture, trained with seeds ``seed`` and ``seed + 1``
   (best validation loss kept; resumable).
3. Explanations of the evaluation documents per event type (sum): avg — attention, gradient norm, integrated
   gradients from the ``<unk>`` vector (``ig_baseline``; eval mode, or dropout on as the original with
   ``ig_dropout``); hier — hierarchical attention β, gradient norm. KMeans (standardised
   vectors) for k in ``k_min..k_max``: silhouette per k, the chosen k; ARI between the two models' clusterings (each
   at its chosen k, and both at the first model's k) and between methods.
4. Paths between the two avg models' weights (and the hier models' with ``hier_paths``), on a training-subset loss:
   straight line, valley tracking, Bézier curve; barriers; along the straight and the tracked path, loss /
   accuracy / F1 on the evaluation documents and the ARI of attention and gradient clusters (k fixed to the first
   model's chosen k) with the neighbouring point and each endpoint.

Writes ``results.json`` (with the run record), ``results.md`` and PNG plots into ``out``. Warnings (documents cut,
tokens without an event type, valley-tracking fallbacks, and each distinct warning of the explanations with the
number of documents that had it — e.g. non-finite scores, which the per-type sums skip) are printed and stored in
``warnings`` (also per decoder and per path, and per point of a path as ``<method>_warnings``) and ``results.md``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqexplain.analysis.clustering import (
    ari,
    cluster_explanations,
    plot_cluster_violins,
    plot_embedding,
    plot_silhouettes,
)
from seqexplain.analysis.event_types import EventVocabulary, VectorClusters, pos_labels, wordnet_labels
from seqexplain.analysis.low_loss_paths import (
    ModelObjective,
    ValleyConfig,
    bezier_curve,
    check_same_architecture,
    flat_weights,
    straight_line,
    valley_track,
)
from seqexplain.analysis.path_explanations import along_path, explanation_vectors, plot_paths
from seqexplain.atomic import atomic_write_text
from seqexplain.data.token_vectors import unk_vector, word_vectors
from seqexplain.errors import InputError
from seqexplain.experiments.ger2021_report import markdown
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig, load_attention_rnn
from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument
from seqexplain.runs.claims import DATA_KEY, claim_folder, data_fingerprint
from seqexplain.runs.provenance import run_record
from seqexplain.training.attention_rnn import TrainConfig, evaluate, train

EXPERIMENTS = {
    "sst2": "SST-2 sentences (../shared/data/sst): two avg and two hier attention RNNs over MiniLM vectors",
    "movies": "ERASER movie reviews (../shared/data/eraser_movies), documents cut to max_words words",
}
LABELS = ["negative", "positive"]
EVENT_SOURCES = ("wordnet", "supersense", "pos", "kmeans")
WORDS_FROM = ("start", "end")


def cut_words(words: list[str], max_words: int, words_from: str) -> list[str]:
    """The first (``"start"``) or last (``"end"``) ``max_words`` words of a document, in document order. Movie
    reviews tend to open with the plot and close with the verdict: on ERASER movies a logistic regression on the
    mean MiniLM vector of the first 150 words, trained on the 1,600 training reviews, reaches 0.61 test accuracy, of
    the last 150 words 0.70 (docs/reproductions/ger2021.md)."""
    if words_from not in WORDS_FROM:
        raise InputError(f"words_from is 'start' or 'end', not {words_from!r}")
    return list(words[:max_words]) if words_from == "start" else list(words[-max_words:])


@dataclass
class Settings:
    n_train: int = 2000
    n_val: int = 300
    n_eval: int = 300
    n_path: int = 200
    max_words: int = 60
    words_from: str = "start"
    hidden: list[int] = field(default_factory=lambda: [64, 32, 16])
    fc_dim: int | None = 64
    epochs: int = 4
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "adagrad"
    event_types: str = "wordnet"
    wordnet_depth: int = 4
    max_types: int = 15
    k_min: int = 2
    k_max: int = 8
    ig_steps: int = 20
    line_points: int = 11
    valley_eps: float = 0.02
    valley_step: float = 0.1
    valley_max_steps: int = 60
    valley_inner_steps: int = 50
    valley_max_outer: int = 4
    valley_alpha: float = 2.0
    valley_tau: float = 0.5
    bezier_steps: int = 150
    path_eval_points: int = 6
    hier_paths: bool = False
    ig_baseline: str = "unk"
    ig_dropout: bool = False


QUICK = Settings(n_train=160, n_val=40, n_eval=40, n_path=80, max_words=30, hidden=[16, 8], fc_dim=16, epochs=2,
                 max_types=6, k_max=4, ig_steps=8, line_points=5, valley_max_steps=8, valley_inner_steps=20,
                 valley_max_outer=3, bezier_steps=10, path_eval_points=3)


def say(msg: str) -> None:
    print(f"[ger2021] {msg}", file=sys.stderr, flush=True)


def load_corpus(experiment: str, data_root: Path | None, s: Settings, seed: int
                ) -> dict[str, list[tuple[list[str], int]]]:
    """``{"train", "val", "eval"}`` lists of (words, label), shuffled with ``seed`` and cut to the settings' sizes."""
    rng = random.Random(seed)
    if experiment == "sst2":
        from seqexplain.data.sst import read_sst

        raw = {"train": read_sst("train", root=data_root), "val": read_sst("dev", root=data_root),
               "eval": read_sst("test", root=data_root)}
        splits = {k: [(list(x.words), int(x.label)) for x in v] for k, v in raw.items()}
    elif experiment == "movies":
        from seqexplain.data.eraser import read_eraser

        names = {"train": "train", "val": "val", "eval": "test"}
        folder = Path(data_root) / "eraser_movies" if data_root is not None else None  # the data root holds it
        splits = {k: [(cut_words(d.tokens, s.max_words, s.words_from), int(d.label == "POS"))
                      for d in read_eraser(v, root=folder)] for k, v in names.items()}
    else:
        raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    sizes = {"train": s.n_train, "val": s.n_val, "eval": s.n_eval}
    out = {}
    for k, rows in splits.items():
        rows = [(cut_words(w, s.max_words, s.words_from), y) for w, y in rows if w]
        rng.shuffle(rows)
        out[k] = rows[: sizes[k]]
    return out


def event_labels(s: Settings, words: dict[str, list[list[str]]], vectors: dict[str, list[torch.Tensor]], seed: int
                 ) -> dict[str, list[list[str | None]]]:
    if s.event_types in ("wordnet", "supersense"):
        return {k: wordnet_labels(v, depth=s.wordnet_depth, supersense=s.event_types == "supersense")
                for k, v in words.items()}
    if s.event_types == "pos":
        return {k: pos_labels(v) for k, v in words.items()}
    if s.event_types == "kmeans":
        clusters = VectorClusters(s.max_types, seed).fit([v.numpy() for v in vectors["train"]])
        return {k: clusters.labels([x.numpy() for x in v]) for k, v in vectors.items()}
    raise InputError(f"event_types is {', '.join(EVENT_SOURCES)}, not {s.event_types!r}")


def build_documents(experiment: str, out: Path, data_root: Path | None, s: Settings, seed: int
                    ) -> tuple[dict[str, list[VectorDocument]], list[str], list[str]]:
    corpus = load_corpus(experiment, data_root, s, seed)
    say(f"corpus: {', '.join(f'{k} {len(v)}' for k, v in corpus.items())}; MiniLM vectors")
    vectors = {k: word_vectors([w for w, _ in v], cache=out / "cache", max_length=512) for k, v in corpus.items()}
    words = {k: [w[: len(x)] for (w, _), x in zip(corpus[k], vectors[k], strict=True)] for k in corpus}
    warnings: list[str] = []
    for k in corpus:
        cut = sum(len(x) < len(w) for (w, _), x in zip(corpus[k], vectors[k], strict=True))
        if cut:
            warnings.append(f"{k}: {cut} document(s) longer than MiniLM's 512 word pieces were cut to the words "
                            "that fit")
            say(warnings[-1])
    labels = event_labels(s, words, vectors, seed)
    vocab = EventVocabulary.fit(labels["train"], s.max_types)
    docs: dict[str, list[VectorDocument]] = {}
    for k in corpus:
        enc = vocab.encode(labels[k])
        warnings += [f"{k}: {w}" for w in enc.warnings]
        docs[k] = [VectorDocument(w, x, t, y) for w, x, t, (_, y) in
                   zip(words[k], vectors[k], enc.types, corpus[k], strict=True)]
    return docs, vocab.names, warnings


TRAINING_FIELDS = ("n_train", "n_val", "max_words", "words_from", "hidden", "fc_dim", "batch_size", "lr", "optimizer",
                   "event_types", "wordnet_depth", "max_types")


def _claim_folder(out: Path, experiment: str, s: Settings, seed: int, docs: dict[str, list[VectorDocument]],
                 names: list[str]) -> list[str]:
    """Record what defines the models in ``out/models`` in ``out/training.json`` (experiment, seed, the settings of
    :data:`TRAINING_FIELDS`, the event types, the sha256 of the training and validation documents), or raise
    :class:`InputError` when ``out`` holds another run's: the trainer resumes a model whose architecture and
    optimiser match (a finished one is not retrained), so another experiment, ``--n-train``, ``--words-from``, ...
    would be explained under the new settings' name. ``epochs`` may grow (training continues), not shrink. Returns
    the claim's warnings (a folder claimed without the data's sha256)."""
    digest = data_fingerprint({k: [[d.tokens, d.event_types, d.label] for d in docs[k]] for k in ("train", "val")})
    return claim_folder(out / "training.json", {
        "experiment": experiment, "seed": seed, "event_type_names": names, DATA_KEY: digest,
        **{k: getattr(s, k) for k in TRAINING_FIELDS}, "epochs": s.epochs}, "ger2021 models", may_grow=["epochs"])


def train_pair(decoder: str, docs: dict[str, list[VectorDocument]], n_types: int, out: Path, s: Settings,
               seed: int) -> list[AttentionRNN]:
    cfg = AttentionRNNConfig(input_dim=int(docs["train"][0].vectors.shape[1]), hidden=list(s.hidden),
                             fc_dim=s.fc_dim, decoder=decoder, n_event_types=n_types)  # type: ignore[arg-type]
    models = []
    for r in (0, 1):
        tc = TrainConfig(optimizer=s.optimizer, lr=s.lr, epochs=s.epochs, batch_size=s.batch_size,  # type: ignore
                         seed=seed + r)
        say(f"training {decoder} model {r} (seed {seed + r})")
        train(cfg, docs["train"], docs["val"], out / "models" / f"{decoder}_{r}", tc)
        models.append(load_attention_rnn(out / "models" / f"{decoder}_{r}" / "best.safetensors"))
    check_same_architecture(models[0], models[1])
    return models


def methods_for(decoder: str, s: Settings) -> dict[str, dict[str, Any]]:
    if decoder == "avg":
        return {"attention_last": {}, "gradient_norm": {}, "integrated_gradients": {"steps": s.ig_steps}}
    return {"attention_last": {}, "gradient_norm": {}}


def adapters_of(model: AttentionRNN, names: list[str], unk: torch.Tensor | None, decoder: str
                ) -> dict[str, AttentionRNNAdapter]:
    """The adapter per method: integrated gradients start from ``unk`` at every position (None: zero vectors)."""
    base = AttentionRNNAdapter(model, LABELS, names, f"ger-{decoder}")
    return {"attention_last": base, "gradient_norm": base, "integrated_gradients": base.with_origin(unk)}


def compare_models(decoder: str, models: list[AttentionRNN], docs: list[VectorDocument], names: list[str],
                   unk: torch.Tensor | None, out: Path, s: Settings, seed: int) -> dict[str, Any]:
    methods = methods_for(decoder, s)
    ks = range(s.k_min, s.k_max + 1)
    res: dict[str, Any] = {"models": [evaluate(m, docs) for m in models], "methods": {}, "warnings": []}
    clus: dict[tuple[int, str], Any] = {}
    vecs: dict[tuple[int, str], np.ndarray] = {}
    for r, model in enumerate(models):
        ads = adapters_of(model, names, unk, decoder)
        for name, options in methods.items():
            say(f"{decoder} model {r}: {name} on {len(docs)} documents")
            model.dropout_at_eval = s.ig_dropout and name != "attention_last"  # the original's learning phase 1
            got = explanation_vectors(ads[name], docs, name, **options)
            model.dropout_at_eval = False
            vecs[(r, name)] = got.vectors
            res["warnings"] += got.warning_lines(f"{decoder} model {r} {name}")
            clus[(r, name)] = cluster_explanations(vecs[(r, name)], ks, seed=seed)
    for name in methods:
        a, b = clus[(0, name)], clus[(1, name)]
        res["methods"][name] = {
            "model_0": a.summary(), "model_1": b.summary(),
            "ari_models_chosen_k": ari(a.labels, b.labels),
            "ari_models_common_k": ari(a.labels, b.labels_by_k[a.k]),
        }
        plot_silhouettes({f"model {r}": clus[(r, name)] for r in (0, 1)}, out / f"{decoder}_{name}_silhouette.png")
        plot_cluster_violins(vecs[(0, name)], a, names, out / f"{decoder}_{name}_violins.png")
        plot_embedding(vecs[(0, name)], a, out / f"{decoder}_{name}_pca.png")
    names_m = list(methods)
    res["ari_methods"] = {f"{m1} vs {m2} (model {r})": ari(clus[(r, m1)].labels, clus[(r, m2)].labels)
                          for r in (0, 1) for i, m1 in enumerate(names_m) for m2 in names_m[i + 1:]}
    return res


def paths(decoder: str, models: list[AttentionRNN], docs: dict[str, list[VectorDocument]], names: list[str],
          unk: torch.Tensor | None, k: int, out: Path, s: Settings, seed: int) -> dict[str, Any]:
    work = AttentionRNN(models[0].config)
    obj = ModelObjective(work, docs["train"][: s.n_path])
    w1, w2 = flat_weights(models[0]), flat_weights(models[1])
    say(f"{decoder}: straight line ({s.line_points} points)")
    line = straight_line(obj, w1, w2, s.line_points)
    say(f"{decoder}: valley tracking (≤ {s.valley_max_steps} steps)")
    vcfg = ValleyConfig(eps=s.valley_eps, step=s.valley_step, max_steps=s.valley_max_steps,
                        inner_steps=s.valley_inner_steps, max_outer=s.valley_max_outer, alpha=s.valley_alpha,
                        tau=s.valley_tau, stop_distance=1e-3 * float((w1 - w2).norm()))

    def report(step: int, dist: float) -> None:
        if step % 5 == 0:
            say(f"{decoder}: valley step {step}, distance to w2 {dist:.3f}")

    valley = valley_track(obj, w1, w2, vcfg, progress=report)
    say(f"{decoder}: Bézier curve ({s.bezier_steps} steps)")
    bez, _ = bezier_curve(obj, w1, w2, steps=s.bezier_steps, lr=0.01, n=s.line_points, seed=seed)
    methods = {"attention_last": {}, "gradient_norm": {}}
    say(f"{decoder}: explanations at {s.path_eval_points} points of the tracked path")
    recs = along_path(valley, work, docs["eval"], lambda m: adapters_of(m, names, unk, decoder), methods, k,
                      s.path_eval_points, seed)
    line_recs = along_path(line, work, docs["eval"], lambda m: adapters_of(m, names, unk, decoder), methods, k,
                           s.path_eval_points, seed)
    plot_paths({"straight line": line, "valley tracking": valley, "Bézier": bez}, recs, list(methods),
               out / f"{decoder}_paths.png")
    return {"straight_line": line.summary(), "valley": valley.summary(), "bezier": bez.summary(),
            "valley_log": valley.log, "along_valley": recs, "along_line": line_recs, "k": k,
            "distance": float((w1 - w2).norm()),
            "warnings": path_warnings(decoder, {"valley": recs, "line": line_recs}, list(methods), len(docs["eval"]))}


def path_warnings(decoder: str, along: dict[str, list[dict[str, Any]]], methods: list[str], n_docs: int) -> list[str]:
    """One line per distinct explanation warning at an evaluated point of a path (:func:`along_path` records)."""
    return [f"{decoder} along the {which} at t = {rec['t']:.2f} {name}: {n} of {n_docs} documents: {msg}"
            for which, recs in along.items() for rec in recs for name in methods
            for msg, n in rec[f"{name}_warnings"].items()]


def run(experiment: str, out: Path | str, *, quick: bool = False, data_root: Path | None = None, seed: int = 0,
        **options: Any) -> dict[str, Any]:
    """Run one experiment (module docstring); ``options`` override :class:`Settings` fields."""
    if experiment not in EXPERIMENTS:
        raise InputError(f"unknown experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    base = QUICK if quick else Settings()
    unknown = set(options) - set(asdict(base))
    if unknown:
        raise InputError(f"unknown ger2021 settings {sorted(unknown)}; known: {', '.join(asdict(base))}")
    s = replace(base, **{k: v for k, v in options.items() if v is not None})
    if s.event_types not in EVENT_SOURCES:
        raise InputError(f"event_types is {', '.join(EVENT_SOURCES)}, not {s.event_types!r}")
    if s.words_from not in WORDS_FROM:
        raise InputError(f"words_from is 'start' or 'end', not {s.words_from!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if s.ig_baseline not in ("unk", "zero"):
        raise InputError(f"ig_baseline is 'unk' or 'zero', not {s.ig_baseline!r}")
    docs, names, warnings = build_documents(experiment, out, data_root, s, seed)
    warnings += _claim_folder(out, experiment, s, seed, docs, names)
    unk = unk_vector() if s.ig_baseline == "unk" else None
    result: dict[str, Any] = {"experiment": experiment, "settings": asdict(s), "event_types": names,
                              "warnings": warnings, "decoders": {}, "paths": {}}
    for decoder in ("avg", "hier"):
        models = train_pair(decoder, docs, len(names), out, s, seed)
        comp = compare_models(decoder, models, docs["eval"], names, unk, out, s, seed)
        result["decoders"][decoder] = comp
        warnings += comp["warnings"]
        if decoder == "avg" or s.hier_paths:
            k = comp["methods"]["attention_last"]["model_0"]["k"]
            result["paths"][decoder] = paths(decoder, models, docs, names, unk, k, out, s, seed)
            warnings += result["paths"][decoder]["warnings"]
            valley = result["paths"][decoder]["valley"]
            if valley["fallbacks"] or not valley["reached"]:
                missed = "" if valley["reached"] else " and did not reach w2 (it ends with an unchecked jump)"
                warnings.append(f"{decoder}: valley tracking took {valley['fallbacks']} fallback step(s) above the "
                                f"loss bound{missed}")
                say(warnings[-1])
    result["run"] = run_record(seed, experiment=experiment, quick=quick)
    result["markdown"] = markdown(result)
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=float))
    atomic_write_text(out / "results.md", result["markdown"])
    return result
