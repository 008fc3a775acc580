"""Paired view of the LM recipes: the same examples under the shipped and the compatible model.

The tables of :mod:`seqexplain.experiments.vafa2021_lm` average each model over its own examples; for analogies
those differ (each model's correctly predicted prompts are rationalized), and for LAMBADA a method's mean length
mixes passages where it reached the target with passages where it used the whole context. This view compares
like with like, per method:

* **LAMBADA** — over the passages where the method reached the target under *both* models: mean rationale length
  and mean token IOU with the human span under each model, and how many rationales got shorter / longer / stayed
  equal after the fine-tune.
* **Analogies** — over the examples rationalized under both models (for exhaustive search: where it found a
  rationale under both): mean length, Ante and No D under each model.

Input: ``<experiment>_<variant>.json`` summaries written by the recipes (their ``keys`` name the stored results
behind each table) and the ``<experiment>_<variant>.jsonl`` stores. Output: ``paired.{json,md}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from seqexplain.atomic import atomic_write_text
from seqexplain.errors import InputError
from seqexplain.metrics.analogies import contains_antecedent, no_distractor
from seqexplain.report.markdown import markdown_table
from seqexplain.runs import run_record
from seqexplain.runs.records import RecordStore

VARIANTS = ("shipped", "compatible")
COMMAND = "seqexplain reproduce vafa2021 {experiment} --out {out}{flag} (with the same options)"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def table_records(out_dir: Path, experiment: str, variant: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The summary of ``<experiment>_<variant>`` and the stored records its table was made from (``None`` when that
    run is absent)."""
    summary_file = out_dir / f"{experiment}_{variant}.json"
    if not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    keys = summary.get("keys")
    if keys is None:
        flag = " --compatible" if variant == "compatible" else ""
        raise InputError(f"{summary_file} does not list the results behind its table (written by an older version); "
                         "rerun " + COMMAND.format(experiment=experiment, out=out_dir, flag=flag)
                         + " — cached results are reused, so it only rewrites the summary")
    wanted = set(keys)
    store = out_dir / f"{experiment}_{variant}.jsonl"
    stored = RecordStore(store).records
    records = {k: stored[k] for k in wanted if k in stored}
    missing = wanted - records.keys()
    if missing:
        raise InputError(f"{store} lacks {len(missing)} of the results named in {summary_file}; rerun the experiment "
                         "to recompute them")
    return summary, list(records.values())


def _by_method(records: list[dict[str, Any]], example_key: str) -> dict[str, dict[Any, dict[str, Any]]]:
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    for rec in records:
        if rec.get("kind") == "rationale":
            out.setdefault(rec["method"], {})[rec[example_key]] = rec
    return out


def lambada_paired(shipped: list[dict[str, Any]], compatible: list[dict[str, Any]],
                   labels: dict[str, str]) -> list[dict[str, Any]]:
    """Per method (module docstring): passages in both runs, those reached under both, and on the latter the mean
    length and IOU under each model and the shorter / longer / equal counts."""
    a, b = _by_method(shipped, "lambada_index"), _by_method(compatible, "lambada_index")
    rows = []
    for method in [m for m in labels if m in a and m in b]:
        common = sorted(a[method].keys() & b[method].keys())
        both = [i for i in common if a[method][i]["reached"] and b[method][i]["reached"]]
        la = [a[method][i]["length"] for i in both]
        lb = [b[method][i]["length"] for i in both]
        rows.append({
            "method": labels[method], "passages": len(common), "reached both": len(both),
            "Length shipped": _mean(la), "Length compatible": _mean(lb),
            "shorter": sum(y < x for x, y in zip(la, lb, strict=True)),
            "longer": sum(y > x for x, y in zip(la, lb, strict=True)),
            "equal": sum(y == x for x, y in zip(la, lb, strict=True)),
            "IOU shipped": _mean([a[method][i]["iou"] for i in both]),
            "IOU compatible": _mean([b[method][i]["iou"] for i in both]),
        })
    return rows


ANALOGY_MEASURES: dict[str, Callable[[dict[str, Any]], float]] = {
    "Length": lambda r: float(len(r["rationale"])),
    "Ante": lambda r: float(contains_antecedent(r["rationale"], r["antecedent"])),
    "No D": lambda r: float(no_distractor(r["rationale"], r["distractor"])),
}


