"""Vafa et al. (2021) LM recipes (:mod:`seqexplain.experiments.vafa2021_lm`): encoding the examples and scoring
the rationales.

* LAMBADA: :func:`lambada_example` (the passage → its last word, and the human rationale as token positions),
  :func:`word_rationale` (the union of the word's token rationales, restricted to the context before the word),
  :func:`lambada_summary` (``Length``, mean ``IOU``, pooled ``F1``, ``reached``, seconds per token).
* Analogies: :func:`encode_analogy` (prompt → target, with the antecedent and distractor positions),
  :func:`analogy_correct` / :func:`cached_check` (does the model predict the target with and without the
  distractor), :func:`analogy_summary` (``Length``, ``Ratio``, ``Ante``, ``No D``, seconds per token).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from seqexplain.data.analogies import AnalogyExample, char_span_positions
from seqexplain.data.annotated_lambada import LambadaRationale, gold_token_positions
from seqexplain.experiments.vafa2021_lm_settings import LABELS, mean_or_nan, predicts_target
from seqexplain.metrics.analogies import analogy_scores
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.runs.records import RecordStore


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
        rows.append({"method": LABELS[m], "n": len(recs), "Length": mean_or_nan([r["length"] for r in recs]),
                     "IOU": mean_or_nan([r["iou"] for r in recs]), "F1": f1 if recs else float("nan"),
                     "reached": mean_or_nan([float(r["reached"]) for r in recs]),
                     "s/token": sum(r["seconds"] for r in recs) / n_tok if n_tok else float("nan")})
    return rows


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
    with_d = predicts_target(model, model.encode(item.prompt, item.target))
    without = predicts_target(model, model.encode(item.distractor_removed(), item.target))
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
        seconds = mean_or_nan([r["seconds"] for r in mine])  # exhaustive: searches that gave up are timed too
        if m == "exhaustive":
            mine = [r for r in mine if r["rationale"]]  # searches that found a rationale within max_size
        scores = analogy_scores([r["rationale"] for r in mine], [r["antecedent"] for r in mine],
                                [r["distractor"] for r in mine], [ex_len.get(r["id"]) for r in mine])
        row: dict[str, Any] = {"method": LABELS[m], "n": len(mine), "Length": scores["length"],
                               "Ratio": scores["ratio"], "n Ratio": int(scores["n_ratio"])}
        if exhaustive_max_size is not None:
            bounds = [len(r["rationale"]) / (ex_len[r["id"]] or exhaustive_max_size + 1)
                      for r in mine if r["id"] in ex_len]
            row["Ratio ≤"] = mean_or_nan(bounds)
            row["n searched"] = len(exhaustive) if m == "exhaustive" else len(bounds)
        row.update({"Ante": scores["ante"], "No D": scores["no_d"], "s/token": seconds})
        rows.append(row)
    return rows


__all__ = ["EncodedAnalogy", "analogy_correct", "analogy_summary", "cached_check", "encode_analogy", "lambada_example",
           "lambada_summary", "word_rationale"]
