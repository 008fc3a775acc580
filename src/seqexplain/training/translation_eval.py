"""Evaluation of a translation model: the (label-smoothed) cross-entropy of a batch under keep masks, the per-token
loss of a set of pairs (optionally under word dropout), greedy translation and corpus BLEU (sacrebleu)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from seqexplain.errors import InputError
from seqexplain.models.seq2seq import Seq2SeqTransformer
from seqexplain.training.translation_batches import EncodedPair, collate, make_batches, sample_keep


def batch_loss(model: Seq2SeqTransformer, batch: dict[str, torch.Tensor], src_keep: torch.Tensor,
               tgt_keep: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Mean label-smoothed cross-entropy of a batch under keep masks, and the number of target tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=src_keep, decoder_input_ids=batch["decoder_input_ids"],
                   decoder_attention_mask=tgt_keep).logits
    labels = batch["labels"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100,
                           label_smoothing=label_smoothing)
    return loss, int((labels != -100).sum())


@torch.no_grad()
def evaluate_loss(model: Seq2SeqTransformer, pairs: Sequence[EncodedPair], ids: dict[str, int],
                  batch_tokens: int = 8000, word_dropout: str | None = None, seed: int = 0) -> float:
    """Per-token cross-entropy (no label smoothing) of ``pairs``, optionally under word dropout applied to every
    batch (``mixture = 1``, seeded): the loss from random subsets of the context, a compatibility check. NaN when
    there is no pair to score."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    try:
        for idx in make_batches(pairs, batch_tokens, seed):
            b = collate(pairs, idx, ids)
            sk, _ = sample_keep(b["src_valid"], word_dropout, 1.0, gen)
            tk, _ = sample_keep(b["tgt_valid"], word_dropout, 1.0, gen)
            loss, n = batch_loss(model, b, sk, tk)
            total += float(loss) * n
            count += n
    finally:
        model.train(was)
    return total / count if count else float("nan")  # nothing scored: no loss, not a perfect 0


def translate(model: Seq2SeqTransformer, tokenizer: Any, sentences: Sequence[str], batch_size: int = 64,
              max_new_tokens: int = 80) -> list[str]:
    """Greedy translations of ``sentences`` (detokenised text)."""
    src = tokenizer(list(sentences), add_special_tokens=True)["input_ids"]
    limit = model.config.max_position_embeddings
    src = [s if len(s) <= limit else s[: limit - 1] + [model.config.eos_token_id] for s in src]
    out = model.greedy_generate(src, max_new_tokens=min(max_new_tokens, limit - 1), batch_size=batch_size)
    return [tokenizer.decode(o, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip() for o in out]


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU of detokenised text with sacrebleu's defaults (13a tokenisation, cased); ``(score, signature)``."""
    try:
        import sacrebleu
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("BLEU needs sacrebleu: pip install sacrebleu") from exc
    metric = sacrebleu.metrics.BLEU()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(metric.get_signature())
