"""Corpus-level numbers of a finished run, read shard by shard from its store, and the reports written from them
(:mod:`seqexplain.report.run_report`).

Per method (means over the rows where a value is defined):

* faithfulness: ``aopc_comprehensiveness`` / ``aopc_sufficiency`` and the random baseline's, the perturbation
  curves (comprehensiveness / sufficiency per bin, averaged over examples and targets);
* plausibility: mean ``auprc``; token precision / recall / F1 as ERASER's micro (pooled tokens) and macro (mean of
  the examples') averages (:func:`seqexplain.metrics.token_prf_corpus`); IOU F1 micro and macro over the discretised
  rationales' spans (:func:`seqexplain.metrics.iou_f1`, threshold from the config);
* info: examples, rows, and how many examples were skipped (too long; a text with nothing the tokenizer reads) or
  truncated (rows with a ``truncated:`` warning);
* rationale searches (rationale methods, from ``rationale`` / ``rationale_reached``): per method the number of
  searches (examples × targets), how many reached the target (the model predicts it from the rationale alone) and
  the mean rationale length;
* agreement: the ``[M, M]`` matrix of each metric, entry ``(a, b)`` = mean over examples of the per-example value
  (diagonal 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.atomic import atomic_write_text
from seqexplain.attribution import Attribution
from seqexplain.metrics import DEFAULT_BINS, FERRET_THRESHOLDS, iou_f1, spans_from_positions, token_prf_corpus
from seqexplain.report._common import reduced_precision
from seqexplain.report.run_report import ExampleView, RunSummary, render_run_html, render_run_markdown
from seqexplain.runs.compute import count_skips
from seqexplain.runs.config import RunConfig
from seqexplain.runs.store import RunStore

_MEANS = ("aopc_comprehensiveness", "random_aopc_comprehensiveness", "aopc_sufficiency", "random_aopc_sufficiency",
          "seconds")
_COLUMNS = ["index", "method", *_MEANS, "comprehensiveness", "sufficiency", "random_comprehensiveness",
            "random_sufficiency", "auprc", "predicted_rationale", "rationale", "rationale_reached", "gold_positions",
            "agreement", "warnings"]


class _Mean:
    def __init__(self) -> None:
        self.total: Any = 0.0
        self.n: Any = 0
        self.left_out = 0  # non-finite scalar values (a NaN or infinite AOPC, AUPRC or agreement)

    def add(self, value: Any) -> None:
        if value is None:
            return
        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 2:  # [T, bins]: mean over targets per bin, NaN (ferret's skipped bins) left out
            ok = np.isfinite(v)
            self.total = self.total + np.where(ok, v, 0.0).sum(0)
            self.n = self.n + ok.sum(0)
        elif np.isfinite(v):
            self.total += float(v)
            self.n += 1
        else:
            self.left_out += 1

    def curve(self, n_bins: int) -> list[float]:
        """The per-bin means of ``[T, bins]`` values; NaN at every bin when none was added (no rows)."""
        value = self.value()
        return value if isinstance(value, list) else [math.nan] * n_bins

    def value(self) -> Any:
        if np.ndim(self.n):
            with np.errstate(invalid="ignore", divide="ignore"):
                return [float(x) for x in self.total / self.n]
        return self.total / self.n if self.n else float("nan")


def _bins(cfg: RunConfig) -> list[float]:
    f = cfg.metrics.faithfulness
    if f.bins is not None:
        return list(f.bins)
    return list(FERRET_THRESHOLDS if f.variant == "ferret" else DEFAULT_BINS)


def summarize(store: RunStore, cfg: RunConfig, n_examples: int = 5) -> RunSummary:
    """The :class:`RunSummary` of a finished run (module docstring); ``n_examples`` first examples are shown."""
    methods = [m.key for m in cfg.methods]
    means = {m: {k: _Mean() for k in (*_MEANS, "auprc", "c", "s")} for m in methods}
    random_curve = {"c": _Mean(), "s": _Mean()}
    rationales: dict[str, tuple[list[list[int]], list[list[int]]]] = {m: ([], []) for m in methods}
    agree: dict[str, dict[tuple[str, str], _Mean]] = {}
    searches: dict[str, dict[str, int]] = {}
    unscored: dict[str, int] = {}
    n_rows = n_truncated = 0
    for table in store.tables(_COLUMNS):
        for row in table.to_pylist():
            n_rows += 1
            m = row["method"]
            for k in _MEANS + ("auprc",):
                means[m][k].add(row[k])
            means[m]["c"].add(row["comprehensiveness"])
            means[m]["s"].add(row["sufficiency"])
            if m == methods[0]:
                n_truncated += any(w.startswith("truncated:") for w in row["warnings"] or [])
                random_curve["c"].add(row["random_comprehensiveness"])
                random_curve["s"].add(row["random_sufficiency"])
            if row["gold_positions"] is not None and row["predicted_rationale"] is not None:
                rationales[m][0].append(row["predicted_rationale"])
                rationales[m][1].append(row["gold_positions"])
            elif row["gold_positions"] is not None and cfg.metrics.plausibility.enabled:
                unscored[m] = unscored.get(m, 0) + 1  # no gold token left, or no finite score: its warning says
            if row["rationale"] is not None:
                _count_searches(searches.setdefault(m, {"searches": 0, "reached": 0, "positions": 0}), row)
            for metric, others in json.loads(row["agreement"]).items():
                for other, value in others.items():
                    agree.setdefault(metric, {}).setdefault((m, other), _Mean()).add(value)
    infos = [store.shard_info(s) or {} for s in range(store.n_shards)]  # each shard's metadata, read once
    reasons = [str(k.get("reason", "")) for info in infos for k in info.get("skipped", [])]
    too_long, unreadable = count_skips(reasons)
    summary = RunSummary(title=f"seqexplain run {store.config_hash[:12]}", methods=methods, info={
        "examples": store.n_items, "rows": n_rows, "methods": ", ".join(methods), "config hash": store.config_hash,
        "skipped (too long)": too_long, "skipped (unreadable text)": unreadable,
        "truncated (tokens cut)": n_truncated,
        "data": " ".join(x for x in (cfg.data.format, Path(cfg.data.path).name if cfg.data.path else "",
                                     cfg.data.split if cfg.data.format in ("sst", "eraser") else "") if x),
        "seed": cfg.seed, "shards": store.n_shards})
    # as the single-result views say it, from what the shards' invocations ran (a saved bfloat16 model loads as one
    # without model.dtype; a resumed run may have run on another device)
    reduced = sorted({text for info in infos
                      if (text := reduced_precision((info.get("run") or {}).get("precision") or {}))})
    if reduced:
        summary.info["precision"] = "; ".join(reduced)
    left_out = [f"{m} {k}: {mean.left_out} of {mean.left_out + mean.n}" for m in methods
                for k, mean in means[m].items() if k not in ("c", "s") and mean.left_out]
    left_out += [f"{metric} {a} vs {b}: {mean.left_out} of {mean.left_out + mean.n}"
                 for metric, pairs in agree.items() for (a, b), mean in pairs.items() if mean.left_out]
    if left_out:  # a mean over fewer rows than the table suggests says so
        summary.info["non-finite values left out of the means"] = "; ".join(left_out)
    if unscored:
        summary.info["examples with gold left out of plausibility (see their warnings)"] = "; ".join(
            f"{m}: {n}" for m, n in unscored.items())
    if cfg.metrics.faithfulness.enabled:
        summary.faithfulness = {m: {k: means[m][k].value() for k in _MEANS} for m in methods}
        summary.bins = _bins(cfg)
        n_bins = len(summary.bins)
        summary.curves = {m: {"comprehensiveness": means[m]["c"].curve(n_bins),
                              "sufficiency": means[m]["s"].curve(n_bins)} for m in methods}
        if cfg.metrics.faithfulness.random_baseline:
            summary.curves["random"] = {"comprehensiveness": random_curve["c"].curve(n_bins),
                                        "sufficiency": random_curve["s"].curve(n_bins)}
    summary.plausibility = _plausibility(cfg, methods, means, rationales)
    summary.rationales = {m: {"searches": c["searches"], "reached": c["reached"],
                              "mean_length": c["positions"] / c["searches"] if c["searches"] else float("nan")}
                          for m in methods if (c := searches.get(m)) is not None}
    for metric, pairs in agree.items():
        mat = np.eye(len(methods))
        for (a, b), mean in pairs.items():
            mat[methods.index(a), methods.index(b)] = mean.value()
        summary.agreement[metric] = mat
    summary.examples = _examples(store, methods, n_examples)
    return summary


def _count_searches(counts: dict[str, int], row: dict[str, Any]) -> None:
    """Add a rationale row's searches (one per target), those that reached the target, and their positions."""
    reached = row["rationale_reached"] or []
    counts["searches"] += len(row["rationale"])
    counts["reached"] += sum(bool(r) for r in reached)
    counts["positions"] += sum(len(p) for p in row["rationale"])


