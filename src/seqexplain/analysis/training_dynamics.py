"""Per-checkpoint dumps of the quantities of Snell et al. (2021) for the attention classifier, as Parquet files.

For each example (token ids ``x``, gold label ``y``) and checkpoint, with dropout off:

* ``alpha[t]``: the attention weights; ``beta[t]``: the per-token scores **oriented to the gold label** —
  binary: ``β_t · (2y − 1)`` (as the paper flips them, so "agrees" means "points the same way");
  multi-class: ``β_t[y] − mean_{c≠y} β_t[c]`` (for two classes with logits ``[0, s]`` this is the binary rule).
* ``delta[t]``, the gradient influence: ``Δ_t = −∂L/∂m_t`` at ``m = 1``, where ``m_t`` is a scalar multiplier on
  token ``t``'s input embedding and ``L`` the cross-entropy of the gold label. **Positive = increasing the token's
  weight lowers the loss, i.e. the token supports the gold output.** ``sign="original"`` gives ``+∂L/∂m_t``, the
  sign Sea-Snell/AttentionDynamics's classification tables use (its dump stores ``−∂L/∂m`` and its loader negates).
  By the chain rule ``∂L/∂m_t = Σ_d x_{t,d} ∂L/∂x_{t,d}``.
* ``predicted``: the argmax class.

Everything is computed on the model's device; the results are NumPy arrays on the CPU.

A dump file (:func:`write_dump`) holds one run's checkpoint on one split: columns ``example, label, predicted,
ids, alpha, beta, delta`` and key-value metadata ``dataset, fingerprint, vocab_hash, run, step, split, uniform,
accuracy, loss``. :func:`read_dumps` loads a folder of them and refuses dumps of another data set (fingerprint) or
vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from seqexplain.atomic import atomic_path
from seqexplain.errors import DataError, InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.snell_classifier import SnellClassifier, pad_batch

Sign = Literal["supports", "original"]


def orient(beta: np.ndarray, label: int, binary: bool) -> np.ndarray:
    """``[n]`` scores oriented to the gold label from ``beta[n, K]`` (module docstring); :class:`InputError` for a
    label the scores have no class of (binary: 0 or 1; else ``0..K-1``)."""
    n_classes = 2 if binary else beta.shape[1]
    if not 0 <= int(label) < n_classes:
        raise InputError(f"label {int(label)} is not a class of these scores (0..{n_classes - 1}); the labels must "
                         "be the model's classes")
    if binary:
        return beta[:, 0] * (2 * int(label) - 1)
    others = np.delete(beta, int(label), axis=1)
    return beta[:, int(label)] - others.mean(axis=1)


def fingerprint(examples: Sequence[tuple[Sequence[int], int]]) -> str:
    """A short hash of the examples' ids and labels: dumps compared together must share it."""
    h = hashlib.sha256()
    for ids, label in examples:
        h.update(np.asarray(list(ids), dtype=np.int64).tobytes())
        h.update(f"|{int(label)};".encode())
    return h.hexdigest()[:16]


@dataclass
class ExampleQuantities:
    """One example's dumped quantities (module docstring)."""

    alpha: np.ndarray
    beta: np.ndarray
    delta: np.ndarray
    predicted: int
    loss: float


def classifier_quantities(model: SnellClassifier, examples: Sequence[tuple[Sequence[int], int]],
                          batch_size: int = 64, sign: Sign = "supports") -> list[ExampleQuantities]:
    """α, oriented β, Δ and the prediction of every example (module docstring), in batches; an example without
    tokens is an :class:`InputError`."""
    if sign not in ("supports", "original"):
        raise InputError(f"sign is 'supports' or 'original', not {sign!r}")
    empty = next((i for i, e in enumerate(examples) if len(e[0]) == 0), None)
    if empty is not None:
        raise InputError(f"example {empty} has no tokens; drop empty examples before dumping")
    out: list[ExampleQuantities] = []
    with eval_mode(model):
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            dev = model.embedding.weight.device
            ids, lengths = pad_batch([e[0] for e in chunk])
            ids, lengths = ids.to(dev), lengths.to(dev)
            labels = torch.tensor([int(e[1]) for e in chunk], device=dev)
            m = torch.ones(ids.shape, dtype=model.embedding.weight.dtype, device=dev, requires_grad=True)
            parts = model.parts(model.embedding(ids) * m.unsqueeze(-1), lengths)
            logits = model.class_logits(parts.s)
            losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
            (grad,) = torch.autograd.grad(losses.sum(), m)
            delta = grad if sign == "original" else -grad
            pred = logits.argmax(-1)
            for r, (_, label) in enumerate(chunk):
                n = int(lengths[r])
                out.append(ExampleQuantities(
                    parts.alpha[r, :n].detach().cpu().numpy().astype(np.float32),
                    orient(parts.beta[r, :n].detach().cpu().numpy(), label, model.binary).astype(np.float32),
                    delta[r, :n].detach().cpu().numpy().astype(np.float32), int(pred[r]), float(losses[r].detach())))
    return out


