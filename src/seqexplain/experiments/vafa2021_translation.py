"""Vafa et al. 2021 ("Rationales for Sequential Predictions"), translation experiments, on Multi30K and CPU.

Three steps (``seqexplain reproduce vafa2021 {translation_train,distractors,alignments} --out DIR
[--quick]``):

* ``translation_train`` — :func:`train_translation_model`: a small
  :class:`~seqexplain.models.seq2seq.Seq2SeqTransformer` trained on Multi30K with compatibility word dropout
  (``inverse_length``, mixture 0.5, as the paper's IWSLT model); test BLEU with sacrebleu. Models live in
  ``DIR/models/<src>-<tgt>/model``.
* ``distractors`` — :func:`run_distractors`: the paper's distractor experiment. Random disjoint pairs ``(a, b)`` of
  test sentences are concatenated: source ``src_a + " " + src_b``, target ``hyp_a + " " + hyp_b`` where ``hyp`` is the
  model's own greedy translation (the authors' script concatenates the compatible model's generated translations).
  Every target token is rationalized; for the targets of the second half, the first half is a distractor: the
  *source* distractors of a rationale are its source tokens from ``src_a``, the *target* distractors its decoder
  positions holding tokens of ``hyp_a`` (as in the authors' script, the always-included previous token and the decoder
  start token are not counted). Reported per method: mean number of distractors per rationale and the fraction of
  rationales with at least one, for the second-half targets; plus the paper script's source measure over all targets
  (for first-half targets the second half of the source is the distractor).
* ``alignments`` — :func:`run_alignments`: rationales of gold (teacher-forced) reference translations against gold
  word alignments. Each target *word*'s rationale is the union over its subword tokens of the source words of their
  rationales (decoder positions and ``</s>`` left out), in the order added; scored with
  :func:`seqexplain.metrics.alignment.score_corpus_alignments` (Length, AER — standard, and the paper script's
  variant —, IOU, F1, Top1). Data: the EN–FR Hansards gold set (447 pairs, English → French, so an en→fr model
  trained on Multi30K's French side) and the 5-pair EN–DE sample (read with German as the source for the de→en
  model: its links ``English i – German j`` are swapped). Because the teacher-forced gold words are often not what
  a small model predicts, rationale searches are capped at 10 positions here (see :func:`run_alignments`).

Methods: ``greedy`` and the baseline-ordered rationales (``baseline_rationale`` with ``order_by`` gradient norm,
gradient × input, integrated gradients, attention rollout, last-layer attention, all-layer attention), all with the
same stopping rule (stop when the model's argmax from the rationale is the target).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError
from seqexplain.runs import apply_threads, run_record
from seqexplain.training.translation import (
    TranslationTrainConfig,
    load_translation_model,
    train_translation,
)
from seqexplain.training.translation_eval import translate

FULL_TRAIN: dict[str, Any] = {
    "vocab_size": 5000, "d_model": 128, "n_heads": 4, "ffn_dim": 512, "encoder_layers": 2, "decoder_layers": 2,
    "epochs": 20, "batch_tokens": 3000, "lr": 1.5e-3, "warmup_steps": 150, "max_minutes": 45.0,
    "schedule": "linear_time",
}
"""The documented CPU run: at most 20 epochs or 45 minutes of training on one core, the learning rate decaying
linearly to 0 over whichever runs out first."""

QUICK_TRAIN: dict[str, Any] = {
    "vocab_size": 600, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "encoder_layers": 1, "decoder_layers": 1,
    "max_train_examples": 800, "epochs": 1, "batch_tokens": 1500, "lr": 3e-3, "warmup_steps": 5, "max_len": 40,
    "valid_bleu_examples": 0, "test_bleu_examples": 50, "checkpoint_every": 1000,
}
"""A seconds-long run for tests: the pipeline, not a usable model."""

BASELINES: tuple[str, ...] = ("gradient_norm", "grad_x_input", "integrated_gradients", "attention_rollout",
                              "attention_last", "attention_all")
QUICK_BASELINES: tuple[str, ...] = ("gradient_norm", "attention_last")
METHOD_LABELS: dict[str, str] = {
    "gradient_norm": "Gradient norms", "grad_x_input": "Gradient × input", "integrated_gradients":
    "Integrated gradients", "attention_rollout": "Attention rollout", "attention_last": "Last attention",
    "attention_all": "All attentions", "greedy": "Greedy",
}


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        apply_threads(threads)


def model_home(out_dir: Path | str, src_lang: str, tgt_lang: str) -> Path:
    """``<out_dir>/models/<src>-<tgt>``: the training folder of that direction (``model/`` holds the result)."""
    return Path(out_dir) / "models" / f"{src_lang}-{tgt_lang}"


# ----------------------------------------------------------------------------------------------- training
def train_translation_model(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                            src_lang: str = "de", tgt_lang: str = "en", resume: bool = True, progress: bool = True,
                            threads: int | None = 1, **overrides: Any) -> dict[str, Any]:
    """Train (or resume) the ``src_lang → tgt_lang`` model under ``<out_dir>/models/<src>-<tgt>`` with the full or
    quick settings (``overrides`` replace single settings of :class:`TranslationTrainConfig`); return the run's
    ``results.json`` (test BLEU, timing, history)."""
    _set_threads(threads)
    settings = {**(QUICK_TRAIN if quick else FULL_TRAIN), **overrides, "src_lang": src_lang, "tgt_lang": tgt_lang}
    cfg = TranslationTrainConfig(**settings)
    home = model_home(out_dir, src_lang, tgt_lang)
    train_translation(cfg, home, data_root=data_root, resume=resume, progress=progress)
    results: dict[str, Any] = json.loads((home / "model" / "results.json").read_text(encoding="utf-8"))
    results["train_config"] = asdict(cfg)
    results["run"] = run_record(cfg.seed)
    atomic_write_text(home / "run.json", json.dumps(results["run"], indent=2))
    return results


def ensure_model(out_dir: Path | str, quick: bool, data_root: Path | str | None, src_lang: str, tgt_lang: str,
                 progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """``(model, tokenizer, results)`` of the ``src → tgt`` model under ``out_dir``, training it first when it is
    missing (with the torch thread count already in effect: entry points set it first)."""
    home = model_home(out_dir, src_lang, tgt_lang)
    if not (home / "model" / "results.json").is_file():
        train_translation_model(out_dir, quick, data_root, src_lang=src_lang, tgt_lang=tgt_lang, progress=progress,
                                threads=None)
    model, tok = load_translation_model(home / "model")
    results = json.loads((home / "model" / "results.json").read_text(encoding="utf-8"))
    return model, tok, results


# ------------------------------------------------------------------------------------------------ methods
def method_specs(baselines: Sequence[str] | None, quick: bool, ig_steps: int = 20,
                 max_size: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label key, registered method, options)`` for greedy and each baseline order."""
    names = tuple(baselines) if baselines is not None else (QUICK_BASELINES if quick else BASELINES)
    specs: list[tuple[str, str, dict[str, Any]]] = [("greedy", "greedy", {"max_size": max_size})]
    for name in names:
        order_opts: dict[str, Any] = {"steps": ig_steps} if name == "integrated_gradients" else {}
        specs.append((name, "baseline_rationale", {"order_by": name, "order_options": order_opts,
                                                    "max_size": max_size}))
    return specs


