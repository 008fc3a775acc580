"""Vafa et al. (2021) LM recipes (:mod:`seqexplain.experiments.vafa2021_lm`): the models they rationalize.

* :func:`load_lm`: SmolLM2-135M-Instruct as shipped, or (``quick``) a tiny random Llama with a byte-level BPE
  tokenizer trained in code; optionally made **compatible** (:func:`compatible_finetune`), wrapped as a causal
  :class:`~seqexplain.models.hf.HFModel` in a :class:`LoadedModel` (with what made it: the result stores' stamp).
* :func:`compatible_finetune`: LoRA adapters + ``uniform_length`` word dropout on half the batches
  (:mod:`seqexplain.training.compatible`) on WikiText-2 *valid*; the adapters are merged before rationalizing and
  the run is cached in ``<out>/compatible-<steps>steps`` (resumable; its ``training.json`` claims it for the base
  model, the fine-tune's settings and the data: a run with another is refused). :func:`held_out_losses` measures the
  compatibility on WikiText-2 *test* (full context vs word dropout) before and after; :func:`compatibility_note`
  writes it as a sentence for the tables.
* :func:`leakage_check`: how many evaluated texts share an 8-word window with the training text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.data.paths import require_data
from seqexplain.errors import DataError
from seqexplain.experiments.vafa2021_lm_settings import Settings
from seqexplain.models.hf import HFAdapter, HFModel
from seqexplain.runs.claims import DATA_KEY, claim_folder, data_fingerprint, weights_fingerprint


# =========================================================================== models
def _quick_tokenizer(texts: Sequence[str], vocab_size: int = 1500) -> Any:
    """A byte-level BPE fast tokenizer trained on ``texts`` (no special tokens added when encoding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def _tiny_llama(tokenizer: Any, seed: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


def training_text(root: Path) -> str:
    return (require_data("wikitext2", root) / "valid.txt").read_text(encoding="utf-8")


def _training_rows(tokenizer: Any, text: str, length: int) -> list[list[int]]:
    """WikiText-2 paragraphs (the lines of text) tokenized and packed into rows of ``length`` tokens."""
    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("="):  # blank lines and section headings
            continue
        ids.extend(tokenizer.encode(line, add_special_tokens=False))
        if eos is not None:
            ids.append(int(eos))
    return [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def leakage_check(eval_texts: Iterable[str], train_text: str, n: int = 8) -> dict[str, int]:
    """How many evaluated texts share an ``n``-word window (lower-cased words) with the training text."""
    train = _words(train_text)
    grams = {tuple(train[i : i + n]) for i in range(len(train) - n + 1)}
    texts = list(eval_texts)
    hits = 0
    for t in texts:
        w = _words(t)
        if any(tuple(w[i : i + n]) in grams for i in range(len(w) - n + 1)):
            hits += 1
    return {"texts": len(texts), "with_shared_window": hits, "window_words": n}


def _merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    merge = getattr(model, "merge_and_unload", None)
    return merge() if callable(merge) else model


def base_model_identity(model: torch.nn.Module, tokenizer: Any, name: str) -> dict[str, Any]:
    """What a fine-tune starts from: the model's name, the sha256 of its weights
    (:func:`~seqexplain.runs.claims.weights_fingerprint`: the same architecture with other weights differs) and of
    its tokenizer's vocabulary and special tokens (the quick model's tokenizer is trained on the evaluated texts, so
    two recipes' quick models differ there). Its config is left out: the weights pin what matters, and the config's
    serialisation changes with the transformers version."""
    specials = {k: getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad", "unk")}
    return {"name": name, "weights_sha256": weights_fingerprint(model),
            "tokenizer_sha256": data_fingerprint([sorted(tokenizer.get_vocab().items()), specials])}


def _claim(out_dir: Path, base: dict[str, Any], s: Settings, data: Any) -> list[str]:
    """Record in ``out_dir/training.json`` what the fine-tune in ``out_dir`` is made from (the base model's
    identity, the settings that define the fine-tune and its check, the sha256 of the training and held-out rows),
    or raise :class:`InputError` naming what differs: the LoRA checkpoints there are resumed (a finished run is not
    retrained) and the held-out losses in ``compatibility.json`` reused. A folder made before this claim (it holds
    checkpoints or ``compatibility.json`` but no claim) is claimed now, with the returned warning."""
    made = (out_dir / "compatibility.json").is_file() or (out_dir / "checkpoints" / "latest.json").is_file()
    return claim_folder(out_dir / "training.json",
                        {"base_model": base, "settings": {**s.compatible_settings(), "quick": s.quick,
                                                          "eval_rows": s.eval_rows}, DATA_KEY: data_fingerprint(data)},
                        "a compatibility fine-tune", of="base model, settings or data", unclaimed_contents=made)


def compatible_finetune(model: torch.nn.Module, tokenizer: Any, out_dir: Path, root: Path, s: Settings,
                        progress: bool = True, *, base: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """LoRA + word-dropout fine-tune of ``model`` (named ``base``) on WikiText-2 valid (module docstring);
    resumable in ``out_dir``, which is claimed for this base model, these settings and data first (:func:`_claim`).
    Returns the merged model and a summary (steps, seconds, losses, the held-out compatibility check of
    :func:`held_out_losses` before and after, cached in ``out_dir/compatibility.json``, and the claim's warnings)."""
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.compatible import apply_lora, train_causal_lm
    from seqexplain.training.compatible_config import TrainConfig
    from seqexplain.training.word_dropout import WordDropout

    text = training_text(root)
    rows = _training_rows(tokenizer, text, s.train_length)
    if s.quick:
        rows = rows[: s.train_batch * 4]
    if len(rows) < s.train_batch:
        raise DataError("WikiText-2 valid gives too few training rows for the compatibility fine-tune")
    notes = _claim(out_dir, base_model_identity(model, tokenizer, base), s,
                   {"train": rows, "held_out": held_out_rows(tokenizer, root, s)})
    train = TokenData.from_lists(rows, pad_token_id=int(tokenizer.pad_token_id or 0))
    check_file = out_dir / "compatibility.json"
    check = json.loads(check_file.read_text(encoding="utf-8")) if check_file.is_file() else {}
    if "shipped" not in check:
        check["shipped"] = held_out_losses(model, tokenizer, root, s)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(check_file, json.dumps(check, indent=2))
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = apply_lora(model, r=s.lora_r, alpha=s.lora_alpha, target_modules=target_modules, seed=s.seed)
    cfg = TrainConfig(steps=s.train_steps, batch_size=s.train_batch, lr=s.train_lr, warmup_steps=min(10, s.train_steps),
                      schedule="linear", max_grad_norm=1.0, seed=s.seed, log_every=10,
                      checkpoint_every=10, word_dropout=WordDropout(kind="uniform_length", mixture=s.mixture),
                      lr_zero_at_last_step=True)  # the schedule the recorded results were trained with
    result = train_causal_lm(lora, train, cfg, out_dir=out_dir, resume=True, progress=progress, tensorboard=False,
                             export=False)
    merged = _merge_lora(lora).eval()
    if "compatible" not in check and result.step >= s.train_steps:
        check["compatible"] = held_out_losses(merged, tokenizer, root, s)
        atomic_write_text(check_file, json.dumps(check, indent=2))
    for p in merged.parameters():
        p.requires_grad_(True)
    summary = {"steps": result.step, "train_seconds": round(result.seconds, 1), "rows": len(rows),
               "row_tokens": s.train_length, "batch_size": s.train_batch, "lr": s.train_lr, "lora_r": s.lora_r,
               "word_dropout": "uniform_length", "mixture": s.mixture,
               "loss_first": result.history[0]["train_loss"] if result.history else None,
               "loss_last": result.history[-1]["train_loss"] if result.history else None,
               "held_out": check, "warnings": notes}
    return merged, summary


def held_out_rows(tokenizer: Any, root: Path, s: Settings) -> list[list[int]]:
    """The first ``s.eval_rows`` rows of WikiText-2 *test*, packed like the training rows."""
    text = (require_data("wikitext2", root) / "test.txt").read_text(encoding="utf-8")
    rows = _training_rows(tokenizer, text, s.train_length)[: s.eval_rows]
    if not rows:
        raise DataError("WikiText-2 test gives no held-out rows for the compatibility check")
    return rows


def held_out_losses(model: torch.nn.Module, tokenizer: Any, root: Path, s: Settings) -> dict[str, Any]:
    """Per-token loss of ``model`` on the first ``s.eval_rows`` rows of WikiText-2 *test* (packed like the
    training rows; never trained on), with the full context and with ``uniform_length`` word dropout (seeded):
    the gap between the two is how far the model is from compatible."""
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.causal_lm_loss import evaluate_lm

    rows = held_out_rows(tokenizer, root, s)
    data = TokenData.from_lists(rows, pad_token_id=int(tokenizer.pad_token_id or 0))
    full = evaluate_lm(model, data, batch_size=8)
    dropped = evaluate_lm(model, data, batch_size=8, word_dropout="uniform_length", seed=s.seed)
    return {"rows": len(rows), "tokens": full["tokens"], "loss_full": full["loss"], "ppl_full": full["ppl"],
            "loss_word_dropout": dropped["loss"], "ppl_word_dropout": dropped["ppl"]}


def compatibility_note(loaded: LoadedModel) -> str:
    """A sentence on the fine-tune and its held-out compatibility check (empty for a shipped model)."""
    info = loaded.info.get("compatible")
    if not info:
        return ""
    text = (f" Compatibility fine-tune: {info['steps']} LoRA steps of {info['batch_size']} × {info['row_tokens']} "
            f"tokens ({info['train_seconds']:.0f} s).")
    text += "".join(f" Warning: {w}" for w in info.get("warnings", []))
    held = info.get("held_out", {})
    if "shipped" in held and "compatible" in held:
        a, b = held["shipped"], held["compatible"]
        text += (f" Held-out loss per token (WikiText-2 test, {a['rows']} rows), full context / uniform-length word "
                 f"dropout: as shipped {a['loss_full']:.3f} / {a['loss_word_dropout']:.3f}, after the fine-tune "
                 f"{b['loss_full']:.3f} / {b['loss_word_dropout']:.3f}.")
    return text


@dataclass
class LoadedModel:
    model: HFAdapter
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    stamp: dict[str, Any] = field(default_factory=dict)  # what made the model: see RecordStore


def load_lm(out_dir: Path, quick: bool, root: Path, compatible: bool, s: Settings, texts: Sequence[str] = (),
            progress: bool = True) -> LoadedModel:
    """SmolLM2 (or, ``quick``, a tiny random Llama with a tokenizer trained on ``texts``), optionally made
    compatible, wrapped as a causal :class:`HFModel`."""
    if quick:
        base_texts = list(texts)
        if compatible:
            base_texts.append(training_text(root)[:20000])
        tokenizer = _quick_tokenizer(base_texts)
        model = _tiny_llama(tokenizer, s.seed)
        name = "tiny random Llama (quick)"
    else:
        from seqexplain.models.smollm2 import MODEL_ID, load_smollm2

        model, tokenizer = load_smollm2()
        name = MODEL_ID
    info: dict[str, Any] = {"model": name}
    if compatible:
        folder = out_dir / f"compatible-{s.train_steps}steps"
        model, train_info = compatible_finetune(model, tokenizer, folder, root, s, progress, base=name)
        info["compatible"] = train_info
        name += " + compatible LoRA"
    model.eval()
    wrapped = HFModel(model, tokenizer, "causal", model_id=name)
    stamp = {"model": name, "compatible": s.compatible_settings() if compatible else None}
    return LoadedModel(wrapped, name, info, stamp)


__all__ = ["LoadedModel", "base_model_identity", "compatibility_note", "compatible_finetune", "held_out_losses",
           "held_out_rows", "leakage_check", "load_lm", "training_text"]
