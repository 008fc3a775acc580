"""Training and evaluating the Snell et al. LSTM translator (:mod:`seqexplain.models.snell_translation`).

Pairs are ``(source ids, target ids)``, each ending with ``</s>``. A batch pads sources and decoder inputs
(``<s>`` + target without its last token) with ``<pad>`` and passes keep masks of the real tokens; the loss is the
mean cross-entropy of the real target tokens. Training is :func:`seqexplain.training.snell.run_schedule` (Adam,
checkpoint schedule, exact resumption including dropout's RNG state). Evaluation: teacher-forced token accuracy and
perplexity ``exp(mean NLL)`` over the real target tokens, and corpus BLEU (sacrebleu) of beam-search translations.
Every batch runs on the model's device (``device``: :func:`seqexplain.training.snell.resolve_device`); numbers leave
as Python floats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqexplain.errors import InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig
from seqexplain.training.snell import (
    SnellTrainConfig,
    load_run_weights,
    model_device,
    resolve_device,
    run_schedule,
)
from seqexplain.training.translation_eval import bleu

Pairs = Sequence[tuple[Sequence[int], Sequence[int]]]


def collate(pairs: Pairs, idx: Sequence[int] | np.ndarray, pad: int, start: int) -> dict[str, torch.Tensor]:
    """Padded ``input_ids``, ``attention_mask``, ``decoder_input_ids``, ``decoder_attention_mask`` and ``labels``
    (``-100`` at padding) of the pairs ``idx``."""
    src = [list(pairs[i][0]) for i in idx]
    tgt = [list(pairs[i][1]) for i in idx]
    n_s, n_t = max(map(len, src)), max(map(len, tgt))
    out = {"input_ids": torch.full((len(src), n_s), pad), "decoder_input_ids": torch.full((len(src), n_t), pad),
           "labels": torch.full((len(src), n_t), -100)}
    for r, (s, t) in enumerate(zip(src, tgt, strict=True)):
        out["input_ids"][r, : len(s)] = torch.tensor(s)
        out["decoder_input_ids"][r, : len(t)] = torch.tensor([start, *t[:-1]])
        out["labels"][r, : len(t)] = torch.tensor(t)
    out["attention_mask"] = (torch.arange(n_s).view(1, -1) < torch.tensor([len(s) for s in src]).view(-1, 1)).long()
    out["decoder_attention_mask"] = (out["labels"] != -100).long()
    return out


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A collated batch with every tensor on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


def batch_nll(model: SnellTranslator, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed NLL, logits)`` of a collated batch (on the model's device)."""
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(),
                                            ignore_index=-100, reduction="sum")
    return nll, logits


def _check_pairs(pairs: Pairs) -> None:
    """:class:`InputError` for no pairs or a pair with an empty source or target (each ends with ``</s>``)."""
    if not pairs:
        raise InputError("no pairs to train on or evaluate; give at least one (source ids, target ids) pair")
    for i, (src, tgt) in enumerate(pairs):
        if not src or not tgt:
            raise InputError(f"pair {i} has an empty {'source' if not src else 'target'}; every side ends with </s>")


def train_snell_translator(model_config: SnellTranslatorConfig, train: Pairs, config: SnellTrainConfig,
                           run_dir: Path | str, vocab_hash: str, *, stop_at: int | None = None,
                           progress: bool = False, device: str | torch.device = "cpu") -> SnellTranslator:
    """Train (or resume) a translator run in ``run_dir`` on ``device`` (module docstring)."""
    _check_pairs(train)
    torch.manual_seed(config.seed)
    model = SnellTranslator(model_config).to(resolve_device(device))
    pad, start = model_config.pad_token_id, model_config.decoder_start_token_id

    def loss(net: torch.nn.Module, idx: np.ndarray) -> torch.Tensor:
        batch = to_device(collate(train, idx, pad, start), model_device(net))
        nll, _ = batch_nll(net, batch)  # type: ignore[arg-type]
        return nll / (batch["labels"] != -100).sum()

    meta = {"model": model_config.to_dict(), "vocab_hash": vocab_hash, "n_train": len(train)}
    return run_schedule(model, config, run_dir, meta, len(train), loss, stop_at=stop_at,  # type: ignore[return-value]
                        progress=progress)


def load_translator(run_dir: Path | str, step: int, device: str | torch.device = "cpu") -> SnellTranslator:
    """The translator of a run folder with the weights of checkpoint ``step`` on ``device`` (eval mode)."""
    return load_run_weights(run_dir, step, lambda cfg: SnellTranslator(SnellTranslatorConfig.from_dict(cfg)), device)


def teacher_forced(model: SnellTranslator, pairs: Pairs, batch_size: int = 64) -> dict[str, float]:
    """``{"accuracy", "perplexity", "tokens"}`` over the real target tokens, dropout off."""
    _check_pairs(pairs)
    cfg = model.config
    nll, correct, total = 0.0, 0, 0
    with torch.no_grad(), eval_mode(model):
        for s in range(0, len(pairs), batch_size):
            batch = to_device(collate(pairs, range(s, min(s + batch_size, len(pairs))), cfg.pad_token_id,
                                      cfg.decoder_start_token_id), model_device(model))
            part, logits = batch_nll(model, batch)
            real = batch["labels"] != -100
            nll += float(part)
            correct += int(((logits.argmax(-1) == batch["labels"]) & real).sum())
            total += int(real.sum())
    return {"accuracy": correct / total, "perplexity": math.exp(nll / total), "tokens": float(total)}


def beam_bleu(model: SnellTranslator, tokenizer: Any, sources: Sequence[Sequence[int]], references: Sequence[str],
              beam: int = 5, max_len: int = 60) -> tuple[float, str, list[str], int]:
    """Corpus BLEU (sacrebleu) of beam-search translations of ``sources``; ``(score, signature, hypotheses,
    n_cut)``, ``n_cut`` counting translations cut off at ``max_len`` without ``</s>`` (they are scored as they
    are, with a warning)."""
    hyps, n_cut = [], 0
    with eval_mode(model):
        for s in sources:
            ids, ended = model.beam_search_ended(list(s), beam, max_len)
            hyps.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
            n_cut += not ended
    if n_cut:
        warnings.warn(f"{n_cut} of {len(hyps)} beam-search translations reached max_len={max_len} "
                      "without </s> and are scored cut off", UserWarning, stacklevel=2)
    score, sig = bleu(hyps, references)
    return score, sig, hyps, n_cut
