"""Benchmark: vectorised online state gradients vs a per-(t, d) autograd loop (Verwimp et al. 2018 model size).

Model: 1-layer LSTM, 64-d embeddings, 256 hidden units, vocabulary 10,000, random weights (U(-0.1, 0.1)); cell-state
gradients for delays 0..50. Both methods compute every G_d(t), d = 0..50, for positions t with all 51 delays in the
segment, and feed them to the same online accumulator (running means of G_d and G_dᵀG_d); same process, one thread.

* vectorised: :func:`iter_rnn_state_gradients` (forward-mode tangents, all rows and delays per time step);
* loop: :func:`state_gradient_loop` with one backward pass per (t, d) (batched over the 256 state units).

Speed is reported per position, in CPU seconds (``time.process_time``, robust to other processes on the machine)
and wall seconds. Peak memory of the vectorised online computation is measured in fresh subprocesses
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) at two corpus sizes.

Run: ``python benchmarks/bench_state_gradients.py [--loop-positions 3] [--vec-steps 40] [--sizes 400 1600]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from seqexplain.analysis.state_gradients import (
    GradientChunk,
    StateGradientAccumulator,
    iter_rnn_state_gradients,
    state_gradient_loop,
)
from seqexplain.models.rnn.lm import RNNLanguageModel, RNNLMConfig

D, E, H, V = 50, 64, 256, 10_000


def _model() -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(RNNLMConfig(vocab_size=V, embedding_size=E, hidden_size=H)).eval()


def _ids(n: int) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(1))


def bench_vectorised(model: RNNLanguageModel, rows: int, steps: int) -> dict[str, float]:
    """Time ``steps`` steady-state time steps (all delays defined) of ``rows`` rows, online accumulation included."""
    ids = _ids(rows * (D + steps))
    acc = StateGradientAccumulator(D, H, E)
    it = iter_rnn_state_gradients(model, ids, max_delay=D, segment_length=D + steps, batch_size=rows)
    for _ in range(D):  # ramp-up: positions with fewer than 51 delays
        acc.update(next(it))
    c0, w0 = time.process_time(), time.perf_counter()
    n = 0
    for chunk in it:
        assert bool(chunk.valid.all())
        acc.update(chunk)
        n += int(chunk.grads.shape[0])
    return {"positions": n, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def bench_loop(model: RNNLanguageModel, positions: int) -> dict[str, float]:
    """Per-(t, d) loop for ``positions`` positions t = 50, 51, ... of one segment (forward pass included)."""
    ids = _ids(D + positions)
    acc = StateGradientAccumulator(D, H, E)
    ts = list(range(D, D + positions))
    c0, w0 = time.process_time(), time.perf_counter()
    grads, valid = state_gradient_loop(model, ids, max_delay=D, positions=ts)
    sel = torch.tensor(ts)
    src = sel.unsqueeze(1) - torch.arange(D + 1).unsqueeze(0)
    acc.update(GradientChunk(grads[sel], valid[sel], src, sel))
    return {"positions": positions, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def memory_run(positions: int, rows: int) -> dict[str, float]:
    """Online computation over ``positions`` positions; returns peak RSS (MiB) of this process."""
    model = _model()
    acc = StateGradientAccumulator(D, H, E)
    w0 = time.perf_counter()
    for chunk in iter_rnn_state_gradients(model, _ids(positions), max_delay=D, segment_length=100, batch_size=rows):
        acc.update(chunk)
    return {"positions": positions, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": time.perf_counter() - w0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-positions", type=int, default=3)
    ap.add_argument("--vec-steps", type=int, default=40)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs=2, default=[400, 1600])
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.memory_child is not None:
        print(json.dumps(memory_run(args.memory_child, args.rows)))
        return
    model = _model()
    vec = bench_vectorised(model, args.rows, args.vec_steps)
    loop = bench_loop(model, args.loop_positions)
    per = {k: {"cpu": r["cpu_s"] / r["positions"], "wall": r["wall_s"] / r["positions"]}
           for k, r in (("vectorised", vec), ("loop", loop))}
    print(f"model: LSTM E={E} H={H} V={V}, cell state, delays 0..{D}, 1 thread")
    print(f"vectorised online: {vec['positions']} positions, {vec['cpu_s']:.2f} CPU s, {vec['wall_s']:.2f} wall s "
          f"-> {per['vectorised']['cpu'] * 1e3:.1f} CPU ms / position")
    print(f"per-(t, d) loop:   {loop['positions']} positions, {loop['cpu_s']:.2f} CPU s, {loop['wall_s']:.2f} wall s "
          f"-> {per['loop']['cpu'] * 1e3:.1f} CPU ms / position")
    print(f"speed ratio (loop / vectorised): {per['loop']['cpu'] / per['vectorised']['cpu']:.0f}x CPU time, "
          f"{per['loop']['wall'] / per['vectorised']['wall']:.0f}x wall time")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--rows", str(args.rows)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        raw_gb = n * (D + 1) * H * E * 4 / 1e9
        print(f"peak RSS, online over {n} positions: {r['peak_rss_mib']:.0f} MiB ({r['wall_s']:.1f} s); storing every "
              f"G_d(t) in float32 instead would take {raw_gb:.2f} GB")


if __name__ == "__main__":
    main()
