"""Vafa et al. 2021 translation experiments: markdown tables of the distractor and alignment results, and the
writer of an experiment's ``results.json`` (with the run record), ``table.md`` and ``rationales.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.atomic import atomic_write_text
from seqexplain.runs import run_record

METHOD_LABELS: dict[str, str] = {
    "gradient_norm": "Gradient norms", "grad_x_input": "Gradient × input", "integrated_gradients":
    "Integrated gradients", "attention_rollout": "Attention rollout", "attention_last": "Last attention",
    "attention_all": "All attentions", "greedy": "Greedy",
}


def _fmt(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.3f}"


def distractor_table(summary: dict[str, dict[str, float]]) -> str:
    """Markdown table of the distractor summary per method (greedy last; ``—`` for an undefined value)."""
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


def write_results(folder: Path, result: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Write ``result`` (with its run record added) to ``folder/results.json``, its table to ``table.md`` (headed by
    a smoke-run line when ``result["quick"]``) and the per-example ``records`` to ``rationales.jsonl``."""
    result["run"] = run_record(result.get("seed"), quick=bool(result.get("quick")))
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(result, indent=2, ensure_ascii=False, default=float))
    quick = "**--quick smoke run (toy model), not the documented one.**\n\n" if result.get("quick") else ""
    atomic_write_text(folder / "table.md", quick + result["table"])
    atomic_write_text(folder / "rationales.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def alignment_table(methods: dict[str, dict[str, float]]) -> str:
    """Markdown table of the alignment scores per method (greedy last; ``—`` for an undefined value)."""
    head = ("| Method | Length | AER ↓ | AER (paper's script) ↓ | IOU ↑ | F1 ↑ | Top1 ↑ | Reached |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for key in [k for k in methods if k != "greedy"] + (["greedy"] if "greedy" in methods else []):
        m = methods[key]
        lines.append(f"| {METHOD_LABELS.get(key, key)} | {m['length']:.1f} | {_fmt(m['aer'])} | "
                     f"{_fmt(m['aer_vafa'])} | {_fmt(m['iou'])} | {_fmt(m['f1'])} | {_fmt(m['top1'])} | "
                     f"{_fmt(m.get('reached', float('nan')))} |")
    return head + "\n".join(lines) + "\n"