def _rationalize(wrapped: Any, example: Any, method: str, options: dict[str, Any]) -> tuple[list[list[int]],
                                                                                           list[bool]]:
    from seqexplain.methods.registry import get_method

    spec = get_method(method)
    spec.check_options(options)
    res = spec.fn(wrapped, example, **options)
    if res.rationales is None:
        raise InputError(f"{method} returned no rationales")
    reached = [bool(x) for x in res.meta.get("reached", [True] * len(res.rationales))]
    return [list(map(int, r)) for r in res.rationales], reached


def _wrap(model: Any, tokenizer: Any, name: str) -> Any:
    from seqexplain.models.loading import load_model

    return load_model(model, tokenizer, kind="seq2seq", model_id=name)


def _fmt(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.3f}"


# -------------------------------------------------------------------------------------------- distractors
def _halves(offsets: Sequence[tuple[int, int] | None], boundary: int) -> list[int | None]:
    """0 for tokens that start before ``boundary`` (the first sentence), 1 after, None for special tokens."""
    return [None if o is None else (0 if o[0] < boundary else 1) for o in offsets]


def distractor_counts(rationales: Sequence[Sequence[int]], n_source: int, src_half: Sequence[int | None],
                      tgt_half: Sequence[int | None], reached: Sequence[bool] | None = None) -> list[dict[str, int]]:
    """Per target: its half, and the distractor source / target tokens of its rationale (module docstring).

    ``rationales`` are input-axis positions (source ``0..S-1``, decoder start ``S``, target ``k`` at ``S+1+k``),
    the first being the always-included previous position, which is not counted on the target side."""
    rows: list[dict[str, int]] = []
    for i, rat in enumerate(rationales):
        half = tgt_half[i]
        if half is None:
            continue
        other = 1 - half
        src = [j for j in rat if j < n_source and src_half[j] is not None]
        tgt = [j - n_source - 1 for j in rat[1:] if j > n_source]
        rows.append({
            "half": int(half),
            "source_distractors": sum(1 for j in src if src_half[j] == (0 if half == 1 else 1)),
            "target_distractors": sum(1 for k in tgt if tgt_half[k] == 0) if half == 1 else 0,
            "length": len(rat),
            "other": other,
            "reached": int(reached[i]) if reached is not None else 1,
        })
    return rows


