"""Vafa, Deng, Blei & Rush (2021), "Rationales for Sequential Predictions": the language-model experiments.

Three recipes on SmolLM2-135M-Instruct (``--quick``: a tiny random Llama with a BPE tokenizer trained in code):

* :func:`run_lambada` — annotated LAMBADA (107 passages with human rationales for the last word). Every method's
  rationale of the last word is compared with the human one: ``Length`` (mean size), ``IOU`` (mean per passage) and
  ``F1`` (pooled over every context token of every passage, as the paper's ``f1_score`` over concatenated
  indicators). As in the paper's code, when the last word is several tokens each of its tokens is rationalized and
  the word's rationale is the union, restricted to the context before the word (so later sub-tokens are not
  penalised for using earlier ones; the paper's ``<=`` keeps the first target token too, which it never selects
  anyway since it is not visible to its own prediction). Human character spans become token positions through
  the tokenizer's offsets (:func:`seqexplain.data.annotated_lambada.gold_token_positions`).
* :func:`run_analogies` — the templated analogies (:mod:`seqexplain.data.analogies`): ``Length``, ``Ratio`` (to the
  exhaustive rationale, on a seeded third of the examples, where exhaustive search finishes within ``max_size``),
  ``Ante`` and ``No D``, on the examples whose target the model predicts both with and without the distractor
  (the paper's ``rationalize_analogies.py`` filter); the counts are reported.
* :func:`run_timing` — seconds per rationalized token of greedy, exhaustive and every baseline order (the order's
  own computation included) on analogy prompts.
* :func:`run_paired` — no new computation: LAMBADA and analogies compared on the same examples under the shipped
  and the compatible model (:mod:`seqexplain.experiments.vafa2021_lm_paired`).

Methods: ``greedy``, ``exhaustive`` and ``baseline_rationale`` ordered by gradient norm, gradient × input,
integrated gradients, last-layer / all-layer attention, attention rollout and occlusion
(:mod:`seqexplain.methods.rationale`). Every rationale includes the start token (the token before the target).

**Sparse evaluation.** Rationale search evaluates many subsets of the context; :class:`HFModel` packs each sparse
keep-mask row to its kept tokens with their original position ids (the paper's efficient batching), so a
size-``k`` candidate costs about ``k + 1`` tokens instead of the prefix length.

**Compatible model** (``compatible=True``): SmolLM2 fine-tuned with LoRA adapters and word dropout
(:mod:`seqexplain.training.compatible`, ``uniform_length`` masks on half the batches) on WikiText-2 *valid*
(Wikipedia articles). Neither the LAMBADA passages (novels from BookCorpus) nor the analogy prompts (written by
Vafa et al.) come from Wikipedia, so the fine-tune sees none of the evaluated text; :func:`leakage_check` verifies
that no 8-word window of an evaluated passage or prompt occurs in the training text. The adapters are merged
before rationalizing, and the model is cached in ``<out>/compatible-<steps>steps`` (resumable). The adapters'
initialisation is seeded on its own (:func:`seqexplain.training.compatible.apply_lora`), so the compatible model is
the same whichever recipe builds it first.

**Runs** are seeded, show progress bars, and are resumable: every per-example result is appended to a JSONL file
in ``out_dir`` as soon as it is computed and skipped on a rerun. Subsamples (``limit``) are drawn with
``random.Random(seed)``. Tables are written as markdown next to a JSON summary.

CLI: ``seqexplain reproduce vafa2021 {lambada,analogies,timing,lm_paired} --out DIR [--quick] [--limit N]
[--compatible] [--data-root DIR] [--methods m1,m2] [--seed S]`` (:mod:`seqexplain.experiments.registry`).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_write_text
from seqexplain.data.analogies import AnalogyExample, char_span_positions, load_analogies
from seqexplain.data.annotated_lambada import LambadaRationale, gold_token_positions, read_annotated_lambada
from seqexplain.data.paths import data_root, require_data
from seqexplain.errors import DataError, InputError
from seqexplain.methods.registry import MethodResult, get_method
from seqexplain.metrics.analogies import analogy_scores
from seqexplain.metrics.plausibility import token_iou
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.hf import HFAdapter, HFModel
from seqexplain.models.module_state import eval_mode
from seqexplain.report.markdown import markdown_table
from seqexplain.runs import run_record
from seqexplain.runs.records import RecordStore

BASELINES: dict[str, str] = {
    "gradient_norm": "gradient norm",
    "grad_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
    "attention_last": "last attention",
    "attention_all": "all attention",
    "attention_rollout": "attention rollout",
    "occlusion": "occlusion",
}
ALL_METHODS: tuple[str, ...] = ("greedy", *BASELINES, "exhaustive")
LAMBADA_METHODS: tuple[str, ...] = ("greedy", *BASELINES)
ANALOGY_METHODS: tuple[str, ...] = ALL_METHODS
TIMING_METHODS: tuple[str, ...] = ALL_METHODS
DEFAULT_LIMITS: dict[str, int] = {"lambada": 4, "analogies": 30, "timing": 8}
"""CPU defaults, sized from measured runs to stay under an hour each on one torch thread (see
docs/reproductions/vafa2021_lm.md); ``limit=0`` means every example."""
QUICK_LIMITS: dict[str, int] = {"lambada": 3, "analogies": 4, "timing": 2}
LABELS: dict[str, str] = {"greedy": "greedy", "exhaustive": "exhaustive", **BASELINES}


# =========================================================================== settings
@dataclass
class Settings:
    """Knobs of a run (defaults: CPU-feasible full runs; :func:`settings` gives the quick ones)."""

    quick: bool = False
    seed: int = 0
    ig_steps: int = 8  # integrated-gradients quadrature points (the paper: 100 Riemann steps, on a GPU)
    max_size: int | None = None  # cap on greedy / baseline rationale size (None: the whole context, as the paper)
    exhaustive_max_size: int = 3  # the paper: 6 (on a GPU)
    exhaustive_fraction: float = 1 / 3  # share of analogy examples searched exhaustively (the paper: a third)
    exhaustive_budget: int = 1 << 14  # tokens per forward for exhaustive search (its rows share cached prefixes)
    token_budget: int = 4096
    # compatibility fine-tune (LoRA + word dropout on WikiText-2 valid)
    train_steps: int = 400  # ~30 min on one CPU thread
    train_batch: int = 4
    train_length: int = 96
    train_lr: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    mixture: float = 0.5
    eval_rows: int = 32  # held-out WikiText-2 test rows of the compatibility check

    def method_options(self, method: str) -> tuple[str, dict[str, Any]]:
        """The registered method and its options for a table method name."""
        if method == "greedy":
            return "greedy", {"max_size": self.max_size, "token_budget": self.token_budget}
        if method == "exhaustive":
            return "exhaustive", {"max_size": self.exhaustive_max_size, "token_budget": self.exhaustive_budget}
        if method in BASELINES:
            order_options: dict[str, Any] = {}
            if method == "integrated_gradients":
                order_options = {"steps": self.ig_steps}
            return "baseline_rationale", {"order_by": method, "order_options": order_options,
                                          "max_size": self.max_size, "token_budget": self.token_budget}
        raise InputError(f"unknown method {method!r}; choose from {', '.join(TIMING_METHODS)}")

    def fingerprint(self, method: str) -> dict[str, Any]:
        """What determines ``method``'s result besides the model and the example (the token budget only
        batches the same computation)."""
        name, options = self.method_options(method)
        return {"method": name, **{k: v for k, v in options.items() if k != "token_budget"}}

    def compatible_settings(self) -> dict[str, Any]:
        """The settings of the compatibility fine-tune."""
        return {"steps": self.train_steps, "batch": self.train_batch, "length": self.train_length,
                "lr": self.train_lr, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "mixture": self.mixture,
                "seed": self.seed}


def settings(quick: bool, seed: int = 0, **overrides: Any) -> Settings:
    """Default settings; ``quick`` shrinks everything so a run takes seconds on a tiny random model."""
    s = Settings(quick=quick, seed=seed)
    if quick:
        s.ig_steps, s.max_size, s.exhaustive_max_size = 4, 12, 3
        s.train_steps, s.train_batch, s.train_length, s.lora_r, s.lora_alpha = 3, 4, 32, 4, 8
        s.eval_rows = 4
    for key, value in overrides.items():
        if value is not None:
            if not hasattr(s, key):
                raise InputError(f"unknown setting {key!r}")
            setattr(s, key, value)
    return s


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


def _training_text(root: Path) -> str:
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


def compatible_finetune(model: torch.nn.Module, tokenizer: Any, out_dir: Path, root: Path, s: Settings,
                        progress: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """LoRA + word-dropout fine-tune of ``model`` on WikiText-2 valid (module docstring); resumable in
    ``out_dir``. Returns the merged model and a summary (steps, seconds, losses, and the held-out compatibility
    check of :func:`held_out_losses` before and after, cached in ``out_dir/compatibility.json``)."""
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.compatible import apply_lora, train_causal_lm
    from seqexplain.training.compatible_config import TrainConfig
    from seqexplain.training.word_dropout import WordDropout

    text = _training_text(root)
    rows = _training_rows(tokenizer, text, s.train_length)
    if s.quick:
        rows = rows[: s.train_batch * 4]
    if len(rows) < s.train_batch:
        raise DataError("WikiText-2 valid gives too few training rows for the compatibility fine-tune")
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
                      checkpoint_every=10, word_dropout=WordDropout(kind="uniform_length", mixture=s.mixture))
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
               "held_out": check}
    return merged, summary


def held_out_losses(model: torch.nn.Module, tokenizer: Any, root: Path, s: Settings) -> dict[str, Any]:
    """Per-token loss of ``model`` on the first ``s.eval_rows`` rows of WikiText-2 *test* (packed like the
    training rows; never trained on), with the full context and with ``uniform_length`` word dropout (seeded):
    the gap between the two is how far the model is from compatible."""
    from seqexplain.training.causal_lm_data import TokenData
    from seqexplain.training.causal_lm_loss import evaluate_lm

    text = (require_data("wikitext2", root) / "test.txt").read_text(encoding="utf-8")
    rows = _training_rows(tokenizer, text, s.train_length)[: s.eval_rows]
    if not rows:
        raise DataError("WikiText-2 test gives no held-out rows for the compatibility check")
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


def _analogy_model(out: Path, quick: bool, root: Path, compatible: bool, s: Settings,
                   progress: bool) -> tuple[LoadedModel, list[AnalogyExample]]:
    """The model for the analogy recipes (quick: its tokenizer is trained on every prompt) and the examples whose
    words are single tokens for its tokenizer."""
    every = load_analogies(None, root)
    loaded = load_lm(out, quick, root, compatible, s, texts=[e.prompt + e.target for e in every], progress=progress)
    return loaded, load_analogies(loaded.model.tokenizer, root)


@dataclass
class _AnalogyRun:
    """What an analogy-prompt recipe (``analogies``, ``timing``) sets up before its loop."""

    out: Path
    root: Path
    s: Settings
    methods: list[str]
    limit: int | None
    loaded: LoadedModel
    items: list[AnalogyExample]
    variant: str
    store: RecordStore

    @classmethod
    def start(cls, experiment: str, out_dir: Path | str, data_root_: Path | str | None, seed: int, quick: bool,
              compatible: bool, limit: int | None, methods: Sequence[str] | None,
              method_sets: tuple[Sequence[str], Sequence[str]], progress: bool,
              overrides: dict[str, Any]) -> _AnalogyRun:
        """Seed, settings, methods (``method_sets`` = default, allowed), limit, model and examples, and the result
        store ``<experiment>_<variant>.jsonl``."""
        out, root = _setup(out_dir, data_root_, seed)
        s = settings(quick, seed, **overrides)
        chosen = _methods(methods, *method_sets)
        n = _limit(experiment, limit, quick)
        loaded, items = _analogy_model(out, quick, root, compatible, s, progress)
        variant = _variant(compatible)
        store = RecordStore(out / f"{experiment}_{variant}.jsonl", loaded.stamp)
        return cls(out, root, s, chosen, n, loaded, items, variant, store)

    def key(self, item: AnalogyExample, method: str) -> str:
        """The store key of ``method`` on ``item`` under this run's settings."""
        return self.store.key(f"{item.id}:{method}", self.s.fingerprint(method))


