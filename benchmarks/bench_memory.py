"""Where memory goes on long inputs: peak resident memory of a gradient method (and occlusion) on SmolLM2-135M at
several input lengths and token budgets, each configuration in a fresh process.

Prints the device, then per configuration the input length, the budget, seconds, and the peak RSS above the loaded
model's. The claim it checks (docs/methods.md, "Memory"): a gradient method's memory grows with the input's length
and does not fall with the token budget, because one row's activations are kept for the backward pass.

    python benchmarks/bench_memory.py --repeats-of-sentence 170 340 --budgets 4096 512 --threads 1 --seed 0

``--device cuda`` (or ``cuda:N``; default ``cpu``) loads the model there (``smollm2(device=...)``) and explains on it;
each subprocess then reports, instead of the RSS, the peak GPU memory torch allocated above what the loaded model
holds: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats`` minus
``torch.cuda.memory_allocated`` before the call (MB = 2**20 bytes, like the RSS column), under its own column and
field name (``peak_cuda_allocated_above_model_MB``); seconds are taken after ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_device  # noqa: E402

CHILD = r"""
import json, resource, sys, time, torch
torch.manual_seed(int(sys.argv[4])); torch.set_num_threads(int(sys.argv[5]))
from seqexplain.models.smollm2 import smollm2
import seqexplain as se
n_rep, budget, method, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[6]
cuda = torch.device(device).type == "cuda"
model = smollm2(device=device)
text = " ".join(["the cat sat on the mat"] * n_rep)
if cuda:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) / 2**20
else:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.time()
attr = se.explain(model, text, " and", method, token_budget=budget)
if cuda:
    torch.cuda.synchronize(device)
seconds = time.time() - t
row = {"method": method, "tokens": len(attr.tokens), "budget": budget, "seconds": seconds, "device": device}
if cuda:
    row["peak_cuda_allocated_above_model_MB"] = torch.cuda.max_memory_allocated(device) / 2**20 - before
else:
    row["peak_above_model_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
print(json.dumps(row))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats-of-sentence", type=int, nargs="+", default=[170, 340],
                    help="input lengths, as repeats of a 6-word sentence (170 ≈ 1,000 tokens)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[4096, 512])
    ap.add_argument("--methods", nargs="+", default=["gradient_norm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where the model runs; on CUDA the "
                    "peak GPU memory allocated above the model is reported instead of the RSS")
    args = ap.parse_args()
    check_device(ap, args.device)
    cuda = args.device.startswith("cuda")
    field, column = (("peak_cuda_allocated_above_model_MB", "peak CUDA allocated above model (MB)") if cuda
                     else ("peak_above_model_MB", "peak RSS above model (MB)"))
    print(f"device {args.device}, {args.threads} thread(s), seed {args.seed}")
    width = max(26, len(column))
    print(f"{'method':16} {'tokens':>7} {'budget':>7} {'seconds':>8} {column:>{width}}")
    for method in args.methods:
        for n in args.repeats_of_sentence:
            for b in args.budgets:
                out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(b), method, str(args.seed),
                                      str(args.threads), args.device], capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{row['method']:16} {row['tokens']:7d} {row['budget']:7d} {row['seconds']:8.1f} "
                      f"{row[field]:{width}.0f}")


if __name__ == "__main__":
    main()