def summarize_distractors(rows: Sequence[dict[str, int]]) -> dict[str, float]:
    """Means and fractions of :func:`distractor_counts` rows (module docstring); ``*_reached``: the same over the
    second-half targets whose rationale reached the stopping rule (an unreached search holds the whole context)."""
    second = [r for r in rows if r["half"] == 1]
    ok = [r for r in second if r["reached"]]
    src_ok = np.array([r["source_distractors"] for r in ok], dtype=float)
    tgt_ok = np.array([r["target_distractors"] for r in ok], dtype=float)
    src2 = np.array([r["source_distractors"] for r in second], dtype=float)
    tgt2 = np.array([r["target_distractors"] for r in second], dtype=float)
    src_all = np.array([r["source_distractors"] for r in rows], dtype=float)

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else float("nan")

    return {
        "source_mean": mean(src2), "target_mean": mean(tgt2),
        "source_frac": mean(src2 > 0), "target_frac": mean(tgt2 > 0),
        "source_mean_all_targets": mean(src_all), "source_frac_all_targets": mean(src_all > 0),
        "source_mean_reached": mean(src_ok), "target_mean_reached": mean(tgt_ok),
        "source_frac_reached": mean(src_ok > 0), "target_frac_reached": mean(tgt_ok > 0),
        "length": mean(np.array([r["length"] for r in rows], dtype=float)),
        "reached": mean(np.array([r["reached"] for r in rows], dtype=float)),
        "n_second_half_targets": len(second), "n_targets": len(rows),
    }


