"""Training and compatibility fine-tuning of causal language models with word dropout.

:func:`train_causal_lm` trains any module with the Hugging Face causal-LM calling convention (a Hugging Face
model, a ``peft`` LoRA model, or :class:`seqexplain.models.transformer.TransformerLM`) with the standard
next-token loss (mean cross-entropy over the predicted, non-padding tokens). With a :class:`WordDropout`, a
batch drawn for dropout is run with the 4-D attention mask of its keep masks
(:func:`seqexplain.training.word_dropout.causal_attention_mask`); the loss is unchanged.

* **Optimiser**: AdamW over the parameters that require grad (so a LoRA model trains its adapters only);
  learning rate ``lr`` with linear warm-up over ``warmup_steps`` and then ``schedule``: ``constant``,
  ``linear`` (to 0 at ``steps``), ``cosine`` or ``inverse_sqrt`` (``lr * sqrt(warmup / step)``, fairseq's).
* **Data order**: epoch ``e`` visits the rows in ``randperm(N)`` seeded with ``seed + e``; step ``s`` takes
  batch ``s mod (N // batch_size)`` of epoch ``s // (N // batch_size)`` (the last partial batch is skipped), so
  the order depends on the step alone.
* **Randomness**: word dropout draws from its own ``torch.Generator`` seeded with ``seed``; ``nn.Dropout``
  draws from the global generator, seeded with ``seed`` at the start.
* **Checkpoints** (every ``checkpoint_every`` steps and at the end) in ``<out_dir>/checkpoints/step-<n>/``:
  ``trainable.safetensors`` (every parameter that requires grad), ``optimizer.pt`` (``torch.save`` of the
  optimiser state, read back with ``weights_only=True``), ``rng.safetensors`` (global and word-dropout generator
  states) and ``train_state.json`` (step, history); ``<out_dir>/checkpoints/latest.json`` names the newest
  complete one. ``resume=True`` restores all of it, so an interrupted run continues exactly as the
  uninterrupted one (same batches, masks, dropout and losses).
* **Logs**: TensorBoard (``<out_dir>/tensorboard``: ``train/loss``, ``train/lr``, ``valid/loss``,
  ``valid/ppl``) and a tqdm progress bar. The final model goes to ``<out_dir>/model`` (``save_pretrained``:
  safetensors).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.module_state import eval_mode
from seqexplain.training.word_dropout import WordDropout, causal_attention_mask, sample_keep

SCHEDULES = ("constant", "linear", "cosine", "inverse_sqrt")


@dataclass
class TokenData:
    """Right-padded sequences: ``input_ids[N, L]`` and ``valid[N, L]`` (True on real tokens)."""

    input_ids: Tensor
    valid: Tensor

    def __post_init__(self) -> None:
        if self.input_ids.dim() != 2 or self.input_ids.shape != self.valid.shape:
            raise InputError(f"input_ids {tuple(self.input_ids.shape)} and valid {tuple(self.valid.shape)} must be "
                             "the same [N, L] shape")
        self.valid = self.valid.to(torch.bool)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @classmethod
    def from_tensor(cls, ids: Tensor) -> TokenData:
        """Equal-length sequences ``[N, L]`` (no padding)."""
        return cls(ids.long(), torch.ones_like(ids, dtype=torch.bool))

    @classmethod
    def from_lists(cls, rows: list[list[int]], pad_token_id: int = 0) -> TokenData:
        """Variable-length sequences, right-padded with ``pad_token_id``."""
        if not rows or any(len(r) == 0 for r in rows):
            raise InputError("give at least one non-empty sequence")
        n_l = max(len(r) for r in rows)
        ids = torch.full((len(rows), n_l), pad_token_id, dtype=torch.long)
        valid = torch.zeros(len(rows), n_l, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            valid[i, : len(r)] = True
        return cls(ids, valid)


@dataclass
class TrainConfig:
    """Settings of :func:`train_causal_lm` (see the module docstring). ``word_dropout=None``: standard
    training."""

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

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule {self.schedule!r}; use one of {', '.join(SCHEDULES)}")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError("steps and batch_size must be >= 1")
        if isinstance(self.word_dropout, dict):
            self.word_dropout = WordDropout(**self.word_dropout)

    def lr_at(self, step: int) -> float:
        """Learning rate of 0-based ``step``."""
        s = step + 1
        if self.warmup_steps and s <= self.warmup_steps:
            return self.lr * s / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "inverse_sqrt":
            return self.lr * math.sqrt(max(1, self.warmup_steps) / s)
        frac = (s - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
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


def _accepts_position_ids(model: nn.Module) -> bool:
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "position_ids" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _param_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def lm_logits(model: nn.Module, input_ids: Tensor, valid: Tensor, keep: Tensor | None = None) -> Tensor:
    """Logits ``[B, L, V]`` of a causal LM: with the 2-D padding mask when ``keep`` is None, else with the 4-D
    word-dropout mask of ``keep`` (position ids 0..L-1 either way)."""
    kwargs: dict[str, Any] = {"input_ids": input_ids}
    if keep is None:
        kwargs["attention_mask"] = valid.long()
    else:
        kwargs["attention_mask"] = causal_attention_mask(keep, _param_dtype(model))
    if _accepts_position_ids(model):
        kwargs["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0).expand(
            input_ids.shape[0], -1)
    return model(**kwargs).logits


def lm_loss(logits: Tensor, input_ids: Tensor, valid: Tensor, reduction: str = "mean") -> Tensor:
    """Next-token cross-entropy: ``logits[:, t]`` against ``input_ids[:, t + 1]`` where ``valid[:, t + 1]``."""
    tgt = input_ids[:, 1:].masked_fill(~valid[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1),
                           ignore_index=-100, reduction=reduction)


@torch.no_grad()
def evaluate_lm(model: nn.Module, data: TokenData, batch_size: int = 256, progress: bool = False,
                word_dropout: str | None = None, seed: int = 0) -> dict[str, float]:
    """Per-token loss and perplexity ``exp(mean NLL)`` over every predicted, non-padding token (eval mode).

    ``word_dropout=None``: full context. ``"uniform_length"`` / ``"inverse_length"``: every row's context is
    dropped with a keep mask of that kind (:func:`sample_keep`, seeded with ``seed``; each token still sees
    itself), so the loss is ``−log p(x_{t+1} | kept part of x_{≤t})`` — how well the model predicts from
    incomplete contexts, i.e. its compatibility with the subsets that rationale search evaluates."""
    dev = _device(model)
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with eval_mode(model):
        for start in tqdm(range(0, len(data), batch_size), desc="eval", disable=not progress, leave=False):
            ids = data.input_ids[start : start + batch_size].to(dev)
            valid = data.valid[start : start + batch_size].to(dev)
            keep = None
            if word_dropout is not None:
                keep = sample_keep(data.valid[start : start + batch_size], word_dropout, generator).to(dev)
            logits = lm_logits(model, ids, valid, keep)
            total += float(lm_loss(logits, ids, valid, reduction="sum"))
            count += int(valid[:, 1:].sum())
    loss = total / max(1, count)
    return {"loss": loss, "ppl": math.exp(loss), "tokens": float(count)}


def apply_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0,
               target_modules: list[str] | str | None = None, seed: int = 0) -> nn.Module:
    """Wrap ``model`` with ``peft`` LoRA adapters (only they require grad afterwards). ``target_modules=None``
    lets ``peft`` pick for known architectures; for seqexplain's :class:`TransformerLM` it is ``["qkv", "out"]``.

    The adapters' random initialisation (``A``; ``B`` starts at zero) is drawn from the global generator seeded
    with ``seed`` inside :func:`torch.random.fork_rng`, so it depends on ``seed`` only — not on what ran before
    — and the caller's generator state is left as it was."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise InputError("LoRA needs the peft package: pip install 'seqexplain[train]'") from exc
    from seqexplain.models.transformer import TransformerLM

    if target_modules is None and isinstance(model, TransformerLM):
        target_modules = ["qkv", "out"]
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, cfg)


