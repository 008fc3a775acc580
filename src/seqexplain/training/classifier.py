"""Fine-tuning a Hugging Face sequence classifier (``AutoModelForSequenceClassification``) on CPU, resumably.

Recipe: every text is tokenized once, truncated to its first ``max_length`` word pieces (special tokens
included); a batch of ``batch_size`` texts is padded to its longest row. Loss: cross-entropy of the label (mean
over the batch); AdamW (weight decay ``weight_decay``, none on biases and LayerNorm weights), gradients clipped to
``max_grad_norm``; learning rate of 0-based step ``s`` of ``T``, with ``W = max(1, round(warmup × T))``:
``lr × (s + 1) / W`` while ``s < W``, then ``lr × (T − s) / (T − W)`` (transformers' linear schedule after the
warm-up: the last step has ``lr / (T − W)``, 0 would come one step after it; during the warm-up transformers has
``s / W``, which spends the first step at rate 0). The steps are ``epochs × ⌈n / batch_size⌉``, or ``max_steps``
when that is smaller.

Determinism: the order of epoch ``e`` is a permutation drawn from ``(seed, e)`` and dropout is seeded from
``(seed, step)`` before each step, so a run resumed from a checkpoint repeats the uninterrupted one.

Outputs under ``out_dir``: ``checkpoint/`` (model weights in safetensors, the optimizer state
(:mod:`seqexplain.training.optimizer_state`) and ``train_state.json``; written every ``checkpoint_every`` steps;
``resume=True`` continues from it and refuses one made with other defining settings) and ``model/`` (the final
``save_pretrained`` model and tokenizer, safetensors, plus ``training.json``: configuration, history and the
validation accuracy ``correct / n`` of the arg-max label).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_write_text, default_file_mode
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.training.optimizer_state import load_optimizer_state, save_optimizer_state


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """Everything that defines a fine-tuning run (``checkpoint_every`` aside). A count below 1, a negative ``lr``,
    ``max_grad_norm`` <= 0 or ``warmup`` outside [0, 1] is an :class:`InputError`. ``lr = 0`` is allowed: a control
    run whose steps leave the weights as they were."""

    max_length: int = 256
    epochs: int = 2
    batch_size: int = 8
    lr: float = 5e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    seed: int = 0
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        for name in ("max_length", "epochs", "batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be >= 1 or None (the epochs decide), got {self.max_steps}")
        if not self.lr >= 0:
            raise InputError(f"lr must be >= 0, got {self.lr}")
        if not 0.0 <= self.warmup <= 1.0:
            raise InputError(f"warmup is a fraction of the steps in [0, 1], got {self.warmup}")
        if not self.max_grad_norm > 0:
            raise InputError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")

    def total_steps(self, n: int) -> int:
        per_epoch = math.ceil(n / self.batch_size)
        total = self.epochs * per_epoch
        return min(total, self.max_steps) if self.max_steps is not None else total

    def defining(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Word-piece ids of each text, truncated to ``max_length`` (special tokens included)."""
    return [list(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]


def _batch(rows: Sequence[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def predict_labels(model: torch.nn.Module, rows: Sequence[list[int]], pad_id: int, batch_size: int = 16) -> list[int]:
    """The arg-max label of each encoded row (the model in eval mode for the call)."""
    was_training = model.training
    model.eval()
    try:
        out: list[int] = []
        for i in range(0, len(rows), batch_size):
            logits = model(**_batch(rows[i : i + batch_size], pad_id)).logits
            out.extend(int(x) for x in logits.argmax(-1))
        return out
    finally:
        model.train(was_training)


def _lr_factor(step: int, total: int, warmup: float) -> float:
    warm = max(1, round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def _optimizer(model: torch.nn.Module, cfg: ClassifierTrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def _save_checkpoint(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write the checkpoint into ``<ckpt>.new`` and swap it in, so an interrupted write leaves the previous one (or,
    killed during the swap, the new one under ``<ckpt>.new``, complete once it has ``train_state.json``, which
    :func:`_resume` prefers, and an interrupted swap is finished before a new write)."""
    fresh = ckpt.with_name(ckpt.name + ".new")
    if (fresh / "train_state.json").is_file():
        if ckpt.is_dir():
            shutil.rmtree(ckpt)
        fresh.rename(ckpt)
    elif fresh.is_dir():
        shutil.rmtree(fresh)
    fresh.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(fresh / "model.safetensors"))
    save_optimizer_state(opt, fresh)
    atomic_write_text(fresh / "train_state.json", json.dumps(state, indent=2))
    if ckpt.is_dir():
        shutil.rmtree(ckpt)
    fresh.rename(ckpt)


def _resume(ckpt: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: ClassifierTrainConfig
            ) -> dict[str, Any] | None:
    # a complete <ckpt>.new is the newer one (the old folder may be half removed by an interrupted swap)
    found = next((c for c in (ckpt.with_name(ckpt.name + ".new"), ckpt) if (c / "train_state.json").is_file()), None)
    if found is None:
        return None
    state = json.loads((found / "train_state.json").read_text(encoding="utf-8"))
    if state.get("config") != cfg.defining():
        raise ModelLoadError(f"the checkpoint in {found} was made with other settings ({state.get('config')}); "
                             "use another output folder")
    model.load_state_dict(load_file(str(found / "model.safetensors")))
    load_optimizer_state(opt, found)
    return dict(state)


def _check_labels(model: torch.nn.Module, labels: Sequence[int], split: str) -> None:
    """:class:`InputError` when a label is not a class id of ``model`` (``0 .. config.num_labels - 1``)."""
    n_labels = getattr(getattr(model, "config", None), "num_labels", None)
    bad = [y for y in labels if int(y) < 0 or (n_labels is not None and int(y) >= n_labels)]
    if bad:
        raise InputError(f"{split} label {bad[0]} is not a class of the model (0 .. {n_labels - 1 if n_labels else '?'}"
                         "); map the labels to class ids first")


def _check_finite(model: torch.nn.Module, loss: float | None, step: int) -> None:
    """:class:`InputError` once training has diverged: a loss or (with ``loss`` None, after the last step) a weight
    that is not a number. A model trained on would evaluate as anything, e.g. every prediction one class."""
    bad = loss is not None and not math.isfinite(loss)
    if loss is None:
        bad = any(not bool(torch.isfinite(p).all()) for p in model.parameters())
    if bad:
        raise InputError(f"training diverged by step {step}: {'the loss' if loss is not None else 'the weights'} "
                         "became infinite or NaN; lower --lr (or max_grad_norm) and train again in a new --out folder")


def train_classifier(model: torch.nn.Module, tokenizer: Any, train: tuple[Sequence[str], Sequence[int]],
                     valid: tuple[Sequence[str], Sequence[int]], cfg: ClassifierTrainConfig, out_dir: Path | str,
                     resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``model`` on ``train`` = (texts, label ids) (module docstring); return the summary written to
    ``<out_dir>/model/training.json`` (``valid_accuracy``, ``steps``, ``seconds``, ``history``, ``config``)."""
    texts, labels = train
    if not texts or len(texts) != len(labels):
        raise InputError(f"training needs texts and as many labels ({len(texts)} texts, {len(labels)} labels)")
    if len(valid[0]) != len(valid[1]):
        raise InputError(f"the validation set needs as many labels as texts ({len(valid[0])} texts, "
                         f"{len(valid[1])} labels)")
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "problem_type", None) is None and getattr(config, "num_labels", 0) > 1:
        # what the first forward with integer labels sets: set before it, a model saved again from a finished
        # checkpoint (no forward) has the same config.json as the one saved after training
        config.problem_type = "single_label_classification"
    _check_labels(model, labels, "training")
    _check_labels(model, valid[1], "validation")
    out = Path(out_dir)
    ckpt = out / "checkpoint"
    rows = encode_texts(tokenizer, texts, cfg.max_length)
    valid_rows = encode_texts(tokenizer, valid[0], cfg.max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total = cfg.total_steps(len(rows))
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    opt = _optimizer(model, cfg)
    state = (_resume(ckpt, model, opt, cfg) if resume else None) or {"step": 0, "seconds": 0.0, "history": []}
    step, seconds, history = int(state["step"]), float(state["seconds"]), list(state["history"])
    model.train()
    started = time.perf_counter()
    order: list[int] = []
    bar = tqdm(total=total, initial=step, desc="fine-tuning", unit="step", disable=not progress, leave=False)
    while step < total:
        epoch, within = divmod(step, per_epoch)
        if within == 0 or not order:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch)).tolist()
        idx = order[within * cfg.batch_size : (within + 1) * cfg.batch_size]
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, total, cfg.warmup)
        loss = model(**_batch([rows[i] for i in idx], pad_id), labels=torch.tensor([labels[i] for i in idx])).loss
        value = loss.item()  # one device sync a step, for the check and the history
        _check_finite(model, value, step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append({"step": step, "loss": value, "lr": opt.param_groups[0]["lr"]})
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == total:
            now = seconds + time.perf_counter() - started
            _save_checkpoint(ckpt, model, opt, {"step": step, "seconds": now, "history": history,
                                                "config": cfg.defining()})
    bar.close()
    _check_finite(model, None, step)
    seconds += time.perf_counter() - started
    predicted = predict_labels(model, valid_rows, pad_id)
    correct = sum(int(p == y) for p, y in zip(predicted, valid[1], strict=True))
    summary = {"config": cfg.defining(), "steps": step, "seconds": seconds, "n_train": len(rows),
               "n_valid": len(valid_rows), "valid_correct": correct,
               "valid_accuracy": correct / len(valid_rows) if valid_rows else float("nan"),
               "final_loss": history[-1]["loss"] if history else float("nan"), "history": history}
    model.eval()
    _save_model(model, tokenizer, out / "model", summary)
    return summary


def _save_model(model: torch.nn.Module, tokenizer: Any, model_dir: Path, summary: dict[str, Any]) -> None:
    """``save_pretrained`` into ``<model_dir>.new``, then swapped in: an interrupted save leaves the earlier model (or
    none, and the checkpoint to save it from again), never a partial one. The files get the user's default
    permissions (transformers writes its weights 0600)."""
    fresh = model_dir.with_name(model_dir.name + ".new")
    if fresh.is_dir():
        shutil.rmtree(fresh)
    model.save_pretrained(str(fresh), safe_serialization=True)
    tokenizer.save_pretrained(str(fresh))
    atomic_write_text(fresh / "training.json", json.dumps(summary, indent=2))
    for path in fresh.iterdir():
        if path.is_file():
            path.chmod(default_file_mode())
    if model_dir.is_dir():
        shutil.rmtree(model_dir)
    fresh.rename(model_dir)