def run_distractors(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                    n_pairs: int | None = None, baselines: Sequence[str] | None = None, seed: int = 0,
                    progress: bool = True, max_size: int | None = None, targets: str | None = None) -> dict[str, Any]:
    """The distractor experiment (module docstring) with the de→en model under ``out_dir`` (trained first when
    missing). ``n_pairs`` concatenated pairs (default 40; quick: 2) drawn with ``seed``; ``targets`` is
    ``"translations"`` (the model's greedy translations, as in the paper; the default) or ``"references"`` (the
    reference translations; the default in quick mode, whose toy model translates nothing useful); writes
    ``<out_dir>/distractors/{results.json,table.md,rationales.jsonl}`` and returns the results."""
    from seqexplain.data.multi30k import read_multi30k

    t0 = time.perf_counter()
    model, tok, train_res = ensure_model(out_dir, quick, data_root, "de", "en", progress)
    wrapped = _wrap(model, tok, "seqexplain-multi30k-de-en")
    n_pairs = n_pairs if n_pairs is not None else (2 if quick else 40)
    if max_size is None and quick:
        max_size = 6
    test = read_multi30k("test", "de", "en", data_root)
    rs = np.random.RandomState(seed)
    pool = rs.permutation(len(test))[: max(2 * n_pairs + 20, 2 * n_pairs)]
    targets = targets or ("references" if quick else "translations")
    if targets == "translations":
        hyps = dict(zip(pool.tolist(), translate(model, tok, [test.source[i] for i in pool]), strict=True))
    elif targets == "references":
        hyps = {int(i): test.target[int(i)] for i in pool}
    else:
        raise InputError(f"targets must be 'translations' or 'references', got {targets!r}")
    usable = [int(i) for i in pool if hyps[int(i)].strip()]
    if len(usable) < 2 * n_pairs:
        raise InputError(f"only {len(usable)} test sentences have a non-empty translation; lower n_pairs")
    first, second = usable[:n_pairs], usable[n_pairs : 2 * n_pairs]
    specs = method_specs(baselines, quick, max_size=max_size)
    rows: dict[str, list[dict[str, int]]] = {k: [] for k, _, _ in specs}
    seconds: dict[str, float] = {k: 0.0 for k, _, _ in specs}
    records: list[dict[str, Any]] = []
    for a, b in tqdm(list(zip(first, second, strict=True)), desc="distractor pairs", disable=not progress):
        src_text = test.source[a] + " " + test.source[b]
        tgt_text = hyps[a] + " " + hyps[b]
        ex = wrapped.encode(src_text, tgt_text)
        s = ex.n_source
        src_half = _halves(ex.offsets[:s], len(test.source[a]))
        tgt_half = _halves(ex.offsets[s + 1 :], len(hyps[a]))
        rec: dict[str, Any] = {"source": src_text, "target": tgt_text, "tokens": ex.tokens, "n_source": s,
                               "rationales": {}}
        for key, method, opts in specs:
            t1 = time.perf_counter()
            rats, ok = _rationalize(wrapped, ex, method, opts)
            seconds[key] += time.perf_counter() - t1
            rows[key].extend(distractor_counts(rats, s, src_half, tgt_half, ok))
            rec["rationales"][key] = rats
        records.append(rec)
    summary = {k: {**summarize_distractors(rows[k]), "seconds": seconds[k]} for k, _, _ in specs}
    table = distractor_table(summary)
    result = {"experiment": "distractors", "quick": quick, "n_pairs": n_pairs, "seed": seed, "targets": targets,
              "model_test_bleu": train_res.get("test_bleu"), "methods": summary, "table": table, "markdown": table,
              "seconds": time.perf_counter() - t0}
    _write_results(Path(out_dir) / "distractors", result, records)
    return result