def load_lm(out_dir: Path, quick: bool, root: Path, compatible: bool, s: Settings, texts: Sequence[str] = (),
            progress: bool = True) -> LoadedModel:
    """SmolLM2 (or, ``quick``, a tiny random Llama with a tokenizer trained on ``texts``), optionally made
    compatible, wrapped as a causal :class:`HFModel`."""
    if quick:
        base_texts = list(texts)
        if compatible:
            base_texts.append(_training_text(root)[:20000])
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
        model, train_info = compatible_finetune(model, tokenizer, folder, root, s, progress)
        info["compatible"] = train_info
        name += " + compatible LoRA"
    model.eval()
    wrapped = HFModel(model, tokenizer, "causal", model_id=name)
    stamp = {"model": name, "compatible": s.compatible_settings() if compatible else None}
    return LoadedModel(wrapped, name, info, stamp)


# =========================================================================== shared helpers
def _subsample(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices ``0..n-1``, or the first ``limit`` of a seeded shuffle, in that order: a larger limit extends a
    smaller one, and a run stopped early has done a smaller limit's examples (its cached results are reused)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise InputError("limit must be a positive number of examples")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[:limit]


def _limit(experiment: str, limit: int | None, quick: bool) -> int | None:
    """``None`` → the default for the mode; ``0`` → no limit."""
    if limit is None:
        return (QUICK_LIMITS if quick else DEFAULT_LIMITS)[experiment]
    if limit < 0:
        raise InputError("limit must be >= 0 (0: every example)")
    return limit or None


def _methods(methods: Sequence[str] | None, default: Sequence[str], allowed: Sequence[str]) -> list[str]:
    chosen = list(default if methods is None else methods)
    unknown = [m for m in chosen if m not in allowed]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def run_method(model: SequenceModel, example: Example, method: str, s: Settings) -> tuple[MethodResult, float]:
    """Run one table method on ``example``; returns the result and the seconds it took."""
    name, options = s.method_options(method)
    spec = get_method(name)
    spec.check_options(options)
    t0 = time.perf_counter()
    result = spec.fn(model, example, **options)
    return result, time.perf_counter() - t0


def _predicts(model: SequenceModel, example: Example) -> bool:
    """Whether the model's argmax equals every target token (teacher forcing), from the full context."""
    with torch.no_grad(), eval_mode(model.model):
        argmax, _ = model.predictions(example)
    return bool((argmax[0].cpu() == example.target_ids).all())


def _write_outputs(out_dir: Path, stem: str, summary: dict[str, Any], markdown: str) -> None:
    """``<stem>.json`` (the summary) and ``<stem>.md`` (the table); the summary gets the table as ``markdown``
    (what :func:`seqexplain.experiments.vafa2021.main` prints)."""
    summary["markdown"] = markdown
    summary["run"] = run_record(summary.get("seed"))
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(summary, indent=1, sort_keys=True, default=str))
    atomic_write_text(out_dir / f"{stem}.md", markdown)


