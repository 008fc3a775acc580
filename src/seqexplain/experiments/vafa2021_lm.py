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

**Parts.** This module holds the recipes (the entry points of :mod:`seqexplain.experiments.registry`); the method
table, :class:`~seqexplain.experiments.vafa2021_lm_settings.Settings` and the shared run plumbing are in
:mod:`seqexplain.experiments.vafa2021_lm_settings`, the models (SmolLM2, the quick tiny Llama, the compatibility
fine-tune, the leakage check) in :mod:`seqexplain.experiments.vafa2021_lm_models`, and the encoding of the examples
and the table scores in :mod:`seqexplain.experiments.vafa2021_lm_eval`.

CLI: ``seqexplain reproduce vafa2021 {lambada,analogies,timing,lm_paired} --out DIR [--quick] [--limit N]
[--compatible] [--data-root DIR] [--methods m1,m2] [--seed S]`` (:mod:`seqexplain.experiments.registry`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from seqexplain.data.analogies import AnalogyExample, load_analogies
from seqexplain.data.annotated_lambada import LambadaRationale, read_annotated_lambada
from seqexplain.data.paths import require_data
from seqexplain.experiments.vafa2021_lm_eval import (
    EncodedAnalogy,
    analogy_summary,
    cached_check,
    encode_analogy,
    lambada_example,
    lambada_summary,
    word_rationale,
)
from seqexplain.experiments.vafa2021_lm_models import (
    LoadedModel,
    compatibility_note,
    leakage_check,
    load_lm,
    training_text,
)
from seqexplain.experiments.vafa2021_lm_settings import (
    ALL_METHODS,
    ANALOGY_METHODS,
    LABELS,
    LAMBADA_METHODS,
    TIMING_METHODS,
    Settings,
    choose_methods,
    example_limit,
    mean_or_nan,
    predicts_target,
    run_method,
    settings,
    setup_run,
    subsample,
    variant_name,
    write_outputs,
)
from seqexplain.metrics.plausibility import token_iou
from seqexplain.models.example import Example
from seqexplain.report.markdown import markdown_table
from seqexplain.runs.records import RecordStore


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
        out, root = setup_run(out_dir, data_root_, seed)
        s = settings(quick, seed, **overrides)
        chosen = choose_methods(methods, *method_sets)
        n = example_limit(experiment, limit, quick)
        loaded, items = _analogy_model(out, quick, root, compatible, s, progress)
        variant = variant_name(compatible)
        store = RecordStore(out / f"{experiment}_{variant}.jsonl", loaded.stamp)
        return cls(out, root, s, chosen, n, loaded, items, variant, store)

    def key(self, item: AnalogyExample, method: str) -> str:
        """The store key of ``method`` on ``item`` under this run's settings."""
        return self.store.key(f"{item.id}:{method}", self.s.fingerprint(method))


def run_lambada(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
                limit: int | None = None, compatible: bool = False, methods: Sequence[str] | None = None,
                seed: int = 0, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Rationales of the last word of annotated LAMBADA vs the human ones (module docstring).

    ``limit``: a seeded subsample of the 107 passages (default :data:`DEFAULT_LIMITS`, quick 3; 0: all).
    ``overrides``: :class:`Settings` fields. Writes ``lambada_<variant>.{jsonl,json,md}`` in ``out_dir``; returns
    the summary."""
    out, root = setup_run(out_dir, data_root, seed)
    s = settings(quick, seed, **overrides)
    chosen = choose_methods(methods, LAMBADA_METHODS, ALL_METHODS)
    items = read_annotated_lambada(require_data("annotated_lambada", root) / "annotated_lambada.json")
    limit = example_limit("lambada", limit, quick)
    picked = [items[i] for i in subsample(len(items), limit, seed)]
    loaded = load_lm(out, quick, root, compatible, s, texts=[it.text for it in items], progress=progress)
    model = loaded.model
    variant = variant_name(compatible)
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
            encoded[item.lambada_index] = (ex, gold, predicts_target(model, ex))
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
        summary["leakage"] = leakage_check([it.text for it in picked], training_text(root))
    title = f"Annotated LAMBADA — {loaded.name} ({variant})"
    note = (f"{len(picked)} of {len(items)} passages" + (f" (seeded subsample, seed {seed})" if len(picked) < len(items)
                                                       else "")
            + f"; the model predicts the whole last word (argmax, full context) in {sum(correct.values())}.")
    md = f"### {title}\n\n{note}{compatibility_note(loaded)}\n\n" + markdown_table(rows, floatfmt=".2f")
    write_outputs(out, f"lambada_{variant}", summary, md)
    return summary


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
        summary["leakage"] = leakage_check([it.prompt + it.target for it in items], training_text(root))
    note = (f"{len(items)} analogy prompts whose two words are single tokens; the model predicts the target in "
            f"{n_with} of {len(checks)} checked, and both with and without the distractor in {n_both}. "
            f"Rationalized: {len(picked)}" + (f" (the first {limit} found in a seeded random order, seed {seed})"
                                               if len(checks) < len(items) else "")
            + f"; exhaustive search (max size {s.exhaustive_max_size}) on {len(exhaustive_ids)} of them. 'Ratio' "
            "averages over the searches that found a rationale; 'Ratio ≤' bounds the mean over all searched "
            f"examples, counting a search that found none as a minimal length of {s.exhaustive_max_size + 1}.")
    md = (f"### Analogies — {loaded.name} ({variant})\n\n{note}{compatibility_note(loaded)}\n\n"
          + markdown_table(rows, floatfmt=".2f"))
    write_outputs(out, f"analogies_{variant}", summary, md)
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
        rows.append({"method": LABELS[m], "n": len(recs), "mean s/token": mean_or_nan(per_tok),
                     "median s/token": per_tok[len(per_tok) // 2] if per_tok else float("nan"),
                     "mean length": mean_or_nan([r["length"] for r in recs]),
                     "forwards": mean_or_nan([float(r["forwards"] or 0) for r in recs]),
                     "row tokens": mean_or_nan([float(r["row_tokens"] or 0) for r in recs])})
    summary = {"experiment": "timing", "variant": variant, "model": loaded.name, "model_info": loaded.info,
               "quick": quick, "seed": seed, "examples": [it.id for it in picked], "settings": s.__dict__,
               "threads": torch.get_num_threads(), "table": rows}
    note = (f"{len(picked)} analogy prompts (seeded), CPU, {torch.get_num_threads()} torch thread(s). Baseline rows "
            "include computing the order (gradients, attention, occlusion). Exhaustive: max size "
            f"{s.exhaustive_max_size}; a search that hits the bound is timed until it gives up.")
    md = f"### Timing — {loaded.name} ({variant})\n\n{note}\n\n" + markdown_table(rows, floatfmt=".3g")
    write_outputs(out, f"timing_{variant}", summary, md)
    return summary


def run_paired(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None,
               **_: Any) -> dict[str, Any]:
    """The paired view (:mod:`seqexplain.experiments.vafa2021_lm_paired`) of the lambada and analogies runs in
    ``out_dir`` under both models; computes nothing new (``quick`` and ``data_root`` are not used)."""
    from seqexplain.experiments.vafa2021_lm_paired import run_paired as paired

    return paired(out_dir, {m: LABELS[m] for m in ALL_METHODS})


__all__ = ["run_analogies", "run_lambada", "run_paired", "run_timing"]
