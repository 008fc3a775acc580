"""Per-event explanation vectors of a corpus, and how they change along a path between two weight sets (Ger et al.).

:func:`explanation_vectors` explains every document with a registered method through the batch API
(:func:`seqexplain.explain_many`), the target being the gold label (as the original, whose gradients are those of
the loss) or the prediction, and aggregates each explanation per event type (:func:`event_vector`: ``sum`` by
default, absent types 0): one vector of length K per document. The explanations' own warnings (non-finite scores,
whose cells the per-type sums skip; a rationale search that fell short; …) are not dropped: it returns them with the
number of documents that had each (:class:`EventVectors`) and warns once per distinct message.

:func:`along_path` evaluates selected points of a :class:`~seqexplain.analysis.low_loss_paths.Path`: loss, accuracy
and macro F1, and per method the explanation vectors clustered by KMeans with a fixed k (and the explanations'
warnings); then the adjusted Rand index of each point's clusters with the previous point's and with each
endpoint's. :func:`plot_paths` draws the losses of several paths over ``t`` and the ARI curves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Any, Literal

import numpy as np

from seqexplain.analysis.clustering import ari, cluster_explanations, save_figure
from seqexplain.analysis.event_types import event_vector
from seqexplain.analysis.low_loss_paths import Path, load_flat
from seqexplain.attribution import Aggregation
from seqexplain.errors import InputError
from seqexplain.explain import explain_many
from seqexplain.models.attention_rnn import AttentionRNN
from seqexplain.models.attention_rnn_adapter import AttentionRNNAdapter, VectorDocument
from seqexplain.runs.warning_log import tally_warnings
from seqexplain.training.attention_rnn import evaluate

Target = Literal["gold", "predicted"]


@dataclass
class EventVectors:
    """``vectors [N, K]``: per-event explanations of N documents; ``warnings``: each distinct warning of their
    explanations → the number of documents whose explanation carried it."""

    vectors: np.ndarray
    warnings: dict[str, int]

    def warning_lines(self, where: str = "") -> list[str]:
        """One line per distinct warning: ``"<where>: <count> of <N> documents: <message>"``."""
        head = f"{where}: " if where else ""
        return [f"{head}{n} of {len(self.vectors)} documents: {msg}" for msg, n in self.warnings.items()]


def explanation_vectors(adapter: AttentionRNNAdapter, docs: Sequence[VectorDocument], method: str,
                        how: Aggregation = "sum", target: Target = "gold", **options: Any) -> EventVectors:
    """Per-event explanations of ``docs`` (module docstring; K = the adapter's event names) and their warnings,
    each distinct one also issued once (``RuntimeWarning``) with its count."""
    n_types = len(adapter.event_names)
    if not docs:
        raise InputError("no documents to explain")
    if n_types == 0:
        raise InputError("the event set is empty: give the adapter event names")
    if any(d.event_types is None for d in docs):
        raise InputError("every document needs event types for per-event explanations")
    if target == "gold" and any(d.label is None for d in docs):
        raise InputError("target='gold' needs a label on every document; use target='predicted'")
    items = [{"text": d, "target": d.label if target == "gold" else None} for d in docs]
    rows, per_doc = [], []
    for a, d in zip(explain_many(adapter, items, method, progress=False, **options), docs, strict=True):
        rows.append(event_vector(a, list(d.event_types or []), n_types, how))
        per_doc.append(a.warnings)
    got = EventVectors(np.stack(rows), tally_warnings(per_doc))
    for line in got.warning_lines(method):
        warnings.warn(line, RuntimeWarning, stacklevel=2)
    return got


def along_path(path: Path, model: AttentionRNN, docs: Sequence[VectorDocument],
               adapter_of: Callable[[AttentionRNN], Mapping[str, AttentionRNNAdapter]],
               methods: Mapping[str, dict[str, Any]], k: int, n_points: int = 6, seed: int = 0,
               how: Aggregation = "sum") -> list[dict[str, Any]]:
    """Records of ``n_points`` points of ``path`` evenly spaced by index (always both ends; the model's weights are
    overwritten): ``t``, ``loss``, ``accuracy``, ``f1`` on ``docs``, and per method ``ari_prev``, ``ari_start``,
    ``ari_end`` of KMeans(k) clusters of the explanation vectors and ``warnings`` (the explanations' distinct
    warnings → number of documents, :class:`EventVectors`), as ``<method>_<field>``. ``adapter_of(model)`` gives
    the adapter to use per method name (e.g. a :meth:`~AttentionRNNAdapter.with_origin` view for IG); ``methods``
    maps a method name to its options."""
    if n_points < 2:
        raise InputError("along_path needs at least 2 points")
    idx = sorted({int(round(i)) for i in np.linspace(0, len(path.points) - 1, min(n_points, len(path.points)))})
    records: list[dict[str, Any]] = []
    labels: list[dict[str, np.ndarray]] = []
    for i in idx:
        load_flat(model, path.points[i])
        model.eval()
        rec: dict[str, Any] = {"index": i, "t": path.t[i], "kind": path.kinds[i], **evaluate(model, docs)}
        adapters = adapter_of(model)
        got: dict[str, np.ndarray] = {}
        for name, options in methods.items():
            vecs = explanation_vectors(adapters[name], docs, name, how, **options)
            rec[f"{name}_warnings"] = vecs.warnings
            got[name] = cluster_explanations(vecs.vectors, [k], seed=seed).labels
        labels.append(got)
        records.append(rec)
    for n, rec in enumerate(records):
        for name in methods:
            rec[f"{name}_ari_prev"] = ari(labels[n][name], labels[n - 1][name]) if n else 1.0
            rec[f"{name}_ari_start"] = ari(labels[n][name], labels[0][name])
            rec[f"{name}_ari_end"] = ari(labels[n][name], labels[-1][name])
    return records


def plot_paths(paths: Mapping[str, Path], records: Sequence[Mapping[str, Any]], methods: Sequence[str],
               path: FilePath | str) -> FilePath:
    """Left: loss over ``t`` of every named path; right: ARI of the evaluated points' clusters with the previous
    point and with each endpoint, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, p in paths.items():
        left.plot(p.t, p.losses, marker=".", label=name)
        if p.bound is not None:
            left.axhline(p.bound, linestyle=":", color="grey", label=f"{name} bound")
    left.set_xlabel("t (fraction of the path)")
    left.set_ylabel("training loss")
    left.legend(fontsize=7)
    ts = [r["t"] for r in records]
    for name in methods:
        for what, style in (("prev", "-"), ("start", "--"), ("end", ":")):
            right.plot(ts, [r[f"{name}_ari_{what}"] for r in records], style, marker="o", label=f"{name} vs {what}")
    right.set_xlabel("t")
    right.set_ylabel("adjusted Rand index")
    right.legend(fontsize=7)
    return save_figure(fig, FilePath(path))