def analogies_paired(shipped: list[dict[str, Any]], compatible: list[dict[str, Any]],
                     labels: dict[str, str]) -> list[dict[str, Any]]:
    """Per method (module docstring): examples rationalized under both models (exhaustive: found under both) and
    their mean length, Ante and No D under each model."""
    a, b = _by_method(shipped, "id"), _by_method(compatible, "id")
    rows = []
    for method in [m for m in labels if m in a and m in b]:
        common = sorted(i for i in a[method].keys() & b[method].keys()
                        if method != "exhaustive" or (a[method][i]["rationale"] and b[method][i]["rationale"]))
        row: dict[str, Any] = {"method": labels[method], "examples": len(common)}
        for name, fn in ANALOGY_MEASURES.items():
            for variant, side in (("shipped", a[method]), ("compatible", b[method])):
                row[f"{name} {variant}"] = _mean([fn(side[i]) for i in common])
        rows.append(row)
    return rows


PAIRINGS: dict[str, tuple[str, Callable[..., list[dict[str, Any]]]]] = {
    "lambada": ("Annotated LAMBADA, passages reached under both models", lambada_paired),
    "analogies": ("Analogies, examples rationalized under both models", analogies_paired),
}


FINE_TUNE_ONLY = {"train_steps", "train_batch", "train_length", "train_lr", "lora_r", "lora_alpha", "mixture",
                  "eval_rows", "token_budget", "exhaustive_budget"}  # no effect on a shipped run, or batching only


def check_same_settings(experiment: str, shipped: dict[str, Any], compatible: dict[str, Any]) -> None:
    """:class:`InputError` unless both summaries have the same ``quick``, ``seed`` and method settings (those in
    :data:`FINE_TUNE_ONLY` may differ): a pair of other settings would show their difference as the fine-tune's."""
    def defining(summary: dict[str, Any]) -> dict[str, Any]:
        settings = {k: v for k, v in (summary.get("settings") or {}).items() if k not in FINE_TUNE_ONLY | {"quick"}}
        return {"quick": summary.get("quick"), "seed": summary.get("seed"), **settings}

    a, b = defining(shipped), defining(compatible)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if changed:
        raise InputError(f"the shipped and compatible {experiment} runs were made with other settings "
                         f"({', '.join(f'{k}: {a.get(k)!r} vs {b.get(k)!r}' for k in changed)}); rerun one of them "
                         "with the other's options")


def run_paired(out_dir: Path | str, labels: dict[str, str]) -> dict[str, Any]:
    """Paired tables for every experiment whose shipped and compatible runs are both in ``out_dir``; writes
    ``paired.{json,md}`` and returns the summary (``markdown`` holds the tables)."""
    out = Path(out_dir)
    summary: dict[str, Any] = {"experiment": "paired", "variant": "both", "quick": False, "tables": {}}
    parts = ["### Paired view: shipped vs compatible model"]
    for experiment, (title, fn) in PAIRINGS.items():
        shipped, compatible = (table_records(out, experiment, v) for v in VARIANTS)
        if shipped is None or compatible is None:
            continue
        (s_sum, s_recs), (c_sum, c_recs) = shipped, compatible
        check_same_settings(experiment, s_sum, c_sum)
        summary["quick"] = bool(summary.get("quick")) or bool(s_sum.get("quick"))
        rows = fn(s_recs, c_recs, labels)
        summary["tables"][experiment] = {"rows": rows, "models": [s_sum["model"], c_sum["model"]]}
        parts.append(f"#### {title}\n\n{s_sum['model']} vs {c_sum['model']}.\n\n{markdown_table(rows, floatfmt='.2f')}")
    if not summary["tables"]:
        raise InputError(f"{out} holds no experiment run with both models; run lambada or analogies with and without "
                         "--compatible first")
    if summary["quick"]:
        parts[0] += " (--quick runs: a tiny random model, not the documented one)"
    md = "\n\n".join(parts) + "\n"
    summary["markdown"] = md
    summary["run"] = run_record(None, seed_note="lm_paired reads stored results and draws nothing at random: "
                                           "its --seed is not used (the runs it pairs record their own seeds)")
    atomic_write_text(out / "paired.json", json.dumps(summary, indent=1, sort_keys=True, default=str))
    atomic_write_text(out / "paired.md", md)
    return summary


__all__ = ["FINE_TUNE_ONLY", "analogies_paired", "check_same_settings", "lambada_paired", "run_paired", "table_records"]
