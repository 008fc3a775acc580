"""Training the attention RNNs of Ger et al. (:mod:`seqexplain.models.attention_rnn`) on
:class:`~seqexplain.models.attention_rnn_adapter.VectorDocument` s.

Cross-entropy, Adagrad (the original's choice) or Adam, gradients clipped by value (``clip_value``, the original's
``clipvalue=10``), minibatches shuffled by a generator seeded with ``seed + epoch`` and dropout seeded per epoch, so a
run resumed after epoch ``e`` continues exactly as an uninterrupted one. After each epoch: validation loss,
accuracy and F1 (scikit-learn, macro over the classes); the weights with the best validation loss are kept
(:func:`improves`: the lowest finite loss, the earlier epoch on a tie; a NaN loss is best only until a finite one
comes).

Files in ``out`` (all safetensors or JSON, written atomically): ``best.safetensors`` (best weights, config in its
metadata), ``last.safetensors`` (latest weights), ``optimizer.safetensors`` + ``optimizer.json`` (the optimizer's
state, :mod:`seqexplain.training.optimizer_state`), ``state.json`` (epoch, history, best and the run's configs) and
TensorBoard events under ``tb/``.
:func:`train` resumes from ``state.json`` when it exists and its configs equal the call's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError
from seqexplain.models.attention_rnn import AttentionRNN, AttentionRNNConfig, load_attention_rnn, save_attention_rnn
from seqexplain.models.attention_rnn_adapter import VectorDocument
from seqexplain.training.optimizer_state import load_optimizer_state, save_optimizer_state


@dataclass
class TrainConfig:
    """Optimisation settings; an epoch count or batch size below 1, a learning rate or clip value <= 0 is an
    :class:`InputError`. The last, short minibatch of an epoch is kept (a batch larger than the data is one batch)."""

    optimizer: Literal["adagrad", "adam"] = "adagrad"
    lr: float = 0.01
    clip_value: float | None = 10.0
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adagrad", "adam"):
            raise InputError(f"optimizer is 'adagrad' or 'adam', not {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0 (0 trains nothing), got {self.lr}")
        if self.clip_value is not None and not self.clip_value > 0:
            raise InputError(f"clip_value must be > 0 or None (no clipping), got {self.clip_value}")


def collate(docs: Sequence[VectorDocument], device: torch.device | str = "cpu"
            ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(x [N, n, D], lengths [N], types [N, n] or None, labels [N] or None)`` of documents padded to the longest."""
    n = max(len(d.tokens) for d in docs)
    width = int(docs[0].vectors.shape[1])
    x = torch.zeros(len(docs), n, width)
    for i, d in enumerate(docs):
        x[i, : len(d.tokens)] = d.vectors
    lengths = torch.tensor([len(d.tokens) for d in docs])
    types = None
    if all(d.event_types is not None for d in docs):
        types = torch.tensor([list(d.event_types or []) + [0] * (n - len(d.tokens)) for d in docs])
    labels = torch.tensor([d.label for d in docs]) if all(d.label is not None for d in docs) else None
    dev = torch.device(device)
    return x.to(dev), lengths, None if types is None else types.to(dev), None if labels is None else labels.to(dev)


def batches(docs: Sequence[VectorDocument], size: int, generator: torch.Generator | None = None
            ) -> Iterator[list[VectorDocument]]:
    """Minibatches in a random order (``generator``) or in order (None)."""
    order = torch.randperm(len(docs), generator=generator).tolist() if generator is not None else range(len(docs))
    chunk: list[VectorDocument] = []
    for i in order:
        chunk.append(docs[i])
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def batch_loss(model: AttentionRNN, docs: Sequence[VectorDocument]) -> Tensor:
    """Mean cross-entropy of ``docs`` (with graph)."""
    param = next(model.parameters())
    x, lengths, types, labels = collate(docs, param.device)
    if labels is None:
        raise InputError("training and evaluation need a label on every document")
    z, _ = model(x.to(param.dtype), lengths, types)
    return torch.nn.functional.cross_entropy(z, labels)