def _plausibility(cfg: RunConfig, methods: list[str], means: dict[str, dict[str, _Mean]],
                  rationales: dict[str, tuple[list[list[int]], list[list[int]]]]) -> dict[str, dict[str, Any]]:
    out = {}
    for m in methods:
        pred, gold = rationales[m]
        if not pred:
            continue
        micro, macro = token_prf_corpus(pred, gold, "micro"), token_prf_corpus(pred, gold, "macro")
        spans_p = [spans_from_positions(p) for p in pred]
        spans_g = [spans_from_positions(g) for g in gold]
        t = cfg.metrics.plausibility.iou_threshold
        out[m] = {"auprc": means[m]["auprc"].value(), "token_f1_micro": micro.f1, "token_f1_macro": macro.f1,
                  "token_precision_micro": micro.precision, "token_recall_micro": micro.recall,
                  "iou_f1_micro": iou_f1(spans_p, spans_g, t, "micro").f1,
                  "iou_f1_macro": iou_f1(spans_p, spans_g, t, "macro").f1, "examples": len(pred)}
    return out


def _examples(store: RunStore, methods: list[str], n: int) -> list[ExampleView]:
    views: dict[int, ExampleView] = {}
    for table in store.tables():
        for row in table.to_pylist():
            if row["index"] not in views and len(views) >= n:
                continue
            view = views.setdefault(row["index"], ExampleView(row["index"], row["id"], {}, row["gold_positions"]))
            view.attributions[row["method"]] = _attribution(row)
        if len(views) >= n:
            break
    for view in views.values():
        view.attributions = {m: view.attributions[m] for m in methods if m in view.attributions}
    return sorted(views.values(), key=lambda v: v.index)[:n]


def _attribution(row: dict[str, Any]) -> Attribution:
    scores = np.array([[math.nan if v is None else v for v in r] for r in row["scores"]], dtype=np.float64)
    return Attribution(tokens=row["tokens"], scores=scores, target_tokens=row["target_tokens"],
                       target_positions=row["target_positions"],
                       offsets=[None if o is None else (int(o[0]), int(o[1])) for o in row["offsets"]],
                       segments=row["segments"], method=row["method_name"], options=json.loads(row["options"]),
                       text=row["text"], target_text=row["target_text"] or "", warnings=row["warnings"])


def write_reports(store: RunStore, cfg: RunConfig) -> list[Path]:
    """``report.html`` and ``summary.md`` in the run folder (atomic writes); returns their paths."""
    summary = summarize(store, cfg, cfg.output.report_examples)
    html_path = atomic_write_text(store.folder / "report.html", render_run_html(summary))
    md_path = atomic_write_text(store.folder / "summary.md", render_run_markdown(summary))
    return [html_path, md_path]


__all__ = ["summarize", "write_reports"]
