"""Settings and result of :func:`seqexplain.training.compatible.train_causal_lm`: :class:`TrainConfig` (optimiser,
learning-rate schedule, word dropout, logging and checkpoint cadence) and :class:`TrainResult`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seqexplain.errors import InputError
from seqexplain.training.word_dropout import WordDropout

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


@dataclass
class TrainConfig:
    """Settings of :func:`~seqexplain.training.compatible.train_causal_lm` (see :mod:`seqexplain.training.compatible`).
    ``word_dropout=None``: standard training. ``lr_zero_at_last_step`` (bool, default False): the linear and cosine
    decays reach 0 *at* the last step, which then changes nothing (the schedule before 2026-12-05, which the
    recorded vafa2021 results were trained with; their recipes set it); by default the decay reaches 0 one step
    after the last, as ``transformers.get_linear_schedule_with_warmup`` / ``get_cosine_schedule_with_warmup`` do."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    warmup_steps: int = 0
    schedule: str = "constant"
    max_grad_norm: float | None = None
    word_dropout: WordDropout | None = None
    seed: int = 0
    log_every: int = 50
    eval_every: int | None = None
    eval_batch_size: int = 256
    checkpoint_every: int | None = 500
    keep_checkpoints: int = 1
    lr_zero_at_last_step: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError("steps and batch_size must be >= 1")
        if isinstance(self.word_dropout, dict):
            self.word_dropout = WordDropout(**self.word_dropout)

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based ``step``: ``lr·(step+1)/W`` during the ``W = warmup_steps`` warm-up steps, then
        ``lr·(1 − f)`` (linear) or ``lr·(1 + cos πf)/2`` (cosine) with ``f = (step − W)/(steps − W)`` (``step + 1 − W``
        with ``lr_zero_at_last_step``), or ``lr·sqrt(max(1, W)/(step+1))`` (inverse_sqrt)."""
        s = step + 1
        if self.warmup_steps and s <= self.warmup_steps:
            return self.lr * s / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "inverse_sqrt":
            return self.lr * math.sqrt(max(1, self.warmup_steps) / s)
        done = s if self.lr_zero_at_last_step else step
        frac = (done - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        if self.schedule == "linear":
            return self.lr * (1.0 - frac)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * frac))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class TrainResult:
    """``history``: one row per log/eval event (step, train_loss, lr, valid_loss, valid_ppl, seconds).
    ``seconds``: wall-clock training time over all runs (resumed ones included); ``cpu_seconds``: process CPU
    time of this call (all threads; on a shared machine it shows the work done better than wall time)."""

    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    checkpoint: Path | None = None
    model_dir: Path | None = None
