"""Training a small translation model (:class:`seqexplain.models.seq2seq.Seq2SeqTransformer`) on Multi30K, with
compatibility word dropout (Vafa et al. 2021), on CPU.

Recipe:

* a joint BPE tokenizer (:func:`seqexplain.data.tokenizers.train_bpe_tokenizer`) trained on the training sources
  and targets (:mod:`seqexplain.training.translation_batches`: encoding, batches, word-dropout keep masks);
  source ids end with ``</s>``; decoder inputs are ``<s> y_1 … y_n``, labels ``y_1 … y_n </s>``;
* pairs longer than ``max_len`` tokens on either side are left out of training; batches hold at most
  ``batch_tokens`` padded source + target tokens and are built from length-sorted pairs (with a seeded random
  tie-break), then shuffled, per epoch;
* loss: cross-entropy with ``label_smoothing``, mean over target tokens; AdamW (β = 0.9, 0.98), gradients clipped
  to ``max_grad_norm``; learning rate of 0-based step ``s`` of ``T`` with ``W = max(1, warmup_steps)``:
  ``lr·(s + 1)/W`` while ``s < W``, then ``lr·(T − s)/(T − W)`` (``schedule="linear"``, transformers' linear
  schedule after the warm-up: the last step has ``lr/(T − W)``), or inverse square root (``"inverse_sqrt"``:
  ``lr·sqrt(W/(s + 1))`` after the warm-up), or (``"linear_time"``, with ``max_minutes``) linear decay in the
  *larger* of the step fraction and the fraction of the time budget spent, so a run on a busy CPU still ends
  annealed when the budget runs out (the schedule then depends on the machine's speed, so a resumed run no longer
  repeats an uninterrupted one exactly);
* **compatibility word dropout** (``word_dropout`` = ``"uniform_length"`` / ``"inverse_length"`` / None):
  independently for the source and for the decoder inputs, with probability ``word_dropout_mixture`` a batch gets
  keep masks drawn by :class:`seqexplain.training.word_dropout.WordDropout`; they are passed to the model as its 2-D
  keep masks, so encoder self-attention, cross-attention and decoder self-attention all honour them (a dropped token
  is invisible to the others and sees itself). This follows the authors' fairseq code, where the encoder-side and
  the decoder-side draws are separate;
* every step seeds dropout and word dropout from ``(seed, step)``, and the batch order of an epoch from
  ``(seed, epoch)``, so a resumed run repeats the uninterrupted one.

Evaluation (validation loss, greedy translation, BLEU) is in :mod:`seqexplain.training.translation_eval`.

Outputs under ``out_dir``: ``model/`` (weights, ``config.json``, tokenizer, ``training.json`` with the training
configuration and history, ``results.json`` with BLEU), ``checkpoint/`` (the same plus the optimizer state and
``train_state.json``; written every ``checkpoint_every`` steps and at each epoch's end; ``resume=True`` continues
from it) and ``tb/`` (TensorBoard: train loss, learning rate, validation loss and BLEU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_write_text
from seqexplain.data.multi30k import ParallelCorpus, read_multi30k
from seqexplain.data.tokenizers import load_tokenizer, save_tokenizer, train_bpe_tokenizer
from seqexplain.errors import OTHER_FOLDER, InputError, ModelLoadError
from seqexplain.models.seq2seq import Seq2SeqTransformer, load_seq2seq
from seqexplain.models.seq2seq_config import Seq2SeqConfig
from seqexplain.training.optimizer_state import load_optimizer_state, save_optimizer_state
from seqexplain.training.translation_batches import (
    EncodedPair,
    collate,
    encode_pairs,
    make_batches,
    sample_keep,
    special_ids,
)
from seqexplain.training.translation_eval import batch_loss, bleu, evaluate_loss, translate


@dataclass
class TranslationTrainConfig:
    """Everything that defines a translation training run (model size, data, optimisation, word dropout)."""

    src_lang: str = "de"
    tgt_lang: str = "en"
    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    positions: str = "sinusoidal"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_position_embeddings: int = 128
    max_train_examples: int | None = None
    max_len: int = 64
    batch_tokens: int = 6000
    epochs: int = 4
    lr: float = 1e-3
    warmup_steps: int = 300
    schedule: str = "linear"
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    max_grad_norm: float = 1.0
    word_dropout: str | None = "inverse_length"
    word_dropout_mixture: float = 0.5
    max_minutes: float | None = None
    checkpoint_every: int = 200
    log_every: int = 20
    valid_bleu_examples: int = 200
    test_bleu_examples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "inverse_sqrt", "linear_time"):
            raise InputError(f"schedule must be 'linear', 'inverse_sqrt' or 'linear_time', got {self.schedule!r}")
        if self.schedule == "linear_time" and self.max_minutes is None:
            raise InputError("schedule='linear_time' needs max_minutes (the time budget it decays over)")
        if self.word_dropout not in (None, "uniform_length", "inverse_length"):
            raise InputError(f"word_dropout must be None, 'uniform_length' or 'inverse_length', got "
                             f"{self.word_dropout!r}")
        if not 0.0 <= self.word_dropout_mixture <= 1.0:
            raise InputError(f"word_dropout_mixture is a probability, got {self.word_dropout_mixture}")
        if self.max_len + 1 > self.max_position_embeddings:
            raise InputError(f"max_len + 1 ({self.max_len + 1}) exceeds max_position_embeddings "
                             f"({self.max_position_embeddings})")
        for name in ("epochs", "batch_tokens", "vocab_size", "checkpoint_every", "log_every", "max_len"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.max_grad_norm > 0) or self.warmup_steps < 0:
            raise InputError(f"lr and max_grad_norm must be > 0 and warmup_steps >= 0, got {self.lr}, "
                             f"{self.max_grad_norm}, {self.warmup_steps}")
        for name in ("label_smoothing", "dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{name} is a probability in [0, 1), got {getattr(self, name)}")
        if self.max_train_examples is not None and self.max_train_examples < 1:
            raise InputError(f"max_train_examples must be >= 1 or None (all), got {self.max_train_examples}")
        for name in ("valid_bleu_examples", "test_bleu_examples"):  # a negative count would slice from the end
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_minutes is not None and not self.max_minutes >= 0:  # 0: stop after the first step
            raise InputError(f"max_minutes must be >= 0 or None, got {self.max_minutes}")

    def model_config(self, vocab_size: int, ids: dict[str, int]) -> Seq2SeqConfig:
        return Seq2SeqConfig(
            vocab_size=vocab_size, d_model=self.d_model, n_heads=self.n_heads, ffn_dim=self.ffn_dim,
            encoder_layers=self.encoder_layers, decoder_layers=self.decoder_layers,
            max_position_embeddings=self.max_position_embeddings, positions=self.positions,  # type: ignore[arg-type]
            dropout=self.dropout, attention_dropout=self.attention_dropout, pad_token_id=ids["pad"],
            bos_token_id=ids["bos"], eos_token_id=ids["eos"], decoder_start_token_id=ids["bos"],
            name_or_path=f"seqexplain-multi30k-{self.src_lang}-{self.tgt_lang}",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranslationTrainConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TranslationTrainResult:
    """What a run produced: the model directory, per-epoch history, BLEU and timing."""

    model_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    test_bleu: float | None = None
    test_bleu_signature: str = ""
    train_seconds: float = 0.0
    steps: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["model_dir"] = str(self.model_dir)
        return out


# ------------------------------------------------------------------------------------------- checkpoints
def _write_model_dir(directory: Path, model: Seq2SeqTransformer, tokenizer: Any, cfg: TranslationTrainConfig,
                     history: list[dict[str, float]]) -> None:
    model.save(directory)
    save_tokenizer(tokenizer, directory)
    atomic_write_text(directory / "training.json", json.dumps({"train_config": asdict(cfg), "history": history},
                                                              indent=2))


def load_translation_model(directory: Path | str, device: str | torch.device | None = None
                           ) -> tuple[Seq2SeqTransformer, Any]:
    """``(model, tokenizer)`` from a model directory written by :func:`train_translation` (``<out>/model``)."""
    path = Path(directory)
    return load_seq2seq(path, device), load_tokenizer(path)


# ---------------------------------------------------------------------------------------------- training
def _lr_factor(cfg: TranslationTrainConfig, step: int, total: int, seconds: float = 0.0) -> float:
    warm = max(1, cfg.warmup_steps)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "inverse_sqrt":
        return math.sqrt(warm / (step + 1))
    by_steps = max(0.0, (total - step) / max(1, total - warm))
    if cfg.schedule == "linear_time" and cfg.max_minutes is not None:
        return max(0.0, min(by_steps, 1.0 - seconds / (cfg.max_minutes * 60)))
    return by_steps


_NOT_DEFINING = ("max_minutes", "checkpoint_every", "log_every", "valid_bleu_examples", "test_bleu_examples")


def _defining(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint must share with a run that resumes it (not the time budget or logging)."""
    return {k: v for k, v in cfg.items() if k not in _NOT_DEFINING}


