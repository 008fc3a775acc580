"""Training and compatibility fine-tuning of causal language models with word dropout.

:func:`train_causal_lm` trains any attention module with the Hugging Face causal-LM calling convention (a Hugging
Face model, a ``peft`` LoRA model, or :class:`seqexplain.models.transformer.TransformerLM`; not an RNN LM, which
takes no 4-D attention mask: :func:`seqexplain.training.lm.train_lm` trains those) with the standard
next-token loss (mean cross-entropy over the predicted, non-padding tokens). With a
:class:`~seqexplain.training.word_dropout.WordDropout`, a batch drawn for dropout is run with the 4-D attention mask
of its keep masks (:func:`seqexplain.training.word_dropout.causal_attention_mask`); the loss is unchanged.

* **Optimiser**: AdamW over the parameters that require grad (so a LoRA model trains its adapters only);
  learning rate ``lr`` with linear warm-up over ``warmup_steps`` and then ``schedule``: ``constant``,
  ``linear`` (to 0 at 0-based step ``steps``, one after the last, as transformers' schedules do;
  :class:`~seqexplain.training.compatible_config.TrainConfig` documents ``lr_zero_at_last_step``), ``cosine`` or
  ``inverse_sqrt`` (``lr * sqrt(warmup / step)``, fairseq's).
* **Data order** (:class:`seqexplain.training.causal_lm_data.StepBatches`): epoch ``e`` visits the rows in
  ``randperm(N)`` seeded with ``seed + e``; step ``s`` takes batch ``s mod (N // batch_size)`` of epoch
  ``s // (N // batch_size)`` (the last partial batch is skipped), so the order depends on the step alone.
* **Randomness**: word dropout draws from its own ``torch.Generator`` seeded with ``seed``; ``nn.Dropout``
  draws from the global generator, seeded with ``seed`` at the start.
* **Checkpoints** (every ``checkpoint_every`` steps and at the end; layout in
  :mod:`seqexplain.training.compatible_checkpoints`) in ``<out_dir>/checkpoints/step-<n>/`` hold the trainable
  parameters, the optimiser state, the global and word-dropout generator states and the train state;
  ``resume=True`` restores all of it, so an interrupted run continues exactly as the uninterrupted one (same
  batches, masks, dropout and losses). ``resume=False`` starts over and deletes the checkpoints already in
  ``<out_dir>/checkpoints`` first: they belong to the run being replaced, and one kept beside this run's (with
  ``keep_checkpoints`` ≥ 2, or a later ``resume=True`` before this run's first checkpoint) would pass for it.
* **Logs**: TensorBoard (``<out_dir>/tensorboard``: ``train/loss``, ``train/lr``, ``valid/loss``,
  ``valid/ppl``) and a tqdm progress bar. The final model goes to ``<out_dir>/model`` (``save_pretrained``:
  safetensors).

The pieces: :class:`~seqexplain.training.causal_lm_data.TokenData` and the batch order in
:mod:`seqexplain.training.causal_lm_data`; logits, loss and ``evaluate_lm`` in
:mod:`seqexplain.training.causal_lm_loss`; ``TrainConfig`` / ``TrainResult`` in
:mod:`seqexplain.training.compatible_config`; checkpoints in :mod:`seqexplain.training.compatible_checkpoints`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from seqexplain.errors import InputError
from seqexplain.training.causal_lm_data import StepBatches, TokenData
from seqexplain.training.causal_lm_loss import evaluate_lm, lm_logits, lm_loss, model_device
from seqexplain.training.compatible_checkpoints import (
    check_resumable,
    clear_checkpoints,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    trainable_parameters,
)
from seqexplain.training.compatible_config import TrainConfig, TrainResult


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
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft asks transformers a deprecated question (is_gradient_checkpointing): not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*")
        torch.manual_seed(seed)
        return get_peft_model(model, cfg)



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
    dev = model_device(model)
    params = list(trainable_parameters(model).values())
    if not params:
        raise InputError("the model has no parameter that requires grad")
    short = (train.valid.sum(1) < 2).nonzero().flatten().tolist()
    if short:  # no next token to predict: the batch's mean loss is 0/0 = nan, which the logged loss would average in
        raise InputError(f"{len(short)} training sequence(s) have fewer than 2 tokens (nothing to predict; the first "
                         f"is row {short[0]}); leave them out")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    result = TrainResult()
    start = 0
    if root is not None and not resume:
        clear_checkpoints(root)
    latest = latest_checkpoint(root) if (root is not None and resume) else None
    if latest is not None:
        check_resumable(latest, cfg)
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
    batches = StepBatches(len(train), cfg.batch_size, cfg.seed)
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
