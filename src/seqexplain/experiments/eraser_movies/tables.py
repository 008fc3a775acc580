"""The corpus-level numbers of the ERASER movies evaluation, from its per-(document, method) records.

* faithfulness: the means over documents of AOPC comprehensiveness / sufficiency and of each bin's values; an
  undefined value (NaN when computed, ``null`` in the records file) is left out of its mean and counted
  (``missing``: documents whose AOPC comprehensiveness or sufficiency is undefined), with a note under the tables;
* each method's AOPC against the random baseline on the same documents: the mean paired difference with a 95 %
  percentile-bootstrap interval over documents (:func:`~seqexplain.metrics.bootstrap.paired_difference_ci`, 2,000
  resamples, seed 0), so that "better than random" is read with its uncertainty;
* plausibility, over the documents with a gold piece inside the window only (ERASER's rule: a review whose evidence
  truncation cut off has nothing to be plausible to, and is neither 0 nor 1; the table's ``docs`` counts them, a note
  says how many were left out, and a method with none reads ``—``): mean AUPRC; token P/R/F1 and IOU-F1
  (threshold 0.5) of the hard rationales, micro and macro (:func:`~seqexplain.metrics.plausibility.token_prf_corpus`,
  :func:`~seqexplain.metrics.plausibility.iou_f1`); the mean rationale length; for a random ranking the expected
  AUPRC and top-``|G|`` token P = R = F1 are the gold rate ``|G| / n`` of each document, averaged (``random``);
* notes under the tables: how many human-evidence tokens truncation cut off, the recipe's warnings (e.g. documents
  skipped because their first token alone is longer than the model's length), and on how many documents greedy
  ran and met its stopping rule;
* agreement: Kendall τ between the soft methods' scores (greedy's order scores are a few ranks and ties, so it is
  left out), :func:`~seqexplain.metrics.agreement.agreement_matrix` per document, averaged over documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from seqexplain.metrics.agreement import agreement_matrix
from seqexplain.metrics.bootstrap import paired_difference_ci
from seqexplain.metrics.faithfulness import DEFAULT_BINS
from seqexplain.metrics.plausibility import iou_f1, token_prf_corpus
from seqexplain.report.markdown import markdown_table
from seqexplain.runs.records import json_safe

RANDOM = "random"
NO_AGREEMENT = ("greedy", RANDOM)


def _defined(value: float | None) -> bool:
    """A stored value is missing when it is ``null`` (how the record store writes NaN) or non-finite."""
    return value is not None and bool(np.isfinite(value))


def _mean(values: Sequence[float | None]) -> float:
    finite = [float(v) for v in values if v is not None and _defined(v)]  # (None checked for the type checker)
    return float(np.mean(finite)) if finite else float("nan")


def _scores(rec: dict[str, Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in rec["scores"]], dtype=np.float64)


def summarize(records: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Per-method faithfulness and plausibility and the agreement matrix (module docstring)."""
    by_method: dict[str, list[dict[str, Any]]] = {m: [r for r in records if r["method"] == m] for m in methods}
    faith, plaus = {}, {}
    for method, recs in by_method.items():
        if not recs:
            continue
        faith[method] = {
            "n": len(recs),
            "missing": sum(not all(_defined(r[k]) for k in ("aopc_comprehensiveness", "aopc_sufficiency"))
                           for r in recs),
            "aopc_comprehensiveness": _mean([r["aopc_comprehensiveness"] for r in recs]),
            "aopc_sufficiency": _mean([r["aopc_sufficiency"] for r in recs]),
            "comprehensiveness": [_mean([r["comprehensiveness"][b] for r in recs]) for b in range(len(DEFAULT_BINS))],
            "sufficiency": [_mean([r["sufficiency"][b] for r in recs]) for b in range(len(DEFAULT_BINS))],
        }
        scored = [r for r in recs if r["gold"]]  # documents with gold inside the window (module docstring)
        base = {"n": len(scored), "without_gold": len(recs) - len(scored),
                "reached": _mean([float(r["reached"]) for r in recs if r.get("reached") is not None])}
        if not scored:
            plaus[method] = {**base, "auprc": float("nan"), "token_micro": [float("nan")] * 3,
                             "token_macro_f1": float("nan"), "iou_micro": [float("nan")] * 3,
                             "iou_macro_f1": float("nan"), "length": float("nan"), "expected": method == RANDOM}
            continue
        if method == RANDOM:
            rate = _mean([len(r["gold"]) / r["n_pieces"] for r in scored])
            plaus[method] = {**base, "auprc": rate, "token_micro": [rate, rate, rate], "expected": True}
            continue
        preds, golds = [r["rationale"] for r in scored], [r["gold"] for r in scored]
        pred_spans = [[tuple(s) for s in r["pred_spans"]] for r in scored]
        gold_spans = [[tuple(s) for s in r["gold_spans"]] for r in scored]
        plaus[method] = {
            **base, "auprc": _mean([r["auprc"] for r in scored]),
            "token_micro": list(vars(token_prf_corpus(preds, golds, "micro")).values()),
            "token_macro_f1": token_prf_corpus(preds, golds, "macro").f1,
            "iou_micro": list(vars(iou_f1(pred_spans, gold_spans, 0.5, "micro")).values()),
            "iou_macro_f1": iou_f1(pred_spans, gold_spans, 0.5, "macro").f1,
            "length": _mean([len(r["rationale"]) for r in scored]),
        }
    _against_random(faith, by_method)
    soft = [m for m in methods if m not in NO_AGREEMENT and by_method.get(m)]
    docs = sorted({r["docid"] for r in by_method[soft[0]]}) if soft else []
    per_doc = []
    for docid in docs:
        rows = {m: next((r for r in by_method[m] if r["docid"] == docid), None) for m in soft}
        if all(rows.values()):
            per_doc.append(agreement_matrix({m: _scores(r) for m, r in rows.items() if r is not None}, "kendall_tau"))
    matrix = np.nanmean(np.stack(per_doc), axis=0).tolist() if per_doc else []
    return {"faithfulness": faith, "plausibility": plaus,
            "agreement": {"methods": soft, "metric": "kendall_tau", "n_documents": len(per_doc), "matrix": matrix}}