def evaluate(model: AttentionRNN, docs: Sequence[VectorDocument], batch_size: int = 256) -> dict[str, float]:
    """Mean loss, accuracy and macro F1 (scikit-learn) of ``model`` in eval mode on labelled documents."""
    from sklearn.metrics import f1_score

    if not docs:
        raise InputError("no documents to evaluate")
    was = model.training
    model.eval()
    total, preds, gold = 0.0, [], []
    try:
        with torch.no_grad():
            for chunk in batches(docs, batch_size):
                param = next(model.parameters())
                x, lengths, types, labels = collate(chunk, param.device)
                if labels is None:
                    raise InputError("evaluation needs a label on every document")
                z, _ = model(x.to(param.dtype), lengths, types)
                total += float(torch.nn.functional.cross_entropy(z, labels, reduction="sum"))
                preds.extend(z.argmax(-1).tolist())
                gold.extend(labels.tolist())
    finally:
        model.train(was)
    acc = float(np.mean(np.asarray(preds) == np.asarray(gold)))
    return {"loss": total / len(docs), "accuracy": acc, "f1": float(f1_score(gold, preds, average="macro"))}


def improves(loss: float, best: float | None) -> bool:
    """Whether validation ``loss`` replaces ``best`` (None: no best yet): a finite loss beats a NaN or larger one;
    a tie keeps the earlier epoch; a NaN beats nothing but an empty best."""
    if best is None:
        return True
    if math.isnan(loss):
        return False
    return math.isnan(best) or loss < best


def _optimizer(model: AttentionRNN, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adagrad":  # TrainConfig admits only "adagrad" and "adam"
        return torch.optim.Adagrad(model.parameters(), lr=cfg.lr)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def train(model_config: AttentionRNNConfig, train_docs: Sequence[VectorDocument],
          val_docs: Sequence[VectorDocument], out: Path | str, cfg: TrainConfig | None = None,
          progress: bool = False, tensorboard: bool = True) -> dict[str, Any]:
    """Train (or resume) a model (module docstring); returns ``state.json``'s content (``best`` holds the best
    epoch's validation metrics)."""
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not train_docs or not val_docs:
        raise InputError("training needs training and validation documents")
    width = int(train_docs[0].vectors.shape[1])
    if width != model_config.input_dim:
        raise InputError(f"the documents' vectors have width {width} but the model takes {model_config.input_dim}")
    configs = {"model": model_config.to_dict(), "train": asdict(cfg)}
    torch.manual_seed(cfg.seed)
    model = AttentionRNN(model_config)
    opt = _optimizer(model, cfg)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best": None, **configs}
    state_file = out / "state.json"
    if state_file.is_file():
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        if saved.get("model") != configs["model"] or saved.get("train", {}) | {"epochs": cfg.epochs} != configs[
                "train"]:
            raise InputError(f"{out} holds a run with other settings; use another output folder or the same settings")
        state = {**saved, "train": configs["train"]}
        if state["epoch"] > 0:
            model.load_state_dict(load_attention_rnn(out / "last.safetensors").state_dict())
            load_optimizer_state(opt, out)
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    try:
        for epoch in tqdm(range(state["epoch"], cfg.epochs), desc="train", disable=not progress,
                          initial=state["epoch"], total=cfg.epochs):
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            torch.manual_seed(cfg.seed * 100003 + epoch)
            model.train()
            losses = []
            for chunk in batches(train_docs, cfg.batch_size, gen):
                loss = batch_loss(model, chunk)
                opt.zero_grad()
                loss.backward()
                if cfg.clip_value is not None:
                    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.clip_value)
                opt.step()
                losses.append(float(loss.detach()))
            val = evaluate(model, val_docs)
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                      **{f"val_{k}": v for k, v in val.items()}}
            if writer is not None:
                for k, v in record.items():
                    if k != "epoch":
                        writer.add_scalar(k, v, epoch + 1)
            state["history"].append(record)
            # state.json says "fresh start" while the files are rewritten: a kill in between must not pair the new
            # weights or optimizer state with the previous epoch (a resume would train that epoch twice)
            atomic_write_text(state_file, json.dumps({**configs, "epoch": 0, "history": [], "best": None}, indent=1))
            if improves(record["val_loss"], None if state["best"] is None else state["best"]["val_loss"]):
                state["best"] = record
                save_attention_rnn(model, out / "best.safetensors")
            save_attention_rnn(model, out / "last.safetensors")
            save_optimizer_state(opt, out)
            state["epoch"] = epoch + 1
            atomic_write_text(state_file, json.dumps(state, indent=1))
    finally:
        if writer is not None:
            writer.close()
    return state
