"""Where memory goes on long inputs: peak resident memory of a gradient method (and occlusion) on SmolLM2-135M at
several input lengths and token budgets, each configuration in a fresh process.

Prints, per configuration, the input length, the budget, seconds, and the peak RSS above the loaded model's.
The claim it checks (docs/methods.md, "Memory"): a gradient method's memory grows with the input's length and does
not fall with the token budget, because one row's activations are kept for the backward pass.

    python benchmarks/bench_memory.py --repeats-of-sentence 170 340 --budgets 4096 512 --threads 1 --seed 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
torch.manual_seed(int(sys.argv[4])); torch.set_num_threads(int(sys.argv[5]))
from seqexplain.models.smollm2 import smollm2
import seqexplain as se
n_rep, budget, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
model = smollm2()
text = " ".join(["the cat sat on the mat"] * n_rep)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.time()
attr = se.explain(model, text, " and", method, token_budget=budget)
print(json.dumps({"method": method, "tokens": len(attr.tokens), "budget": budget, "seconds": time.time() - t,
                  "peak_above_model_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats-of-sentence", type=int, nargs="+", default=[170, 340],
                    help="input lengths, as repeats of a 6-word sentence (170 ≈ 1,000 tokens)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[4096, 512])
    ap.add_argument("--methods", nargs="+", default=["gradient_norm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{'method':16} {'tokens':>7} {'budget':>7} {'seconds':>8} {'peak RSS above model (MB)':>26}")
    for method in args.methods:
        for n in args.repeats_of_sentence:
            for b in args.budgets:
                out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(b), method, str(args.seed),
                                      str(args.threads)], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{row['method']:16} {row['tokens']:7d} {row['budget']:7d} {row['seconds']:8.1f} "
                      f"{row['peak_above_model_MB']:26.0f}")


if __name__ == "__main__":
    main()
