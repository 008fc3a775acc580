"""The training loop of the soft-attention classifiers, on `accelerate` (objective:
:mod:`seqexplain.training.soft_attention_objective`; models: :mod:`seqexplain.training.soft_attention`).

* **Accelerator**: the one given, else :func:`default_accelerator` — the CPU, unless the process was started by
  ``accelerate launch`` (then accelerate's configuration: its device, mixed precision and, with several processes,
  data parallelism). The model, optimiser, batch loader and scheduler go through ``accelerator.prepare``; the loss
  through ``accelerator.backward``; gradients are clipped by ``accelerator.clip_grad_norm_``.
* **Optimiser**: AdamW (``learning_rate``; the head's parameters at ``head_learning_rate`` when set;
  ``weight_decay``, ``adam_epsilon``), gradient clipping at ``max_grad_norm``, linear decay after a linear warm-up
  (:func:`schedule_lengths`). Schedule lengths count single-process optimiser steps (accelerate's convention): with
  ``P`` processes each step consumes ``P × accumulation`` batches, the scheduler advances ``P`` steps per step and
  the loop runs ``⌈total / P⌉`` steps.
* **Batches**: per epoch the sentence order is ``randperm(seed + epoch)``, cut into batches of
  ``per_device_train_batch_size``; batch ``b`` of an epoch is masked with the generator seeded
  ``seed·1000003 + epoch·10007 + b`` — the loader holds its own generator, so the global RNG (dropout) is used as
  by a plain loop and a one-process run equals one.
* **Checkpoints**: the dev set is evaluated every ``eval_steps`` optimiser steps (default: at the end of each epoch
  and at the last step; on the main process, its F1 broadcast); the weights with the best **dev sentence F1**
  (positive class) are kept (``best.safetensors``; the earlier evaluation on a tie; without a dev set, the latest) and
  loaded at the end. With ``out_dir`` (main process only):
  TensorBoard scalars under ``tb/``, and at every evaluation a resumable state (``last.safetensors`` of the unwrapped
  model, ``optimizer.safetensors``, then ``train_state.json``): a rerun with the same ``out_dir`` continues from the
  last evaluation with the same order and masking, and refuses a state made with other settings (all but naming,
  logging and the eval batch size) or another number of training sentences. The trained model stays on the
  accelerator's device.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import f1_score

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.data.token_labels import LabelledSentence
from seqexplain.errors import OTHER_FOLDER, InputError, ModelLoadError
from seqexplain.progress import add_total, advance, progress_bar
from seqexplain.training.soft_attention_objective import SoftAttentionConfig, soft_attention_loss


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_dev_f1: float = -1.0
    steps: int = 0
    truncated: int = 0
    main_process: bool = True


@dataclass
class Prediction:
    """Per sentence: predicted label, ``p(positive)`` (the last label) and the token scores ``a`` on the batcher's
    axis (0 at positions that are not attended; padding cut)."""

    labels: np.ndarray
    probs: np.ndarray
    scores: list[np.ndarray]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict(model: torch.nn.Module, batcher: Any, sents: Sequence[LabelledSentence], batch_size: int = 64
            ) -> Prediction:
    """Predictions on ``sents`` (batches moved to the model's device)."""
    was = model.training
    model.eval()
    device = _device_of(model)
    labels, probs, scores = [], [], []
    try:
        with torch.no_grad():
            for i in range(0, len(sents), batch_size):
                batch = {k: v.to(device) for k, v in batcher.make(sents[i : i + batch_size]).items()}
                logits, a, _, attend = batcher.forward(model, batch)
                p = torch.softmax(logits.float(), -1)
                labels.extend(p.argmax(-1).tolist())
                probs.extend(p[:, -1].tolist())
                for r in range(a.shape[0]):
                    n = int(batch["attention_mask"][r].sum()) if "attention_mask" in batch else int(batch["lengths"][r])
                    scores.append(torch.where(attend[r], a[r], torch.zeros_like(a[r]))[:n].float().cpu().numpy())
    finally:
        model.train(was)
    return Prediction(np.array(labels), np.array(probs), scores)


def sentence_f1(model: torch.nn.Module, batcher: Any, sents: Sequence[LabelledSentence], batch_size: int) -> float:
    pred = predict(model, batcher, sents, batch_size)
    return float(f1_score([s.label for s in sents], pred.labels, zero_division=0))


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    state = opt.state_dict()
    tensors = {f"{i}.{k}": torch.as_tensor(v).detach().cpu().clone() for i, st in state["state"].items()
               for k, v in st.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(state["param_groups"])})


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        groups = json.loads(fh.metadata()["param_groups"])
        per: dict[int, dict[str, torch.Tensor]] = {}
        for key in fh.keys():  # noqa: SIM118 - safe_open is not iterable
            i, name = key.split(".", 1)
            per.setdefault(int(i), {})[name] = fh.get_tensor(key)
    opt.load_state_dict({"state": per, "param_groups": groups})


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def _save_model(model: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(_cpu_state(model), str(tmp))


def schedule_lengths(cfg: SoftAttentionConfig, n_train: int) -> tuple[int, int]:
    """``(optimiser steps, warm-up steps)`` of one process: ``max_steps`` or ``⌈n_train / batch / accumulation⌉ ×
    epochs``, and ``warmup_ratio`` × the steps (``warmup_unit="steps"``) or × ``n_train × epochs`` examples (the
    original)."""
    per_epoch = math.ceil(n_train / cfg.per_device_train_batch_size / cfg.gradient_accumulation_steps)
    total = cfg.max_steps or max(1, math.ceil(per_epoch * cfg.num_train_epochs))
    base = n_train * cfg.num_train_epochs if cfg.warmup_unit == "examples" else total
    return total, int(cfg.warmup_ratio * base)


def default_accelerator() -> Any:
    """``Accelerator(cpu=True)``, or accelerate's configuration when started by ``accelerate launch`` (which sets
    ``ACCELERATE_USE_CPU`` / ``ACCELERATE_MIXED_PRECISION`` in the environment). Data parallelism is told that some
    parameters get no gradient (an encoder's pooler, which the head does not use); an accelerator passed to
    :func:`train_soft_attention` for several processes needs the same
    ``DistributedDataParallelKwargs(find_unused_parameters=True)``."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    launched = "ACCELERATE_USE_CPU" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    return Accelerator(kwargs_handlers=handlers) if launched else Accelerator(cpu=True, kwargs_handlers=handlers)


class _EpochBatches(torch.utils.data.Dataset):
    """The batches of one epoch from ``start`` on, as ``(batch index, sentence indices)``; the collate function
    makes the masked training batch (module docstring)."""

    def __init__(self, batcher: Any, train: Sequence[LabelledSentence], cfg: SoftAttentionConfig) -> None:
        self.batcher, self.train, self.cfg = batcher, train, cfg
        self.epoch, self.n_batches = 0, 0
        self.items: list[tuple[int, list[int]]] = []

    def begin(self, epoch: int, start: int) -> None:
        bs = self.cfg.per_device_train_batch_size
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(self.cfg.seed + epoch)).tolist()
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        self.epoch, self.n_batches = epoch, len(batches)
        self.items = list(enumerate(batches))[start:]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, list[int]]:
        return self.items[i]

    def collate(self, items: list[tuple[int, list[int]]]) -> tuple[int, dict[str, torch.Tensor]]:
        ((b_idx, indices),) = items
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.epoch * 10_007 + b_idx)
        return b_idx, self.batcher.make([self.train[i] for i in indices], train=True, generator=gen)


_NOT_DEFINING = ("experiment_name", "output_dir", "logging_steps", "save_steps", "per_device_eval_batch_size")


def _defining(cfg: SoftAttentionConfig, n_train: int) -> dict[str, Any]:
    """The settings a checkpoint must share with a run that resumes it (all but naming, logging, eval batch size),
    and the number of training sentences (it sets the schedule's length and the batches)."""
    return {**{k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_DEFINING}, "n_train": n_train}


def _check_resumable(out: Path, saved: dict[str, Any] | None, cfg: SoftAttentionConfig, n_train: int) -> None:
    """Raise :class:`ModelLoadError` when the state in ``out`` was trained with other defining settings."""
    if saved is None:
        raise ModelLoadError(f"the training state in {out} does not record its settings (an older version wrote "
                             f"it); {OTHER_FOLDER}")
    wanted = _defining(cfg, n_train)
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in changed)
        raise ModelLoadError(f"the training state in {out} was made with other settings ({detail}); "
                             f"{OTHER_FOLDER}")


def _optimizer(model: torch.nn.Module, cfg: SoftAttentionConfig) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    head_ids = {id(p) for p in head}
    groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) not in head_ids]},
                                    {"params": head, "lr": cfg.head_learning_rate or cfg.learning_rate}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                             eps=cfg.adam_epsilon)