# ------------------------------------------------------------------------------------------------ checkpoints
def _trainable(model: nn.Module) -> dict[str, Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _latest_checkpoint(root: Path) -> Path | None:
    pointer = root / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["checkpoint"]
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"{pointer} is corrupt ({exc}); delete it to start over") from exc
    path = root / name
    return path if (path / "train_state.json").is_file() else None


def save_checkpoint(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                    step: int, result: TrainResult, config: TrainConfig, keep: int = 1,
                    seconds: float = 0.0) -> Path:
    """Write a complete checkpoint for ``step`` under ``root`` and point ``latest.json`` at it."""
    ckpt = root / f"step-{step}"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True)
    tensors = {n: p.detach().cpu().contiguous() for n, p in _trainable(model).items()}
    with atomic_path(ckpt / "trainable.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"step": str(step)})
    with atomic_path(ckpt / "optimizer.pt") as tmp:
        torch.save(optimizer.state_dict(), tmp)
    with atomic_path(ckpt / "rng.safetensors") as tmp:
        save_file({"torch": torch.get_rng_state(), "word_dropout": generator.get_state()}, str(tmp))
    state = {"step": step, "history": result.history, "seconds": seconds, "config": config.to_dict()}
    atomic_write_text(ckpt / "train_state.json", json.dumps(state, indent=2))
    atomic_write_text(root / "latest.json", json.dumps({"checkpoint": ckpt.name, "step": step}))
    olds = sorted((p for p in root.glob("step-*") if p.is_dir() and p != ckpt),
                  key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1)
    for old in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return ckpt


_NOT_DEFINING = ("log_every", "eval_every", "eval_batch_size", "checkpoint_every", "keep_checkpoints")


def defining_settings(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with a run that resumes it (everything but logging, evaluation and
    checkpointing)."""
    return {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in _NOT_DEFINING}


def _check_resumable(ckpt: Path, config: TrainConfig) -> None:
    """Raise :class:`ModelLoadError` when the checkpoint was made with other defining settings than ``config``
    (resuming it would silently mix two runs: another schedule, batch size or word dropout)."""
    state = json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))
    saved = {k: v for k, v in state.get("config", {}).items() if k not in _NOT_DEFINING}
    wanted = defining_settings(config)
    changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in changed)
        raise ModelLoadError(f"the checkpoint in {ckpt.parent} was trained with other settings ({detail}); use "
                             "another output folder or resume=False")


def load_checkpoint(ckpt: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; return the train state (step, history, seconds)."""
    params = _trainable(model)
    saved = load_file(str(ckpt / "trainable.safetensors"))
    if set(saved) != set(params):
        raise ModelLoadError(f"checkpoint {ckpt} holds other trainable parameters than the model "
                             f"({len(saved)} vs {len(params)}); use another out_dir or resume=False")
    with torch.no_grad():
        for name, p in params.items():
            if saved[name].shape != p.shape:
                raise ModelLoadError(f"checkpoint {ckpt}: {name} has shape {tuple(saved[name].shape)}, the model "
                                     f"{tuple(p.shape)}; use another out_dir or resume=False")
            p.copy_(saved[name].to(p.device))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location=_device(model)))
    rng = load_file(str(ckpt / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["word_dropout"])
    return json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))


