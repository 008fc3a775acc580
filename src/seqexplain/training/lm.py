"""Training and evaluating word-level recurrent language models (stateful truncated BPTT).

Recipe (the TensorFlow PTB tutorial of Zaremba et al. 2014, which the original state-gradient code follows):

* the token stream is reshaped to ``[batch_size, N]`` (:func:`seqexplain.data.corpus.batchify`) and cut into
  segments ``[:, k*num_steps:(k+1)*num_steps]``; the final state of a segment, detached, is the initial state of the
  next (truncated BPTT), and the state is zero at the start of every epoch;
* loss for the gradient = cross-entropy **summed over the time steps and averaged over the batch** (TF's
  ``sequence_loss(average_across_timesteps=False)``, summed), i.e. ``num_steps`` × the mean per-token loss. This scale
  is what makes the tutorial's learning rate 1.0 work;
* plain SGD, gradients clipped to global norm ``max_grad_norm``;
* learning-rate schedule: ``lr_e = lr * lr_decay ** max(e + 1 - max_epoch, 0)`` for epoch ``e = 0, 1, ...``: constant
  for the first ``max_epoch`` epochs, then multiplied by ``lr_decay`` every epoch; ``epochs`` epochs in all (the
  tutorial's ``max_max_epoch``);
* perplexity = ``exp(total cross-entropy / number of predicted tokens)``.

Checkpoints: after each epoch, ``<out_dir>/checkpoint/`` holds the model (safetensors + JSON config), the vocabulary
and ``train_state.json`` (epoch reached, history). ``train_lm(..., resume=True)`` continues from there. Each epoch
seeds the global RNG with ``seed + epoch``, so an interrupted-and-resumed run equals an uninterrupted one. A
checkpoint trained with other settings (all but ``epochs`` and ``eval_batch_size``) is refused.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_write_text
from seqexplain.data.corpus import batchify
from seqexplain.errors import OTHER_FOLDER, InputError, ModelLoadError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rnn.lm import RNNLanguageModel, State, load_rnn_lm
from seqexplain.models.rnn.vocab import Vocab


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: the TF PTB tutorial's "small" configuration, 13 epochs). A count below 1,
    ``lr`` / ``lr_decay`` / ``max_grad_norm`` <= 0 or ``max_tokens_per_epoch`` below ``batch_size`` is an
    :class:`InputError`."""

    batch_size: int = 20
    num_steps: int = 35
    lr: float = 1.0
    lr_decay: float = 0.5
    max_epoch: int = 4
    epochs: int = 13
    max_grad_norm: float = 5.0
    eval_batch_size: int = 10
    seed: int = 0
    max_tokens_per_epoch: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_steps", "epochs", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_epoch < 0:
            raise InputError(f"max_epoch must be >= 0, got {self.max_epoch}")
        if not (self.lr > 0 and self.lr_decay > 0 and self.max_grad_norm > 0):
            raise InputError(f"lr, lr_decay and max_grad_norm must be > 0, got {self.lr}, {self.lr_decay}, "
                             f"{self.max_grad_norm}")
        if self.max_tokens_per_epoch is not None and self.max_tokens_per_epoch < self.batch_size:
            raise InputError(f"max_tokens_per_epoch ({self.max_tokens_per_epoch}) must be >= batch_size "
                             f"({self.batch_size}) or None")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``: ``lr * lr_decay ** max(epoch + 1 - max_epoch, 0)``."""
        return self.lr * self.lr_decay ** max(epoch + 1 - self.max_epoch, 0)


@dataclass
class TrainResult:
    """History of a training run: per epoch learning rate, training and validation perplexity, seconds."""

    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None

    @property
    def final_valid_ppl(self) -> float:
        return self.history[-1]["valid_ppl"] if self.history else float("nan")


def _detach(state: State) -> State:
    return tuple(tuple(s.detach() for s in layer) for layer in state)


def _sequence_loss(
    model: RNNLanguageModel, x: torch.Tensor, y: torch.Tensor, state: State
) -> tuple[torch.Tensor, State]:
    out = model(input_ids=x, state=state)
    ce = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), y.reshape(-1), reduction="mean")
    return ce, out.state


@torch.no_grad()
def perplexity(
    model: RNNLanguageModel, ids: torch.Tensor, batch_size: int = 10, num_steps: int = 35, progress: bool = False
) -> float:
    """Perplexity ``exp(mean cross-entropy)`` of the stream ``ids`` (stateful, as in training; eval mode)."""
    data = batchify(ids, batch_size)
    device = model.decoder.weight.device
    data = data.to(device)
    total, count = 0.0, 0
    with eval_mode(model):
        state = model.initial_state(data.shape[0], device)
        starts = range(0, data.shape[1] - 1, num_steps)
        for i in tqdm(starts, desc="eval", disable=not progress, leave=False):
            n = min(num_steps, data.shape[1] - 1 - i)
            ce, state = _sequence_loss(model, data[:, i : i + n], data[:, i + 1 : i + 1 + n], state)
            total += float(ce) * n * data.shape[0]
            count += n * data.shape[0]
    return math.exp(total / count)


def _save_checkpoint(model: RNNLanguageModel, vocab: Vocab | None, ckpt: Path, epoch: int,
                     result: TrainResult, cfg: TrainConfig) -> None:
    # the previous epoch's train_state.json goes first: killed while the new weights are written, the folder must
    # not pair them with the old epoch (a resume would train that epoch twice)
    (ckpt / "train_state.json").unlink(missing_ok=True)
    model.save(ckpt, vocab)
    state = {"epoch": epoch, "history": result.history, "train_config": asdict(cfg)}
    # written last: its presence marks a complete checkpoint
    atomic_write_text(ckpt / "train_state.json", json.dumps(state, indent=2))


_NOT_DEFINING = ("epochs", "eval_batch_size")


def _check_resumable(ckpt: Path, saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Raise :class:`ModelLoadError` when the checkpoint was trained with other settings than ``cfg`` (all but
    ``epochs``, which a resume may extend, and ``eval_batch_size``)."""
    wanted = asdict(cfg)
    changed = sorted(k for k in set(saved) | set(wanted)
                     if k not in _NOT_DEFINING and saved.get(k) != wanted.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in changed)
        raise ModelLoadError(f"checkpoint {ckpt} was trained with other settings ({detail}); "
                             f"{OTHER_FOLDER}")