def distractor_table(summary: dict[str, dict[str, float]]) -> str:
    head = ("| Method | Source mean ↓ | Target mean ↓ | Source frac. ↓ | Target frac. ↓ | Source mean / frac. (all "
            "targets) | Source mean / Target mean (reached only) | Length | Reached |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for key in [k for k in summary if k != "greedy"] + ["greedy"]:
        m = summary[key]
        lines.append(f"| {METHOD_LABELS.get(key, key)} | {_fmt(m['source_mean'])} | {_fmt(m['target_mean'])} | "
                     f"{_fmt(m['source_frac'])} | {_fmt(m['target_frac'])} | {_fmt(m['source_mean_all_targets'])} / "
                     f"{_fmt(m['source_frac_all_targets'])} | {_fmt(m['source_mean_reached'])} / "
                     f"{_fmt(m['target_mean_reached'])} | {m['length']:.1f} | {_fmt(m['reached'])} |")
    return head + "\n".join(lines) + "\n"


def _write_results(folder: Path, result: dict[str, Any], records: list[dict[str, Any]]) -> None:
    result["run"] = run_record(result.get("seed"))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(result, indent=2, ensure_ascii=False, default=float))
    atomic_write_text(folder / "table.md", result["table"])
    atomic_write_text(folder / "rationales.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# --------------------------------------------------------------------------------------------- alignments
ALIGNMENT_SETS: dict[str, tuple[str, str]] = {"hansards_en_fr": ("en", "fr"), "europarl_de_en_sample": ("de", "en")}
"""Gold sets and the model direction each is evaluated with."""


def read_alignment_set(name: str, data_root: Path | str | None = None
                       ) -> list[tuple[list[str], list[str], Any]]:
    """``(source words, target words, GoldAlignment with (source word, target word) links)`` per sentence, in the
    direction of :data:`ALIGNMENT_SETS`."""
    from seqexplain.data.alignments import GoldAlignment, read_indexed_lines, read_parallel, read_pharaoh
    from seqexplain.data.paths import require_data

    base = require_data("word_alignment", data_root)
    if name == "hansards_en_fr":
        folder = base / "awesome_align_en_fr_ro_en"
        pairs = read_parallel(folder / "enfr.src-tgt")
        gold = read_pharaoh(folder / "enfr.gold", one_based=True, src_lengths=[len(s) for s, _ in pairs],
                            tgt_lengths=[len(t) for _, t in pairs])
        return [(s, t, g) for (s, t), g in zip(pairs, gold, strict=True)]
    if name == "europarl_de_en_sample":
        folder = base / "simalign_sample_en_de"
        eng = read_indexed_lines(folder / "sample_eng.txt")
        deu = read_indexed_lines(folder / "sample_deu.txt")
        gold = read_pharaoh(folder / "sample_eng_deu.gold", src_lengths=[len(x) for x in eng],
                            tgt_lengths=[len(x) for x in deu])
        swapped = [GoldAlignment(sure={(j, i) for i, j in g.sure}, possible={(j, i) for i, j in g.possible})
                   for g in gold]
        return list(zip(deu, eng, swapped, strict=True))
    raise InputError(f"unknown alignment set {name!r}; use one of {', '.join(ALIGNMENT_SETS)}")


def word_rationales(rationales: Sequence[Sequence[int]], src_word_of: Sequence[int | None],
                    tgt_word_of: Sequence[int | None], n_words: int) -> list[list[int]]:
    """Per target word, the source words of the rationales of its subword tokens, in the order added (first token
    first), duplicates removed."""
    from seqexplain.metrics.alignment import source_words_of_rationale

    out: list[list[int]] = [[] for _ in range(n_words)]
    for k, rat in enumerate(rationales):
        w = tgt_word_of[k]
        if w is None:
            continue
        for x in source_words_of_rationale(rat, src_word_of):
            if x not in out[w]:
                out[w].append(x)
    return out


def run_alignments(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                   n_sentences: int | None = None, baselines: Sequence[str] | None = None,
                   sets: Sequence[str] | None = None, seed: int = 0, progress: bool = True,
                   max_size: int | None = 10, max_tokens: int = 30) -> dict[str, Any]:
    """The alignment experiment (module docstring) for each gold set in ``sets`` (default: both), with the matching
    model under ``out_dir`` (trained first when missing).

    The gold targets are teacher-forced, and a weak or out-of-domain model often does not predict them even from the
    whole context, where greedy search would go through every position (cubic cost); so every rationale search
    stops at ``max_size`` positions (default 10, counting the always-included previous token; ``None``: no cap; quick
    mode: 6), and only sentences whose source and target are at most ``max_tokens`` tokens each are *eligible*
    (the EN–DE sample is used whole). ``n_sentences`` eligible sentences per set are drawn with ``seed`` (default
    60; quick: the 2 shortest). Writes ``<out_dir>/alignments/...``."""
    from seqexplain.data.tokenizers import word_index_of_tokens, word_spans
    from seqexplain.metrics.alignment import score_corpus_alignments

    t0 = time.perf_counter()
    sets = tuple(sets) if sets is not None else tuple(ALIGNMENT_SETS)
    if quick:
        max_size = 6 if max_size is None else min(max_size, 6)
    specs = method_specs(baselines, quick, max_size=max_size)
    results: dict[str, Any] = {"experiment": "alignments", "quick": quick, "seed": seed, "max_size": max_size,
                               "max_tokens": max_tokens, "sets": {}}
    tables: list[str] = []
    records: list[dict[str, Any]] = []
    for name in sets:
        src_lang, tgt_lang = ALIGNMENT_SETS[name]
        model, tok, train_res = ensure_model(out_dir, quick, data_root, src_lang, tgt_lang, progress)
        wrapped = _wrap(model, tok, f"seqexplain-multi30k-{src_lang}-{tgt_lang}")
        data = read_alignment_set(name, data_root)
        n_src = [len(x) for x in tok([" ".join(d[0]) for d in data], add_special_tokens=True)["input_ids"]]
        n_tgt = [len(x) for x in tok([" ".join(d[1]) for d in data], add_special_tokens=False)["input_ids"]]
        whole = name == "europarl_de_en_sample"
        eligible = [i for i in range(len(data)) if len(data[i][1]) > 0 and
                    (whole or (n_src[i] <= max_tokens and 0 < n_tgt[i] <= max_tokens))]
        want = n_sentences if n_sentences is not None else (2 if quick else 60)
        if quick:
            order = sorted(eligible, key=lambda i: (len(data[i][0]) < 3, n_src[i] + n_tgt[i]))[:want]
        elif want < len(eligible):
            order = [eligible[k] for k in np.random.RandomState(seed).choice(len(eligible), want, replace=False)]
        else:
            order = eligible
        order = sorted(order)
        per_method: dict[str, list[tuple[list[list[int]], list[set[int]], list[set[int]], int]]] = {
            k: [] for k, _, _ in specs}
        seconds = {k: 0.0 for k, _, _ in specs}
        reached: dict[str, list[bool]] = {k: [] for k, _, _ in specs}
        skipped = 0
        for i in tqdm(order, desc=f"alignments {name}", disable=not progress):
            src_words, tgt_words, gold = data[i]
            src_text, tgt_text = " ".join(src_words), " ".join(tgt_words)
            try:
                ex = wrapped.encode(src_text, tgt_text)
            except InputError:  # longer than the model's positions
                skipped += 1
                continue
            s = ex.n_source
            src_word_of = word_index_of_tokens(ex.offsets[:s], src_text, word_spans(src_text))
            src_word_of = src_word_of + [None] * (ex.length - s)
            tgt_word_of = word_index_of_tokens(ex.offsets[s + 1 :], tgt_text, word_spans(tgt_text))
            by_target = gold.sources_by_target()
            sure = [by_target.get(t, (set(), set()))[0] for t in range(len(tgt_words))]
            possible = [by_target.get(t, (set(), set()))[1] for t in range(len(tgt_words))]
            rec: dict[str, Any] = {"set": name, "index": i, "source": src_text, "target": tgt_text,
                                   "rationales": {}}
            for key, method, opts in specs:
                t1 = time.perf_counter()
                rats, ok = _rationalize(wrapped, ex, method, opts)
                seconds[key] += time.perf_counter() - t1
                reached[key].extend(ok)
                words = word_rationales(rats, src_word_of, tgt_word_of, len(tgt_words))
                per_method[key].append((words, sure, possible, len(src_words)))
                rec["rationales"][key] = words
            records.append(rec)
        set_res: dict[str, Any] = {"direction": f"{src_lang}-{tgt_lang}", "sentences": len(order) - skipped,
                                   "skipped": skipped, "eligible": len(eligible), "total": len(data),
                                   "model_test_bleu": train_res.get("test_bleu"), "methods": {}}
        for key, _, _ in specs:
            if not per_method[key]:
                continue
            std = score_corpus_alignments(per_method[key], "standard")
            vafa = score_corpus_alignments(per_method[key], "vafa")
            set_res["methods"][key] = {"length": std.length, "aer": std.aer, "aer_vafa": vafa.aer, "iou": std.iou,
                                       "f1": std.f1, "top1": std.top1, "n_words": std.n_words,
                                       "reached": float(np.mean(reached[key])) if reached[key] else float("nan"),
                                       "seconds": seconds[key]}
        results["sets"][name] = set_res
        tables.append(f"**{name}** ({src_lang}→{tgt_lang}, {set_res['sentences']} of {len(eligible)} eligible of "
                      f"{len(data)} sentences, {skipped} skipped, rationales capped at {max_size} positions)\n\n"
                      + alignment_table(set_res["methods"]))
    results["table"] = results["markdown"] = "\n".join(tables)
    results["seconds"] = time.perf_counter() - t0
    _write_results(Path(out_dir) / "alignments", results, records)
    return results


def alignment_table(methods: dict[str, dict[str, float]]) -> str:
    head = ("| Method | Length | AER ↓ | AER (paper's script) ↓ | IOU ↑ | F1 ↑ | Top1 ↑ | Reached |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for key in [k for k in methods if k != "greedy"] + (["greedy"] if "greedy" in methods else []):
        m = methods[key]
        lines.append(f"| {METHOD_LABELS.get(key, key)} | {m['length']:.1f} | {_fmt(m['aer'])} | "
                     f"{_fmt(m['aer_vafa'])} | {_fmt(m['iou'])} | {_fmt(m['f1'])} | {_fmt(m['top1'])} | "
                     f"{_fmt(m.get('reached', float('nan')))} |")
    return head + "\n".join(lines) + "\n"