def export_model(model: nn.Module, directory: Path) -> Path:
    """Save the trained model with ``save_pretrained`` (safetensors; a LoRA model saves its adapters)."""
    save = getattr(model, "save_pretrained", None)
    if save is None:
        raise InputError(f"{type(model).__name__} has no save_pretrained; save it yourself")
    save(str(directory))
    return directory


# ------------------------------------------------------------------------------------------------ training
class _Batches:
    """Step -> row indices, a function of (seed, step) only (module docstring)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise InputError(f"{n} training sequences are fewer than batch_size {batch_size}")
        self.n, self.bs, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            self._epoch = epoch
        return self._perm[i * self.bs : (i + 1) * self.bs]


def train_causal_lm(
    model: nn.Module,
    train: TokenData,
    config: TrainConfig,
    out_dir: Path | str | None = None,
    valid: TokenData | None = None,
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
    stop_after: int | None = None,
    export: bool = True,
) -> TrainResult:
    """Train ``model`` in place (module docstring). ``stop_after``: stop (after checkpointing) once this many
    steps are done in total, as if interrupted; a later call with ``resume=True`` continues to ``config.steps``.
    """
    cfg = config
    out = Path(out_dir) if out_dir is not None else None
    root = out / "checkpoints" if out is not None else None
    dev = _device(model)
    params = list(_trainable(model).values())
    if not params:
        raise InputError("the model has no parameter that requires grad")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    result = TrainResult()
    start = 0
    latest = _latest_checkpoint(root) if (root is not None and resume) else None
    if latest is not None:
        _check_resumable(latest, cfg)
        state = load_checkpoint(latest, model, optimizer, generator)
        start = int(state["step"])
        result.history = list(state["history"])
        result.seconds = float(state.get("seconds", 0.0))
        result.checkpoint = latest
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    writer = None
    if tensorboard and out is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=start if start else None)
    batches = _Batches(len(train), cfg.batch_size, cfg.seed)
    wd = cfg.word_dropout
    window_loss, window_n = 0.0, 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    model.train()
    bar = tqdm(range(start, end), desc="train" if wd is None else f"train (word dropout {wd.kind})",
               initial=start, total=cfg.steps, disable=not progress)
    try:
        for step in bar:
            lr = cfg.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = batches(step)
            ids = train.input_ids[rows].to(dev)
            vmask = train.valid[rows].to(dev)
            keep = None
            if wd is not None:
                k, applied = wd.sample(vmask.cpu(), generator)
                keep = k.to(dev) if applied else None
            loss = lm_loss(lm_logits(model, ids, vmask, keep), ids, vmask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            window_loss += float(loss.detach())
            window_n += 1
            done = step + 1
            is_log = cfg.log_every and done % cfg.log_every == 0
            is_eval = valid is not None and cfg.eval_every and done % cfg.eval_every == 0
            if is_log or is_eval or done == end:
                row: dict[str, float] = {"step": float(done), "lr": lr,
                                         "train_loss": window_loss / max(1, window_n),
                                         "seconds": result.seconds + time.perf_counter() - t0}
                if is_eval and valid is not None:
                    ev = evaluate_lm(model, valid, cfg.eval_batch_size)
                    row.update(valid_loss=ev["loss"], valid_ppl=ev["ppl"])
                result.history.append(row)
                if writer is not None:
                    writer.add_scalar("train/loss", row["train_loss"], done)
                    writer.add_scalar("train/lr", lr, done)
                    if "valid_loss" in row:
                        writer.add_scalar("valid/loss", row["valid_loss"], done)
                        writer.add_scalar("valid/ppl", row["valid_ppl"], done)
                bar.set_postfix(loss=f"{row['train_loss']:.4f}")
                window_loss, window_n = 0.0, 0
            if root is not None and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == end):
                result.checkpoint = save_checkpoint(root, model, optimizer, generator, done, result, cfg,
                                                    cfg.keep_checkpoints, result.seconds + time.perf_counter() - t0)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    result.seconds += time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    result.step = max(start, end)
    model.eval()
    if out is not None and export and result.step >= cfg.steps:
        result.model_dir = export_model(model, out / "model")
    return result
