"""Markdown tables of a ger2021 result (:mod:`seqexplain.experiments.ger2021`)."""

from __future__ import annotations

from typing import Any


def _f(x: Any, digits: int = 3) -> str:
    return "—" if x is None else f"{float(x):.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    quick = " (--quick smoke run, not the documented one)" if result.get("run", {}).get("quick") else ""
    lines = [f"### ger2021 {result['experiment']}{quick}", "", "Event types: " + ", ".join(result["event_types"]), ""]
    lines += ["| decoder | model | eval loss | accuracy | macro F1 |", "|---|---|---:|---:|---:|"]
    for dec, comp in result["decoders"].items():
        for r, m in enumerate(comp["models"]):
            lines.append(f"| {dec} | {r} | {_f(m['loss'])} | {_f(m['accuracy'])} | {_f(m['f1'])} |")
    lines += ["", "| decoder | method | k (model 0 / 1) | silhouette (0 / 1) | sizes model 0 | sizes model 1 | "
              "ARI models (chosen k) | ARI models (k of model 0) |", "|---|---|---|---|---|---|---:|---:|"]
    for dec, comp in result["decoders"].items():
        for name, m in comp["methods"].items():
            a, b = m["model_0"], m["model_1"]
            lines.append(f"| {dec} | {name} | {a['k']} / {b['k']} | {_f(a['silhouette'])} / {_f(b['silhouette'])} | "
                         f"{a['cluster_sizes']} | {b['cluster_sizes']} | {_f(m['ari_models_chosen_k'])} | "
                         f"{_f(m['ari_models_common_k'])} |")
    lines += ["", "| decoder | methods compared | ARI |", "|---|---|---:|"]
    for dec, comp in result["decoders"].items():
        for pair, v in comp["ari_methods"].items():
            lines.append(f"| {dec} | {pair} | {_f(v)} |")
    if result["paths"]:
        lines += ["", "| decoder | path | points | max loss | barrier | bound | fallbacks | reached w₂ |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
        for dec, p in result["paths"].items():
            for name in ("straight_line", "valley", "bezier"):
                s = p[name]
                lines.append(f"| {dec} | {name} | {s['points']} | {_f(s['max_loss'], 4)} | {_f(s['barrier'], 4)} | "
                             f"{_f(s['bound'], 4)} | {s['fallbacks']} | {s['reached']} |")
        for dec, p in result["paths"].items():
            for which in ("along_valley", "along_line"):
                lines += ["", f"{dec}, {which.replace('_', ' ')} (KMeans k = {p['k']}; ARI of each point's clusters "
                          "with the previous point / w₁ / w₂):", "",
                          "| t | loss | accuracy | F1 | attention ARI prev / w₁ / w₂ | gradient ARI prev / w₁ / w₂ |",
                          "|---:|---:|---:|---:|---|---|"]
                for r in p[which]:
                    att = " / ".join(_f(r[f"attention_last_ari_{w}"], 2) for w in ("prev", "start", "end"))
                    grad = " / ".join(_f(r[f"gradient_norm_ari_{w}"], 2) for w in ("prev", "start", "end"))
                    lines.append(f"| {_f(r['t'], 2)} | {_f(r['loss'])} | {_f(r['accuracy'])} | {_f(r['f1'])} | {att} | "
                                 f"{grad} |")
    if result.get("warnings"):
        lines += ["", "Warnings: " + "; ".join(result["warnings"])]
    return "\n".join(lines) + "\n"