def _setup(out_dir: Path | str, data_root_: Path | str | None, seed: int) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data_root_) if data_root_ is not None else data_root()
    torch.manual_seed(seed)
    random.seed(seed)
    return out, root


def _variant(compatible: bool) -> str:
    return "compatible" if compatible else "shipped"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# =========================================================================== LAMBADA
def lambada_example(model: SequenceModel, item: LambadaRationale) -> tuple[Example, list[int]]:
    """The encoded passage (context → last word, with its leading whitespace) and the human token positions."""
    target = item.text.rstrip()[len(item.context):]
    example = model.encode(item.context, target)
    gold = gold_token_positions(example.offsets, item.spans, example.segments, len(item.context))
    return example, gold


def word_rationale(example: Example, rationales: Sequence[Sequence[int]]) -> list[int]:
    """Union of the rationales of the word's tokens, restricted to the context before the word."""
    first = int(example.target_positions[0])  # type: ignore[arg-type]
    return sorted({int(j) for rat in rationales for j in rat if int(j) < first})


def lambada_summary(records: Iterable[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: ``n``, mean ``length``, mean ``iou``, pooled ``f1``, share ``reached`` and seconds per token."""
    by: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for rec in records:
        if rec.get("kind") == "rationale" and rec["method"] in by:
            by[rec["method"]].append(rec)
    rows = []
    for m in methods:
        recs = by[m]
        tp = sum(r["tp"] for r in recs)
        n_pred = sum(r["length"] for r in recs)
        n_gold = sum(len(r["gold"]) for r in recs)
        p = tp / n_pred if n_pred else 0.0
        rec_ = tp / n_gold if n_gold else 0.0
        f1 = 0.0 if p + rec_ == 0 else 2 * p * rec_ / (p + rec_)
        n_tok = sum(r["n_targets"] for r in recs)
        rows.append({"method": LABELS[m], "n": len(recs), "Length": _mean([r["length"] for r in recs]),
                     "IOU": _mean([r["iou"] for r in recs]), "F1": f1 if recs else float("nan"),
                     "reached": _mean([float(r["reached"]) for r in recs]),
                     "s/token": sum(r["seconds"] for r in recs) / n_tok if n_tok else float("nan")})
    return rows


def run_lambada(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
                limit: int | None = None, compatible: bool = False, methods: Sequence[str] | None = None,
                seed: int = 0, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Rationales of the last word of annotated LAMBADA vs the human ones (module docstring).

    ``limit``: a seeded subsample of the 107 passages (default :data:`DEFAULT_LIMITS`, quick 3; 0: all).
    ``overrides``: :class:`Settings` fields. Writes ``lambada_<variant>.{jsonl,json,md}`` in ``out_dir``; returns
    the summary."""
    out, root = _setup(out_dir, data_root, seed)
    s = settings(quick, seed, **overrides)
    chosen = _methods(methods, LAMBADA_METHODS, ALL_METHODS)
    items = read_annotated_lambada(require_data("annotated_lambada", root) / "annotated_lambada.json")
    limit = _limit("lambada", limit, quick)
    picked = [items[i] for i in _subsample(len(items), limit, seed)]
    loaded = load_lm(out, quick, root, compatible, s, texts=[it.text for it in items], progress=progress)
    model = loaded.model
    variant = _variant(compatible)
    store = RecordStore(out / f"lambada_{variant}.jsonl", loaded.stamp)

    def key(item: LambadaRationale, method: str) -> str:
        return store.key(f"{item.lambada_index}:{method}", s.fingerprint(method))

    todo = [(it, m) for it in picked for m in chosen if key(it, m) not in store]
    bar = tqdm(total=len(picked) * len(chosen), initial=len(picked) * len(chosen) - len(todo),
               desc=f"lambada ({variant})", disable=not progress)
    encoded: dict[int, tuple[Example, list[int], bool]] = {}
    for item, method in todo:
        if item.lambada_index not in encoded:
            ex, gold = lambada_example(model, item)
            encoded[item.lambada_index] = (ex, gold, _predicts(model, ex))
        ex, gold, correct = encoded[item.lambada_index]
        result, seconds = run_method(model, ex, method, s)
        rationales = result.rationales or []
        union = word_rationale(ex, rationales)
        reached = result.meta.get("reached", [])
        store.add({
            "key": key(item, method), "kind": "rationale", "lambada_index": item.lambada_index,
            "method": method, "rationales": rationales, "rationale": union, "gold": gold, "length": len(union),
            "iou": token_iou(union, gold), "tp": len(set(union) & set(gold)), "n_context": ex.n_source,
            "n_targets": ex.n_targets, "target_tokens": ex.target_tokens, "reached": bool(reached and all(reached)),
            "model_correct": correct, "seconds": seconds,
        })
        bar.update(1)
        bar.set_postfix(passage=item.lambada_index, method=method)
    bar.close()
    keys = {key(it, m) for it in picked for m in chosen}
    records = [r for k, r in store.records.items() if k in keys]
    rows = lambada_summary(records, chosen)
    correct = {r["lambada_index"]: r["model_correct"] for r in records}
    summary = {
        "experiment": "lambada", "variant": variant, "model": loaded.name, "model_info": loaded.info,
        "quick": quick, "seed": seed, "passages": len(picked), "of": len(items),
        "lambada_indices": [it.lambada_index for it in picked],
        "model_predicts_last_word": sum(correct.values()), "settings": s.__dict__, "table": rows,
        "keys": sorted(keys),
    }
    if compatible:
        summary["leakage"] = leakage_check([it.text for it in picked], _training_text(root))
    title = f"Annotated LAMBADA — {loaded.name} ({variant})"
    note = (f"{len(picked)} of {len(items)} passages" + (f" (seeded subsample, seed {seed})" if len(picked) < len(items)
                                                       else "")
            + f"; the model predicts the whole last word (argmax, full context) in {sum(correct.values())}.")
    md = f"### {title}\n\n{note}{compatibility_note(loaded)}\n\n" + markdown_table(rows, floatfmt=".2f")
    _write_outputs(out, f"lambada_{variant}", summary, md)
    return summary


# =========================================================================== analogies
@dataclass
class EncodedAnalogy:
    example: Example
    antecedent: list[int]
    distractor: list[int]


def encode_analogy(model: SequenceModel, item: AnalogyExample) -> EncodedAnalogy:
    """The encoded prompt → target, with the antecedent and distractor token positions."""
    ex = model.encode(item.prompt, item.target)
    src = [o if seg == "source" else None for o, seg in zip(ex.offsets, ex.segments, strict=True)]
    return EncodedAnalogy(ex, char_span_positions(src, [item.antecedent], item.prompt),
                          char_span_positions(src, [item.distractor], item.prompt))


def analogy_correct(model: SequenceModel, item: AnalogyExample) -> dict[str, bool]:
    """Whether the model predicts the target (first token, argmax) with and without the distractor."""
    with_d = _predicts(model, model.encode(item.prompt, item.target))
    without = _predicts(model, model.encode(item.distractor_removed(), item.target))
    return {"with_distractor": with_d, "without_distractor": without}


def cached_check(store: RecordStore, model: SequenceModel, item: AnalogyExample) -> dict[str, bool]:
    """:func:`analogy_correct`, read from ``store`` when an earlier run stored it (else computed and stored)."""
    key = store.key(f"check:{item.id}")
    rec = store.get(key)
    if rec is None:
        rec = {"key": key, "kind": "check", "id": item.id, **analogy_correct(model, item)}
        store.add(rec)
    return {"with_distractor": rec["with_distractor"], "without_distractor": rec["without_distractor"]}


def analogy_summary(records: Iterable[dict[str, Any]], methods: Sequence[str],
                    exhaustive_max_size: int | None = None) -> list[dict[str, Any]]:
    """Per method: ``n``, ``Length``, ``Ratio`` (with ``n Ratio``, over the examples where exhaustive search found
    a rationale), ``Ante``, ``No D`` and seconds per token. With ``exhaustive_max_size``, also ``Ratio ≤``: an upper
    bound on the mean ratio over every exhaustively searched example, using ``max_size + 1`` as the minimal length
    where the search found nothing within ``max_size``. The exhaustive row's ``n`` counts the searches that found a
    rationale; its ``n searched`` and seconds count every search."""
    recs = [r for r in records if r.get("kind") == "rationale"]
    exhaustive = {r["id"]: r for r in recs if r["method"] == "exhaustive"}
    ex_len = {i: (len(r["rationale"]) if r["rationale"] else None) for i, r in exhaustive.items()}
    rows = []
    for m in methods:
        mine = [r for r in recs if r["method"] == m]
        seconds = _mean([r["seconds"] for r in mine])  # exhaustive: searches that gave up are timed too
        if m == "exhaustive":
            mine = [r for r in mine if r["rationale"]]  # searches that found a rationale within max_size
        scores = analogy_scores([r["rationale"] for r in mine], [r["antecedent"] for r in mine],
                                [r["distractor"] for r in mine], [ex_len.get(r["id"]) for r in mine])
        row: dict[str, Any] = {"method": LABELS[m], "n": len(mine), "Length": scores["length"],
                               "Ratio": scores["ratio"], "n Ratio": int(scores["n_ratio"])}
        if exhaustive_max_size is not None:
            bounds = [len(r["rationale"]) / (ex_len[r["id"]] or exhaustive_max_size + 1)
                      for r in mine if r["id"] in ex_len]
            row["Ratio ≤"] = _mean(bounds)
            row["n searched"] = len(exhaustive) if m == "exhaustive" else len(bounds)
        row.update({"Ante": scores["ante"], "No D": scores["no_d"], "s/token": seconds})
        rows.append(row)
    return rows


def run_analogies(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
                  limit: int | None = None, compatible: bool = False, methods: Sequence[str] | None = None,
                  seed: int = 0, progress: bool = True, require_correct: bool | None = None,
                  **overrides: Any) -> dict[str, Any]:
    """Analogies: Length / Ratio / Ante / No D of every method (module docstring).

    The examples (pairs of single-token words for the model's tokenizer) are checked for correctness (cached) in a
    seeded random order until ``limit`` correct ones are found (default :data:`DEFAULT_LIMITS`, quick 4; ``0``: check
    all); the counts are reported. ``require_correct`` (default: not ``quick``, since a random model predicts
    nothing) keeps only correctly predicted examples. Exhaustive search runs on a seeded ``exhaustive_fraction`` of
    them. Writes ``analogies_<variant>.{jsonl,json,md}``."""
    run = _AnalogyRun.start("analogies", out_dir, data_root, seed, quick, compatible, limit, methods,
                            (ANALOGY_METHODS, ALL_METHODS), progress, overrides)
    out, root, s, chosen, limit, loaded, items = run.out, run.root, run.s, run.methods, run.limit, run.loaded, run.items
    model, variant, store, key = loaded.model, run.variant, run.store, run.key
    require = (not quick) if require_correct is None else require_correct

    # Check the model's predictions in a seeded random order until `limit` eligible examples are found (all of
    # them without a limit); the counts of checked / correct examples are reported.
    order = list(items)
    random.Random(seed).shuffle(order)
    checks: dict[str, dict[str, bool]] = {}
    picked: list[AnalogyExample] = []
    bar = tqdm(order, desc=f"analogies: model predictions ({variant})", disable=not progress)
    for item in bar:
        if limit is not None and len(picked) >= limit:
            break
        checks[item.id] = cached_check(store, model, item)
        if not require or all(checks[item.id].values()):
            picked.append(item)
        bar.set_postfix(eligible=len(picked))
    bar.close()
    rank = {it.id: i for i, it in enumerate(items)}
    picked.sort(key=lambda it: rank[it.id])
    rng = random.Random(seed + 1)
    exhaustive_ids = {it.id for it in picked if rng.random() < s.exhaustive_fraction} if not quick else \
        {it.id for it in picked}
    jobs = [(it, m) for it in picked for m in chosen if m != "exhaustive" or it.id in exhaustive_ids]
    todo = [(it, m) for it, m in jobs if key(it, m) not in store]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"analogies ({variant})", disable=not progress)
    encoded: dict[str, EncodedAnalogy] = {}
    for item, method in todo:
        if item.id not in encoded:
            encoded[item.id] = encode_analogy(model, item)
        enc = encoded[item.id]
        result, seconds = run_method(model, enc.example, method, s)
        rationale = sorted((result.rationales or [[]])[0])
        store.add({"key": key(item, method), "kind": "rationale", "id": item.id, "section": item.section,
                   "method": method, "rationale": rationale, "order": (result.rationales or [[]])[0],
                   "antecedent": enc.antecedent, "distractor": enc.distractor, "n_context": enc.example.n_source,
                   "reached": bool(result.meta.get("reached", [False])[0]), "seconds": seconds,
                   "bound_hit": bool(result.meta.get("bound_hit"))})
        bar.update(1)
        bar.set_postfix(example=item.id, method=method)
    bar.close()
    keys = {key(it, m) for it, m in jobs}
    records = [r for k, r in store.records.items() if k in keys]
    rows = analogy_summary(records, chosen, s.exhaustive_max_size)
    n_with = sum(c["with_distractor"] for c in checks.values())
    n_both = sum(all(c.values()) for c in checks.values())
    summary = {
        "experiment": "analogies", "variant": variant, "model": loaded.name, "model_info": loaded.info,
        "quick": quick, "seed": seed, "examples": len(items), "sections": len({it.section for it in items}),
        "checked": len(checks), "correct_with_distractor": n_with, "correct_both": n_both,
        "require_correct": require, "rationalized": len(picked), "exhaustive_examples": len(exhaustive_ids),
        "settings": s.__dict__, "table": rows, "keys": sorted(keys),
    }
    if compatible:
        summary["leakage"] = leakage_check([it.prompt + it.target for it in items], _training_text(root))
    note = (f"{len(items)} analogy prompts whose two words are single tokens; the model predicts the target in "
            f"{n_with} of {len(checks)} checked, and both with and without the distractor in {n_both}. "
            f"Rationalized: {len(picked)}" + (f" (the first {limit} found in a seeded random order, seed {seed})"
                                               if len(checks) < len(items) else "")
            + f"; exhaustive search (max size {s.exhaustive_max_size}) on {len(exhaustive_ids)} of them. 'Ratio' "
            "averages over the searches that found a rationale; 'Ratio ≤' bounds the mean over all searched "
            f"examples, counting a search that found none as a minimal length of {s.exhaustive_max_size + 1}.")
    md = (f"### Analogies — {loaded.name} ({variant})\n\n{note}{compatibility_note(loaded)}\n\n"
          + markdown_table(rows, floatfmt=".2f"))
    _write_outputs(out, f"analogies_{variant}", summary, md)
    return summary


# =========================================================================== timing
def run_timing(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
               limit: int | None = None, compatible: bool = False, methods: Sequence[str] | None = None,
               seed: int = 0, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Seconds per rationalized token of each method on analogy prompts that the model predicts (quick: any),
    taken in a seeded random order (default :data:`DEFAULT_LIMITS`, quick 2). Writes
    ``timing_<variant>.{jsonl,json,md}``."""
    run = _AnalogyRun.start("timing", out_dir, data_root, seed, quick, compatible, limit, methods,
                            (TIMING_METHODS, TIMING_METHODS), progress, overrides)
    out, s, chosen, limit, loaded, items = run.out, run.s, run.methods, run.limit, run.loaded, run.items
    model, variant, store, key = loaded.model, run.variant, run.store, run.key

    order = list(items)
    random.Random(seed).shuffle(order)
    picked: list[AnalogyExample] = []
    for item in tqdm(order, desc="timing: picking predicted prompts", disable=not progress):
        if limit is not None and len(picked) >= limit:
            break
        if quick or cached_check(store, model, item)["with_distractor"]:
            picked.append(item)
    jobs = [(it, m) for it in picked for m in chosen]
    todo = [(it, m) for it, m in jobs if key(it, m) not in store]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"timing ({variant})", disable=not progress)
    for item, method in todo:
        ex = model.encode(item.prompt, item.target)
        result, seconds = run_method(model, ex, method, s)
        store.add({"key": key(item, method), "kind": "timing", "id": item.id, "method": method,
                   "seconds": seconds, "n_targets": ex.n_targets, "n_context": ex.n_source,
                   "length": len((result.rationales or [[]])[0]), "forwards": result.meta.get("forwards"),
                   "row_tokens": result.meta.get("row_tokens"), "found": bool((result.rationales or [[]])[0])})
        bar.update(1)
        bar.set_postfix(example=item.id, method=method)
    bar.close()
    keys = {key(it, m) for it, m in jobs}
    records = [r for k, r in store.records.items() if k in keys]
    rows = []
    for m in chosen:
        recs = [r for r in records if r["method"] == m]
        per_tok = sorted(r["seconds"] / max(1, r["n_targets"]) for r in recs)
        rows.append({"method": LABELS[m], "n": len(recs), "mean s/token": _mean(per_tok),
                     "median s/token": per_tok[len(per_tok) // 2] if per_tok else float("nan"),
                     "mean length": _mean([r["length"] for r in recs]),
                     "forwards": _mean([float(r["forwards"] or 0) for r in recs]),
                     "row tokens": _mean([float(r["row_tokens"] or 0) for r in recs])})
    summary = {"experiment": "timing", "variant": variant, "model": loaded.name, "model_info": loaded.info,
               "quick": quick, "seed": seed, "examples": [it.id for it in picked], "settings": s.__dict__,
               "threads": torch.get_num_threads(), "table": rows}
    note = (f"{len(picked)} analogy prompts (seeded), CPU, {torch.get_num_threads()} torch thread(s). Baseline rows "
            "include computing the order (gradients, attention, occlusion). Exhaustive: max size "
            f"{s.exhaustive_max_size}; a search that hits the bound is timed until it gives up.")
    md = f"### Timing — {loaded.name} ({variant})\n\n{note}\n\n" + markdown_table(rows, floatfmt=".3g")
    _write_outputs(out, f"timing_{variant}", summary, md)
    return summary


def run_paired(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
               **_: Any) -> dict[str, Any]:
    """The paired view (:mod:`seqexplain.experiments.vafa2021_lm_paired`) of the lambada and analogies runs in
    ``out_dir`` under both models; computes nothing new (``quick`` and ``data_root`` are not used)."""
    from seqexplain.experiments.vafa2021_lm_paired import run_paired as paired

    return paired(out_dir, {m: LABELS[m] for m in ALL_METHODS})


__all__ = ["ALL_METHODS", "Settings", "analogy_summary",
           "compatible_finetune", "encode_analogy", "lambada_example", "lambada_summary", "leakage_check", "load_lm",
           "run_analogies", "run_lambada", "run_method", "run_paired", "run_timing", "settings",
           "word_rationale"]