@dataclass
class Dump:
    """One run's checkpoint on one split: per-example arrays and the metadata (module docstring)."""

    run: str
    step: int
    split: str
    dataset: str
    fingerprint: str
    vocab_hash: str
    uniform: bool
    labels: list[int]
    ids: list[np.ndarray]
    alpha: list[np.ndarray]
    beta: list[np.ndarray]
    delta: list[np.ndarray]
    predicted: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(np.mean(np.asarray(self.predicted) == np.asarray(self.labels)))


def make_dump(model: SnellClassifier, examples: Sequence[tuple[Sequence[int], int]], *, run: str, step: int,
              split: str, dataset: str, vocab_hash: str, sign: Sign = "supports", batch_size: int = 64) -> Dump:
    """:func:`classifier_quantities` of ``examples`` packed as a :class:`Dump`."""
    q = classifier_quantities(model, examples, batch_size, sign)
    return Dump(run, step, split, dataset, fingerprint(examples), vocab_hash, bool(model.config.uniform_attention),
                [int(e[1]) for e in examples], [np.asarray(list(e[0]), dtype=np.int32) for e in examples],
                [x.alpha for x in q], [x.beta for x in q], [x.delta for x in q], [x.predicted for x in q],
                {"loss": float(np.mean([x.loss for x in q])), "sign": sign})


def dump_path(folder: Path | str, run: str, step: int, split: str) -> Path:
    return Path(folder) / f"{run}__{split}__step{step:07d}.parquet"


def write_dump(dump: Dump, folder: Path | str) -> Path:
    """Write ``dump`` as one Parquet file in ``folder`` (atomically); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f32 = pa.list_(pa.float32())
    table = pa.table({
        "example": pa.array(np.arange(len(dump.labels), dtype=np.int32)),
        "label": pa.array(dump.labels, pa.int32()), "predicted": pa.array(dump.predicted, pa.int32()),
        "ids": pa.array([a.tolist() for a in dump.ids], pa.list_(pa.int32())),
        "alpha": pa.array([a.tolist() for a in dump.alpha], f32),
        "beta": pa.array([a.tolist() for a in dump.beta], f32),
        "delta": pa.array([a.tolist() for a in dump.delta], f32)})
    meta = {"run": dump.run, "step": dump.step, "split": dump.split, "dataset": dump.dataset,
            "fingerprint": dump.fingerprint, "vocab_hash": dump.vocab_hash, "uniform": dump.uniform,
            "accuracy": dump.accuracy, **dump.extra}
    table = table.replace_schema_metadata({"seqexplain.snell2021": json.dumps(meta)})
    path = dump_path(folder, dump.run, dump.step, dump.split)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return path


def read_dump(path: Path | str) -> Dump:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(str(path))
        meta = json.loads((table.schema.metadata or {})[b"seqexplain.snell2021"])
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a snell2021 dump: {exc}") from exc
    cols = table.to_pydict()
    arr = [np.asarray(v, dtype=np.float32) for v in cols["alpha"]]
    return Dump(meta["run"], int(meta["step"]), meta["split"], meta["dataset"], meta["fingerprint"],
                meta["vocab_hash"], bool(meta["uniform"]), list(cols["label"]),
                [np.asarray(v, dtype=np.int32) for v in cols["ids"]], arr,
                [np.asarray(v, dtype=np.float32) for v in cols["beta"]],
                [np.asarray(v, dtype=np.float32) for v in cols["delta"]], list(cols["predicted"]),
                {k: v for k, v in meta.items() if k in ("loss", "sign")})


def read_dumps(folder: Path | str, split: str) -> list[Dump]:
    """Every dump of ``split`` in ``folder``; all must come from one data set (fingerprint) and vocabulary."""
    paths = sorted(Path(folder).glob(f"*__{split}__step*.parquet"))
    if not paths:
        raise DataError(f"no dumps of split {split!r} in {folder}; run the dump step first")
    dumps = [read_dump(p) for p in paths]
    check_compatible(dumps)
    return dumps


def check_compatible(dumps: Sequence[Dump]) -> None:
    """Raise unless every dump has the same data set fingerprint and vocabulary hash, and Δ of one sign convention
    (``extra["sign"]``; dumps that do not record it are not checked)."""
    first = dumps[0]
    signs = {d.extra["sign"]: d for d in dumps if "sign" in d.extra}
    if len(signs) > 1:
        (s1, d1), (s2, d2) = list(signs.items())[:2]
        raise InputError(f"dumps {d1.run} step {d1.step} (Δ sign {s1!r}) and {d2.run} step {d2.step} (Δ sign {s2!r}) "
                         "use opposite Δ signs; dump every compared run with one sign")
    for d in dumps[1:]:
        if d.fingerprint != first.fingerprint or d.dataset != first.dataset:
            raise DataError(f"dump {d.run} step {d.step} ({d.dataset}, {d.fingerprint}) is from another data set "
                            f"than {first.run} step {first.step} ({first.dataset}, {first.fingerprint}); "
                            "compare dumps of the same examples only")
        if d.vocab_hash != first.vocab_hash:
            raise InputError(f"runs {first.run} and {d.run} use different vocabularies; train every compared run "
                             "with one vocabulary")