def train_lm(
    model: RNNLanguageModel,
    train_ids: torch.Tensor,
    valid_ids: torch.Tensor | None,
    config: TrainConfig,
    out_dir: Path | str | None = None,
    vocab: Vocab | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on the id stream ``train_ids`` (see the module docstring for the recipe).

    With ``out_dir``, a checkpoint is written after every epoch to ``<out_dir>/checkpoint``; with ``resume`` and an
    existing checkpoint, its weights and history are loaded and training continues with the next epoch.
    """
    cfg = config
    result = TrainResult()
    start_epoch = 0
    ckpt = Path(out_dir) / "checkpoint" if out_dir is not None else None
    if ckpt is not None and resume and (ckpt / "train_state.json").is_file():
        saved, _ = load_rnn_lm(ckpt)
        if saved.config.to_dict() != model.config.to_dict():
            raise ModelLoadError(f"checkpoint {ckpt} was trained with a different model configuration; "
                                 f"{OTHER_FOLDER}")
        st = json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))
        _check_resumable(ckpt, st.get("train_config", {}), cfg)
        model.load_state_dict(saved.state_dict())
        start_epoch = int(st["epoch"]) + 1
        result.history = list(st["history"])
        result.checkpoint = ckpt
    data = batchify(train_ids, cfg.batch_size)
    if data.shape[1] < 2:
        raise InputError("training text too short for the batch size")
    device = model.decoder.weight.device
    data = data.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed + epoch)
        lr = cfg.lr_at(epoch)
        t0 = time.perf_counter()
        model.train()
        state = model.initial_state(data.shape[0], device)
        limit = data.shape[1] - 1
        if cfg.max_tokens_per_epoch is not None:
            limit = min(limit, max(1, cfg.max_tokens_per_epoch // data.shape[0]))
        total, count = 0.0, 0
        bar = tqdm(range(0, limit, cfg.num_steps), desc=f"epoch {epoch + 1}/{cfg.epochs} lr={lr:.3g}",
                   disable=not progress, leave=False)
        for i in bar:
            n = min(cfg.num_steps, limit - i)
            ce, state = _sequence_loss(model, data[:, i : i + n], data[:, i + 1 : i + 1 + n], _detach(state))
            model.zero_grad(set_to_none=True)
            (ce * n).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            with torch.no_grad():
                for p in params:
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-lr)
            total += float(ce.detach()) * n
            count += n
            bar.set_postfix(ppl=f"{math.exp(total / count):.1f}")
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_ppl": math.exp(total / count),
                               "seconds": time.perf_counter() - t0}
        row["valid_ppl"] = (perplexity(model, valid_ids, cfg.eval_batch_size, cfg.num_steps)
                            if valid_ids is not None else float("nan"))
        result.history.append(row)
        if ckpt is not None:
            _save_checkpoint(model, vocab, ckpt, epoch, result, cfg)
            result.checkpoint = ckpt
    model.eval()
    return result