def train_soft_attention(model: torch.nn.Module, batcher: Any, train: Sequence[LabelledSentence],
                         dev: Sequence[LabelledSentence], cfg: SoftAttentionConfig, out_dir: Path | str | None = None,
                         resume: bool = True, progress: bool = True, accelerator: Any = None) -> TrainResult:
    """Train ``model`` in place (module docstring); the best dev-F1 weights are loaded at the end."""
    from accelerate.utils import broadcast_object_list
    from transformers import get_linear_schedule_with_warmup

    if not train:
        raise InputError("no training sentences")
    acc = accelerator if accelerator is not None else default_accelerator()
    n_proc, main = acc.num_processes, acc.is_main_process
    accum = cfg.gradient_accumulation_steps
    total, warmup = schedule_lengths(cfg, len(train))
    local_total = math.ceil(total / n_proc)
    opt = _optimizer(model, cfg)
    result = TrainResult(main_process=main)
    out = Path(out_dir) if out_dir is not None else None
    step, epoch, start = 0, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    if out is not None and resume and (out / "train_state.json").is_file():
        st = json.loads((out / "train_state.json").read_text(encoding="utf-8"))
        _check_resumable(out, st.get("config"), cfg, len(train))
        model.load_state_dict(load_file(str(out / "last.safetensors")))
        _load_optimizer(opt, out / "optimizer.safetensors")
        step, epoch, start = int(st["step"]), int(st["epoch"]), int(st["batches"])
        result.history, result.best_step, result.best_dev_f1 = st["history"], st["best_step"], st["best_dev_f1"]
        if result.best_step > 0:
            best_state = load_file(str(out / "best.safetensors"))
    if best_state is None:
        best_state = _cpu_state(model)
    # on resume the schedule continues at ``step`` (the optimiser's groups hold ``initial_lr`` from the checkpoint)
    sched = get_linear_schedule_with_warmup(opt, warmup, total, last_epoch=step * n_proc - 1)
    data = _EpochBatches(batcher, train, cfg)
    loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False, collate_fn=data.collate,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    wrapped, opt, loader, sched = acc.prepare(model, opt, loader, sched)
    bare = acc.unwrap_model(wrapped)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    writer = None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    wrapped.train()
    with progress_bar(f"training {type(bare).__name__}", enabled=progress and main, unit="step"):
        add_total(local_total - step)
        while step < local_total:
            data.begin(epoch, start)
            n_local = len(loader)
            for j, (b_idx, batch) in enumerate(loader):
                last_micro = (j + 1) % accum == 0 or j + 1 == n_local
                with acc.no_sync(wrapped) if not last_micro else contextlib.nullcontext():
                    logits, a, w, attend = batcher.forward(wrapped, batch)
                    loss, terms = soft_attention_loss(logits, a, w, attend, batch["labels"], cfg,
                                                      batch["token_targets"], batch["token_mask"])
                    acc.backward(loss / accum)
                if not last_micro:
                    continue
                acc.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                advance()
                if writer is not None and step % max(1, cfg.logging_steps) == 0:
                    for k, v in terms.items():
                        writer.add_scalar(f"loss/{k}", v, step)
                end_epoch = j + 1 == n_local
                if step >= local_total or (cfg.eval_steps and step % cfg.eval_steps == 0) or (
                        end_epoch and not cfg.eval_steps):
                    f1 = [sentence_f1(bare, batcher, dev, cfg.per_device_eval_batch_size) if dev and main else 0.0]
                    f1 = broadcast_object_list(f1) if n_proc > 1 else f1
                    if out is not None and main:  # the old state goes first: a kill below must not pair it with
                        (out / "train_state.json").unlink(missing_ok=True)  # the new best/last weights
                    result.history.append({"step": step, "epoch": epoch + min(1.0, (b_idx + 1) / data.n_batches),
                                           "loss": float(loss.detach()), "dev_sentence_f1": f1[0], **terms})
                    if writer is not None:
                        writer.add_scalar("dev/sentence_f1", f1[0], step)
                    if f1[0] > result.best_dev_f1 or not dev:  # no dev set: nothing to choose by, keep the latest
                        result.best_dev_f1, result.best_step = f1[0], step
                        best_state = _cpu_state(bare)
                        if out is not None and main:
                            _save_model(bare, out / "best.safetensors")
                    if out is not None and main:
                        _save_model(bare, out / "last.safetensors")
                        _save_optimizer(opt, out / "optimizer.safetensors")
                        nxt = (epoch + 1, 0) if end_epoch else (epoch, start + (j + 1) * n_proc)
                        atomic_write_text(out / "train_state.json", json.dumps(
                            {"step": step, "epoch": nxt[0], "batches": nxt[1], "history": result.history,
                             "best_step": result.best_step, "best_dev_f1": result.best_dev_f1,
                             "config": _defining(cfg, len(train))}, indent=1))
                    acc.wait_for_everyone()
                if step >= local_total:
                    break
            epoch += 1
            start = 0
    if writer is not None:
        writer.close()
    bare.load_state_dict(best_state)
    bare.eval()
    result.steps = step
    result.truncated = len(getattr(batcher, "truncated", ()))
    return result

