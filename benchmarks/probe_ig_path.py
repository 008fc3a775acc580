"""Why integrated gradients from the zero baseline misses completeness on an RMSNorm model, whatever the steps.

Model: the embedded SmolLM2-135M-Instruct (``seqexplain.models.smollm2``), the demo's prompt, explained for the
model's own next token (``" Mary"``), ``log p`` of it. Three probes, printed as tables:

* ``path``: ``f(α·e)`` at α = 0, at 40 points geometrically spaced in [1e-6, 1e-2] and at 100 points in [0.01, 1]
  (one batched forward of the raw module): where it jumps, no quadrature of a few hundred nodes integrates it;
* ``steps``: seqexplain's IG at each ``--runs`` setting (``STEPS:RULE:BASELINE``), with its completeness error
  ``Σ_j a_j − (f(e) − f(b))`` (``meta["convergence_delta"]``) and whether it warned, plus captum's
  ``IntegratedGradients`` on the raw module (same forward, baseline zeros) for the zero-baseline Gauss-Legendre
  settings: its convergence delta and the largest difference between the two attributions.

Run: ``PYTHONPATH=src python benchmarks/probe_ig_path.py --threads 2`` (about 3 minutes on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import git_commit, machine_info  # noqa: E402

import seqexplain  # noqa: E402
from seqexplain.demo import DEMO_PROMPT  # noqa: E402

RUNS = "50:gausslegendre:zero,100:gausslegendre:zero,400:gausslegendre:zero,1000:riemann_middle:zero," \
       "50:gausslegendre:unk,200:gausslegendre:unk"


def _parse_runs(ap: argparse.ArgumentParser, text: str) -> list[tuple[int, str, str]]:
    """``--runs`` as ``(steps, rule, baseline)`` settings, each checked by the method's own option check
    (``ap.error``: one line, exit 2)."""
    from seqexplain.methods.registry import get_method

    out = []
    for spec in text.split(","):
        parts = spec.split(":")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            ap.error(f"--runs: {spec!r} is not STEPS:RULE:BASELINE (e.g. 20:gausslegendre:zero)")
        steps, rule, baseline = int(parts[0]), parts[1], parts[2]
        try:
            get_method("integrated_gradients").check_options({"steps": steps, "rule": rule, "baseline": baseline})
        except seqexplain.SeqExplainError as exc:
            ap.error(f"--runs {spec!r}: {exc}")
        out.append((steps, rule, baseline))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed (nothing here is random; recorded)")
    ap.add_argument("--runs", default=RUNS, help=f"comma-separated STEPS:RULE:BASELINE (default {RUNS})")
    args = ap.parse_args(argv)
    runs = _parse_runs(ap, args.runs)  # before any work: a bad setting was a traceback after the model loaded
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"# commit {git_commit()}; seed {args.seed}; {machine_info('cpu')}")
    from captum.attr import IntegratedGradients

    from seqexplain.models.smollm2 import smollm2

    model = smollm2()
    ex = model.encode(DEMO_PROMPT, None, max_new_tokens=1)
    raw, p, tgt = model.model, int(ex.target_positions[0]), int(ex.target_ids[0])
    assert ex.input_ids is not None
    emb = raw.get_input_embeddings()(ex.input_ids.view(1, -1)[:, :p]).detach()

    def f(e: torch.Tensor) -> torch.Tensor:
        logits = raw(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long)).logits[:, -1]
        return torch.log_softmax(logits.float(), -1)[:, tgt]

    print(f"\nprompt {DEMO_PROMPT!r}, target {ex.target_tokens[0]!r}\n\n## f(α·e) along the path from zero")
    alphas = np.concatenate([[0.0], np.geomspace(1e-6, 1e-2, 40), np.linspace(0.01, 1.0, 100)])
    with torch.no_grad():
        values = f(torch.tensor(alphas, dtype=emb.dtype).view(-1, 1, 1) * emb).numpy()
    print("| α | f |\n|---|---|")
    for a, v in zip(alphas, values, strict=True):
        print(f"| {a:.3g} | {v:.3f} |")

    print("\n## completeness error by steps, rule and baseline\n")
    print("| steps | rule | baseline | seconds | completeness error | warned | captum delta | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    ig = IntegratedGradients(f)
    for steps, rule, baseline in runs:
        t0 = time.perf_counter()
        attr = seqexplain.explain_example(model, ex, "integrated_gradients", steps=steps, rule=rule,
                                          baseline=baseline)
        seconds = time.perf_counter() - t0
        warned = any("completeness" in w for w in attr.warnings)
        delta = attr.meta["convergence_delta"][0]
        cap_delta = diff = "—"
        if baseline == "zero" and rule == "gausslegendre":
            a, d = ig.attribute(emb, baselines=torch.zeros_like(emb), n_steps=steps, method="gausslegendre",
                                return_convergence_delta=True, internal_batch_size=10)
            cap_delta = f"{float(d):.4g}"
            diff = f"{float(np.nanmax(np.abs(attr.scores[0, :p] - a.sum(-1)[0].detach().numpy()))):.2g}"
        print(f"| {steps} | {rule} | {baseline} | {seconds:.1f} | {delta:.4g} | {warned} | {cap_delta} | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
