"""``evaluate``: every attribution method on the ERASER movies test reviews, against the model and the humans.

For each test document (all 199, or a seeded subsample of ``limit``), cut to the classifier's training length
(:mod:`.common`; a document whose first token alone is longer is skipped: ``documents_skipped``, ``warnings``),
every method explains the **predicted** label with :func:`seqexplain.explain_many`; per document and method the
record holds the scores and:

* **faithfulness** (:func:`seqexplain.metrics.faithfulness.faithfulness`, ERASER variant, bins 1/5/10/20/50 %):
  comprehensiveness, sufficiency and their AOPC. Removal is ``"replace"`` by ``[MASK]`` over the document's word
  pieces only: ``[CLS]``/``[SEP]`` are never ranked nor removed (with deletion, dropping ``[CLS]`` would move the
  head and make any method that ranks it first look faithful). Beside the methods, ``random`` is
  :func:`~seqexplain.metrics.faithfulness.random_baseline` (3 seeded random rankings per document);
* **plausibility** against the human rationales, on word pieces: a piece is gold when the ERASER token its
  characters belong to (the tokenizer's offsets into the text) lies in an evidence span. Soft scores: AUPRC (mean
  over documents). Hard rationales: the top-``k`` pieces with ``k`` = the document's number of gold pieces (the
  human rationale rate, per document); for ``greedy`` its own rationale (specials removed). From them token P/R/F1
  and span IOU-F1 (a predicted span counts when its IOU with a gold span is ≥ 0.5), micro and macro over documents;
* **agreement**: Kendall τ between every two methods' scores over the document's pieces, averaged over documents
  (:func:`~seqexplain.metrics.agreement.agreement_matrix`).

Resumable: each (document, method) record is appended to ``<out>/evaluate/records.jsonl`` when done and skipped on
a rerun with the same settings (the library's :class:`~seqexplain.runs.records.RecordStore`; other settings are
refused); the sample of ``limit`` documents is the first ``limit`` of a seeded shuffle, so a larger limit extends a
smaller one. ``greedy`` runs on
the first ``greedy_limit`` documents of the sample only (default 10; quick 1); its rows say how many.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.data.eraser import EraserDocument, evidence_token_set, read_eraser
from seqexplain.errors import InputError
from seqexplain.experiments.eraser_movies.common import DEFAULT_MAX_LENGTH, LABELS, fit_documents, label_id, model_dir
from seqexplain.experiments.eraser_movies.tables import summarize, summary_markdown
from seqexplain.explain import encode_item, explain_many
from seqexplain.metrics.faithfulness import DEFAULT_BINS, faithfulness, random_baseline
from seqexplain.metrics.plausibility import auprc, spans_from_positions, top_k_rationale
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.loading import load_model, quiet_transformers
from seqexplain.runs import run_record
from seqexplain.runs.records import RecordStore, json_safe

METHODS = ("gradient_norm", "grad_x_input", "integrated_gradients", "occlusion", "attention_last", "attention_all",
           "attention_rollout", "greedy")
RANDOM = "random"
RANDOM_REPEATS = 3
HARD = ("greedy",)
# documents explained per batched call: each one's records are stored as its call ends, so a killed evaluation
# loses at most this many documents' work per method (a 256-piece review already fills a forward on its own)
PACK = 8


def gold_pieces(example: Example, doc: EraserDocument) -> list[int]:
    """Word pieces whose characters belong to an ERASER token of an evidence span (offsets into ``doc.text``)."""
    gold_tokens = evidence_token_set(doc)
    starts = [a for a, _ in doc.token_offsets]
    out = []
    for j, span in enumerate(example.offsets):
        if example.segments[j] == "special" or span is None or span[1] <= span[0]:
            continue
        token = bisect.bisect_right(starts, span[0]) - 1
        if token in gold_tokens:
            out.append(j)
    return out


def text_positions(example: Example) -> list[int]:
    return [j for j, seg in enumerate(example.segments) if seg != "special"]


def _metric_example(example: Example, positions: list[int]) -> Example:
    """The example with only the text pieces visible to the label: the metrics rank and remove only those."""
    vis = torch.zeros(1, example.length, dtype=torch.bool)
    vis[0, positions] = True
    return example.replace(visibility=vis)


def _finite(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else float(v) for v in values]


def doc_record(model: SequenceModel, example: Example, doc: EraserDocument, method: str, scores: np.ndarray,
               seed: int, rationale: list[int] | None = None, reached: bool | None = None,
               full_logprob: float | None = None) -> dict[str, Any]:
    """Every metric of one method's ``scores[L]`` (or the random baseline when ``method == RANDOM``). The record
    keeps the full input's ``log p`` (``full_logprob``), which is the same for every method of the document: given
    back here, it is not evaluated again (:func:`~seqexplain.metrics.faithfulness.faithfulness`)."""
    text = text_positions(example)
    metric_ex = _metric_example(example, text)
    gold = gold_pieces(example, doc)
    masked = np.full(example.length, np.nan)
    masked[text] = scores[text]
    given = None if full_logprob is None else np.array([full_logprob])
    if method == RANDOM:
        faith: Any = random_baseline(model, metric_ex, seed=seed, repeats=RANDOM_REPEATS, removal="replace",
                                     replace_with="mask", full_logprob=given)
        full = faith.runs[0].full_logprob
    else:
        faith = faithfulness(model, metric_ex, masked[None, :], removal="replace", replace_with="mask",
                             full_logprob=given)
        full = faith.full_logprob
    if rationale is not None:
        visible = set(text)
        predicted = sorted(j for j in rationale if j in visible)
    else:
        predicted = sorted(top_k_rationale(masked, len(gold))) if gold else []
    return {
        "docid": doc.docid, "method": method, "label": doc.label, "predicted": example.target_tokens[0],
        "n_pieces": len(text), "gold": gold, "scores": _finite(masked), "rationale": predicted,
        "comprehensiveness": _finite(faith.comprehensiveness[0]), "sufficiency": _finite(faith.sufficiency[0]),
        "aopc_comprehensiveness": float(faith.aopc_comprehensiveness[0]),
        "aopc_sufficiency": float(faith.aopc_sufficiency[0]),
        "auprc": auprc(masked, gold) if gold else None,
        "pred_spans": spans_from_positions(predicted), "gold_spans": spans_from_positions(gold), "reached": reached,
        "full_logprob": float(full[0]),
    }


def _key(docid: str, method: str) -> str:
    return f"{docid}|{method}"


def _sample(n: int, limit: int | None, seed: int) -> list[int]:
    """The first ``limit`` indices of a seeded shuffle of ``0..n-1`` (all of them, in file order, without a limit):
    a larger limit extends a smaller one, so its stored records are reused."""
    if limit is None or limit == 0 or limit >= n:
        return list(range(n))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[:limit]


def _load(model_path: Path) -> tuple[SequenceModel, int]:
    if not (model_path / "config.json").is_file():
        raise InputError(f"no trained classifier in {model_path}; run `seqexplain reproduce eraser_movies train` "
                         "with the same --out first, or pass --model")
    with quiet_transformers():
        model = load_model(model_path, kind="classifier")
    names = model.label_names() if hasattr(model, "label_names") else []
    if list(names) != list(LABELS):
        raise InputError(f"{model_path} has labels {names}, not {list(LABELS)}; evaluate a model trained by the "
                         "eraser_movies recipe")
    training = model_path / "training.json"
    max_length = json.loads(training.read_text(encoding="utf-8"))["config"]["max_length"] if training.is_file() \
        else DEFAULT_MAX_LENGTH
    return model, int(max_length)


def trained_quick(model_path: Path) -> bool | None:
    """Whether the model in ``model_path`` was made by ``train --quick`` (the tiny random BERT), read from the
    ``train_results.json`` beside it (``None`` when there is none: a model not trained by this recipe)."""
    path = model_path.parent / "train_results.json"
    if not path.is_file():
        return None
    made = json.loads(path.read_text(encoding="utf-8"))
    quick = made.get("run", {}).get("quick")
    return bool(quick) if quick is not None else "(quick)" in str(made.get("model", ""))


def run_evaluate(out: Path, *, quick: bool = False, data_root: Path | str | None = None, seed: int = 0,
                 limit: int | None = None, methods: tuple[str, ...] | None = None, greedy_limit: int | None = None,
                 ig_steps: int | None = None, model: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate (module docstring); write ``<out>/evaluate.json`` and ``<out>/evaluate.md``; return the summary."""
    docs_all = read_eraser("test", Path(data_root) / "eraser_movies" if data_root is not None else None)
    model_path = Path(model) if model is not None else model_dir(out)
    wrapped, max_length = _load(model_path)
    made_quick = trained_quick(model_path)
    notes: list[str] = []  # this call's warnings, stored with the results
    if made_quick and not quick:
        notes.append(f"the model in {model_path} was trained with --quick (a tiny random BERT on a few reviews): "
                     "these tables are a smoke test, not the documented MiniLM evaluation")
        warnings.warn(notes[-1], stacklevel=2)
    chosen = list(methods or METHODS)
    limit = 3 if quick and limit is None else limit
    greedy_n = greedy_limit if greedy_limit is not None else (1 if quick else 10)
    steps = ig_steps or (4 if quick else 20)
    sampled = [docs_all[i] for i in _sample(len(docs_all), limit, seed)]
    settings = {"max_length": max_length, "seed": seed, "ig_steps": steps, "bins": list(DEFAULT_BINS),
                "removal": "replace [MASK], text pieces only", "random_repeats": RANDOM_REPEATS,
                "model": str(Path(model) if model is not None else model_dir(out))}
    store = RecordStore(Path(out) / "evaluate" / "records.jsonl", settings=settings)
    fitted = fit_documents(wrapped.tokenizer, sampled, max_length, "test")
    picked, cut = fitted.docs, fitted.cut
    examples = [encode_item(wrapped, t.text) for t in cut]
    options: dict[str, dict[str, Any]] = {"integrated_gradients": {"steps": steps}}
    seconds: dict[str, float] = {}
    # the full input's log p of each document, from any stored record of it: evaluated once per document
    full = {r["docid"]: r["full_logprob"] for r in store.records.values() if r.get("full_logprob") is not None}
    for method in [*chosen, RANDOM]:
        todo = [i for i in range(len(picked)) if _key(picked[i].docid, method) not in store]
        if method in HARD:
            todo = [i for i in todo if i < greedy_n]
        started = time.perf_counter()
        if method == RANDOM:
            for i in todo:
                rec = {"key": _key(picked[i].docid, RANDOM), **doc_record(
                    wrapped, examples[i], picked[i], RANDOM, np.zeros(examples[i].length), seed + i,
                    full_logprob=full.get(picked[i].docid))}
                store.add(rec)
                full[picked[i].docid] = rec["full_logprob"]
        elif todo:
            results = explain_many(wrapped, [cut[i].text for i in todo], method, pack=PACK, progress=progress,
                                   **options.get(method, {}))
            for i, attr in zip(todo, results, strict=True):
                part = attr.rationale if method in HARD else None
                rec = {"key": _key(picked[i].docid, method), **doc_record(
                    wrapped, examples[i], picked[i], method, attr.scores[0], seed,
                    list(part.positions[0]) if part else None, part.reached[0] if part else None,
                    full.get(picked[i].docid))}
                store.add(rec)
                full[picked[i].docid] = rec["full_logprob"]
        seconds[method] = time.perf_counter() - started
    records = [store.records[_key(d.docid, m)] for d in picked for m in [*chosen, RANDOM] if _key(d.docid, m) in store]
    summary = summarize(records, [*chosen, RANDOM])
    summary.update({
        "experiment": "evaluate", "n_documents": len(picked), "n_test": len(docs_all), "limit": limit,
        "documents_skipped": fitted.skipped, "warnings": notes + fitted.warnings,
        "model_trained_quick": made_quick,
        "greedy_documents": min(greedy_n, len(picked)) if "greedy" in chosen else 0, "settings": settings,
        "accuracy": float(np.mean([label_id(d) == LABELS.index(e.target_tokens[0]) for d, e in
                                   zip(picked, examples, strict=True)])),
        "evidence_tokens_kept": sum(t.evidence_kept for t in cut),
        "evidence_tokens_cut": sum(t.evidence_cut for t in cut),
        "seconds_this_call": seconds, "run": run_record(seed, quick=quick),
    })
    summary["markdown"] = summary_markdown(summary)
    atomic_write_text(Path(out) / "evaluate.json", json.dumps(json_safe(summary), indent=2, allow_nan=False))
    atomic_write_text(Path(out) / "evaluate.md", summary["markdown"])
    return summary