def _against_random(faith: dict[str, dict[str, Any]], by_method: dict[str, list[dict[str, Any]]]) -> None:
    """``faith[m]["vs_random"]``: AOPC comprehensiveness and sufficiency of ``m`` minus the random baseline's, paired
    by document, with bootstrap intervals (module docstring)."""
    base = {r["docid"]: r for r in by_method.get(RANDOM, [])}
    if not base:
        return
    for method, recs in by_method.items():
        paired = [(r, base[r["docid"]]) for r in recs if r["docid"] in base]
        if method == RANDOM or not paired:
            continue
        faith[method]["vs_random"] = {  # undefined bounds (fewer than two documents) as None, as the records hold them
            key: json_safe(vars(paired_difference_ci([r[f"aopc_{key}"] for r, _ in paired],
                                                     [b[f"aopc_{key}"] for _, b in paired])))
            for key in ("comprehensiveness", "sufficiency")}


def _ci(d: dict[str, Any] | None) -> str:
    if d is None:
        return "—"
    return f"{_f(d['mean'])} [{_f(d['low'])}, {_f(d['high'])}]"


def _f(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The three tables (faithfulness, plausibility, agreement) as markdown, headed by a smoke-test line when the run
    or its model's training was ``--quick``."""
    faith, plaus, agree = summary["faithfulness"], summary["plausibility"], summary["agreement"]
    bins = "/".join(f"{b:g}" for b in DEFAULT_BINS)
    rows = [{"method": m, "docs": f["n"], "AOPC comp. ↑": _f(f["aopc_comprehensiveness"]),
             "AOPC suff. ↓": _f(f["aopc_sufficiency"]),
             "comp. − random [95 % CI]": _ci(f.get("vs_random", {}).get("comprehensiveness")),
             "suff. − random [95 % CI]": _ci(f.get("vs_random", {}).get("sufficiency")),
             f"comp. @ {bins} %": " / ".join(_f(v, 2) for v in f["comprehensiveness"]),
             f"suff. @ {bins} %": " / ".join(_f(v, 2) for v in f["sufficiency"])} for m, f in faith.items()]
    prow = []
    for m, p in plaus.items():
        if p.get("expected"):
            prow.append({"method": f"{m} (expected)", "docs": p["n"], "AUPRC ↑": _f(p["auprc"]),
                         "token P": _f(p["token_micro"][0]), "token R": _f(p["token_micro"][1]),
                         "token F1": _f(p["token_micro"][2]), "token F1 (macro)": "—", "IOU P": "—", "IOU R": "—",
                         "IOU F1": "—", "IOU F1 (macro)": "—", "mean length": "—"})
            continue
        prow.append({"method": m, "docs": p["n"], "AUPRC ↑": _f(p["auprc"]), "token P": _f(p["token_micro"][0]),
                     "token R": _f(p["token_micro"][1]), "token F1": _f(p["token_micro"][2]),
                     "token F1 (macro)": _f(p["token_macro_f1"]), "IOU P": _f(p["iou_micro"][0]),
                     "IOU R": _f(p["iou_micro"][1]), "IOU F1": _f(p["iou_micro"][2]),
                     "IOU F1 (macro)": _f(p["iou_macro_f1"]), "mean length": _f(p["length"], 1)})
    arow = [{"method": m, **{n: _f(v, 2) for n, v in zip(agree["methods"], line, strict=True)}}
            for m, line in zip(agree["methods"], agree["matrix"], strict=True)]
    parts = [
        *(["**Smoke test (--quick or a model trained with --quick): not the documented evaluation.**", ""]
          if summary.get("run", {}).get("quick") or summary.get("model_trained_quick") else []),
        f"### Faithfulness (ERASER; log p differences; {summary['n_documents']} documents)", "",
        markdown_table(rows), "",
        "### Plausibility against the human rationales (word pieces; token P/R/F1 and IOU micro)", "",
        markdown_table(prow), "",
        f"### Agreement: Kendall τ between methods (mean over {agree['n_documents']} documents)", "",
        markdown_table(arow) if arow else "(fewer than one soft method)", "",
    ]
    notes = []
    if summary.get("evidence_tokens_cut"):
        notes.append(f"- truncation: {summary['evidence_tokens_cut']} of "
                     f"{summary['evidence_tokens_cut'] + summary.get('evidence_tokens_kept', 0)} human-evidence tokens "
                     "were cut off with the document ends and are not in the gold rationales above")
    notes.extend(f"- warning: {w}" for w in summary.get("warnings", []))
    missing = {m: f["missing"] for m, f in faith.items() if f.get("missing")}
    if missing:
        notes.append(f"- faithfulness: {sum(missing.values())} undefined AOPC value(s) (NaN) left out of the means: "
                     + ", ".join(f"{m} {n} of {faith[m]['n']} documents" for m, n in missing.items()))
    left_out = {m: p["without_gold"] for m, p in plaus.items() if p.get("without_gold")}
    if left_out:
        notes.append("- plausibility: documents whose human evidence truncation cut off entirely are left out "
                     "(ERASER's rule; `docs` counts the rest): " + ", ".join(f"{m} {n}" for m, n in left_out.items()))
    greedy = plaus.get("greedy")
    if greedy is not None:
        notes.append(f"- greedy: run on {greedy['n'] + greedy['without_gold']} of {summary['n_documents']} documents; "
                     "fraction that met its "
                     f"stopping rule: {_f(greedy['reached'], 2)} (the rest used the whole context or hit max_size)")
    if notes:
        parts.extend(["### Notes", "", *notes, ""])
    return "\n".join(parts)