def _load_corpora(cfg: TranslationTrainConfig, data_root: Path | str | None
                  ) -> tuple[ParallelCorpus, ParallelCorpus, ParallelCorpus]:
    train = read_multi30k("train", cfg.src_lang, cfg.tgt_lang, data_root).subset(cfg.max_train_examples)
    valid = read_multi30k("val", cfg.src_lang, cfg.tgt_lang, data_root)
    test = read_multi30k("test", cfg.src_lang, cfg.tgt_lang, data_root)
    return train, valid, test


def train_translation(config: TranslationTrainConfig, out_dir: Path | str, data_root: Path | str | None = None,
                      resume: bool = True, progress: bool = True) -> TranslationTrainResult:
    """Train a translation model on Multi30K ``config.src_lang → config.tgt_lang`` (module docstring), evaluate
    test BLEU and write everything under ``out_dir``. With ``resume`` and a checkpoint in ``out_dir``, continue it
    (the checkpoint's configuration must equal ``config``)."""
    cfg = config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, model_dir = out / "checkpoint", out / "model"
    t_start = time.perf_counter()
    train_c, valid_c, test_c = _load_corpora(cfg, data_root)

    state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "history": [], "elapsed": 0.0}
    resuming = resume and (ckpt / "train_state.json").is_file()
    if resuming:
        state = json.loads((ckpt / "train_state.json").read_text(encoding="utf-8"))
        if _defining(state.get("train_config", {})) != _defining(json.loads(json.dumps(asdict(cfg)))):
            raise ModelLoadError(f"the checkpoint in {ckpt} was trained with another configuration; "
                                 f"{OTHER_FOLDER}")
        model, tokenizer = load_translation_model(ckpt)
    else:
        torch.manual_seed(cfg.seed)
        tokenizer = train_bpe_tokenizer(train_c.source + train_c.target, vocab_size=cfg.vocab_size)
        model = Seq2SeqTransformer(cfg.model_config(len(tokenizer), special_ids(tokenizer)))
    ids = special_ids(tokenizer)
    model.train()

    pairs = [p for p in encode_pairs(tokenizer, train_c) if len(p.src) <= cfg.max_len and len(p.tgt) < cfg.max_len]
    if not pairs:
        raise InputError(f"no training pair is at most {cfg.max_len} tokens long; raise max_len")
    valid_pairs = [p for p in encode_pairs(tokenizer, valid_c)
                   if len(p.src) <= cfg.max_position_embeddings and len(p.tgt) < cfg.max_position_embeddings]
    per_epoch = len(make_batches(pairs, cfg.batch_tokens, cfg.seed))
    total_steps = per_epoch * cfg.epochs

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)
    if resuming:
        load_optimizer_state(opt, ckpt)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"), purge_step=int(state["step"]) if resuming else None)
    history: list[dict[str, float]] = list(state["history"])
    step, elapsed0 = int(state["step"]), float(state["elapsed"])
    seg_start = time.perf_counter()
    stopped = False

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - seg_start

    def save_checkpoint(epoch: int, batch: int) -> None:
        # the previous train_state.json goes first: a kill while the weights or optimizer state are rewritten must
        # not leave them paired with the previous step (a resume would repeat those steps on the newer weights)
        (ckpt / "train_state.json").unlink(missing_ok=True)
        _write_model_dir(ckpt, model, tokenizer, cfg, history)
        save_optimizer_state(opt, ckpt)
        st = {"epoch": epoch, "batch": batch, "step": step, "history": history, "elapsed": elapsed(),
              "train_config": asdict(cfg)}
        atomic_write_text(ckpt / "train_state.json", json.dumps(st, indent=2))  # last: marks a complete checkpoint

    try:
        for epoch in range(int(state["epoch"]), cfg.epochs):
            batches = make_batches(pairs, cfg.batch_tokens, cfg.seed * 1000 + epoch)
            first = int(state["batch"]) if epoch == int(state["epoch"]) else 0
            run_loss, run_n, ep_loss, ep_n = 0.0, 0, 0.0, 0
            bi = first - 1
            bar = tqdm(range(first, len(batches)), desc=f"{cfg.src_lang}→{cfg.tgt_lang} epoch {epoch + 1}/"
                       f"{cfg.epochs}", disable=not progress, leave=False, initial=first, total=len(batches))
            for bi in bar:
                torch.manual_seed(cfg.seed * 1_000_003 + step)
                gen = torch.Generator().manual_seed(cfg.seed * 7_000_003 + step)
                b = collate(pairs, batches[bi], ids)
                sk, _ = sample_keep(b["src_valid"], cfg.word_dropout, cfg.word_dropout_mixture, gen)
                tk, _ = sample_keep(b["tgt_valid"], cfg.word_dropout, cfg.word_dropout_mixture, gen)
                lr = cfg.lr * _lr_factor(cfg, step, total_steps, elapsed())
                for g in opt.param_groups:
                    g["lr"] = lr
                loss, n = batch_loss(model, b, sk, tk, cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                step += 1
                value = float(loss.detach())
                run_loss += value * n
                run_n += n
                ep_loss += value * n
                ep_n += n
                if step % cfg.log_every == 0:
                    writer.add_scalar("train/loss", run_loss / run_n, step)
                    writer.add_scalar("train/lr", lr, step)
                    bar.set_postfix(loss=f"{run_loss / run_n:.3f}", lr=f"{lr:.2e}")
                    run_loss, run_n = 0.0, 0
                timeout = cfg.max_minutes is not None and elapsed() > cfg.max_minutes * 60
                if step % cfg.checkpoint_every == 0 or timeout:
                    save_checkpoint(epoch, bi + 1)
                if timeout:
                    stopped = True
                    break
            bar.close()
            row = _epoch_row(model, tokenizer, cfg, epoch, step, ep_loss / max(1, ep_n), valid_pairs, valid_c, ids,
                             elapsed())
            complete = bi + 1 >= len(batches)
            row["partial"] = 0.0 if complete else 1.0
            history.append(row)
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    writer.add_scalar(f"epoch/{k}", v, step)
            if complete:
                save_checkpoint(epoch + 1, 0)
            else:
                save_checkpoint(epoch, bi + 1)
            if stopped:
                break
        train_seconds = elapsed()
        model.eval()
        test_src, test_ref = test_c.source, test_c.target
        if cfg.test_bleu_examples is not None:
            test_src, test_ref = test_src[: cfg.test_bleu_examples], test_ref[: cfg.test_bleu_examples]
        hyps = translate(model, tokenizer, test_src)
        score, signature = bleu(hyps, test_ref)
        writer.add_scalar("test/bleu", score, step)
    finally:
        writer.close()
    _write_model_dir(model_dir, model, tokenizer, cfg, history)
    result = TranslationTrainResult(model_dir=model_dir, history=history, test_bleu=score,
                                    test_bleu_signature=signature, train_seconds=train_seconds, steps=step,
                                    stopped_early=stopped)
    summary = {**result.to_dict(), "total_seconds": time.perf_counter() - t_start, "train_pairs": len(pairs),
               "test_pairs": len(test_src), "parameters": sum(p.numel() for p in model.parameters()),
               "examples": [{"source": s, "reference": r, "hypothesis": h}
                            for s, r, h in zip(test_src[:5], test_ref[:5], hyps[:5], strict=True)]}
    atomic_write_text(model_dir / "results.json", json.dumps(summary, indent=2, ensure_ascii=False))
    atomic_write_text(model_dir / "test_hypotheses.txt", "\n".join(hyps) + "\n")
    return result


def _epoch_row(model: Seq2SeqTransformer, tokenizer: Any, cfg: TranslationTrainConfig, epoch: int, step: int,
               train_loss: float, valid_pairs: list[EncodedPair], valid_c: ParallelCorpus, ids: dict[str, int],
               seconds: float) -> dict[str, float]:
    row: dict[str, float] = {"epoch": epoch + 1, "step": step, "train_loss": train_loss, "seconds": seconds}
    row["valid_loss"] = evaluate_loss(model, valid_pairs, ids)
    if cfg.word_dropout is not None:
        row["valid_loss_word_dropout"] = evaluate_loss(model, valid_pairs, ids, word_dropout=cfg.word_dropout)
    if cfg.valid_bleu_examples:
        n = cfg.valid_bleu_examples
        hyps = translate(model, tokenizer, valid_c.source[:n])
        row["valid_bleu"] = bleu(hyps, valid_c.target[:n])[0]
    return row
