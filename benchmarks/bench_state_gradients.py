"""Benchmark: vectorised online state gradients vs a per-(t, d) autograd loop (Verwimp et al. 2018 model size).

Model: 1-layer LSTM, 64-d embeddings, 256 hidden units, vocabulary 10,000, random weights (U(-0.1, 0.1)); cell-state
gradients for delays 0..50. Both methods compute every G_d(t), d = 0..50, for positions t with all 51 delays in the
segment, and feed them to the same online accumulator (running means of G_d and G_dᵀG_d); same process, one thread.

* vectorised: :func:`iter_rnn_state_gradients` (forward-mode tangents, all rows and delays per time step);
* loop: :func:`state_gradient_loop` with one backward pass per (t, d) (batched over the 256 state units).

Speed is reported per position, in CPU seconds (``time.process_time``, robust to other processes on the machine)
and wall seconds. Peak memory of the vectorised online computation is measured in fresh subprocesses
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) at two corpus sizes.

``--device cuda`` (or ``cuda:N``; default ``cpu``) runs the model, the token ids and both gradient computations on
that device (the accumulator keeps its running means on the CPU, as the library's accumulator does, for both
methods alike); every timer starts and stops after ``_common.sync()`` (``torch.cuda.synchronize``), and wall time is
the measure that counts there. The memory subprocesses get the device too; on CUDA they report the peak of
``torch.cuda.max_memory_allocated`` above what the model holds (MiB, after ``torch.cuda.reset_peak_memory_stats``)
instead of the process's RSS.

Run: ``python benchmarks/bench_state_gradients.py [--loop-positions 3] [--vec-steps 40] [--sizes 400 1600]
[--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_device, machine_info, sync  # noqa: E402

from seqexplain.analysis.state_gradient_chunks import GradientChunk  # noqa: E402
from seqexplain.analysis.state_gradient_reference import state_gradient_loop  # noqa: E402
from seqexplain.analysis.state_gradient_stats import StateGradientAccumulator  # noqa: E402
from seqexplain.analysis.state_gradients import iter_rnn_state_gradients  # noqa: E402
from seqexplain.models.rnn.lm import RNNLanguageModel, RNNLMConfig  # noqa: E402

D, E, H, V = 50, 64, 256, 10_000


SEED = 0  # --seed: the model's weights; the ids are drawn from SEED + 1


def _model(device: str) -> RNNLanguageModel:
    torch.manual_seed(SEED)  # initialised on the CPU, then moved: the same weights on every device
    return RNNLanguageModel(RNNLMConfig(vocab_size=V, embedding_size=E, hidden_size=H)).to(device).eval()


def _ids(n: int, device: str) -> torch.Tensor:
    # drawn with a seeded CPU generator, then moved: the same ids on every device
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(SEED + 1)).to(device)


def bench_vectorised(model: RNNLanguageModel, rows: int, steps: int, device: str) -> dict[str, float]:
    """Time ``steps`` steady-state time steps (all delays defined) of ``rows`` rows, online accumulation included."""
    ids = _ids(rows * (D + steps), device)
    acc = StateGradientAccumulator(D, H, E)
    it = iter_rnn_state_gradients(model, ids, max_delay=D, segment_length=D + steps, batch_size=rows)
    for _ in range(D):  # ramp-up: positions with fewer than 51 delays
        acc.update(next(it))
    sync()
    c0, w0 = time.process_time(), time.perf_counter()
    n = 0
    for chunk in it:
        assert bool(chunk.valid.all())
        acc.update(chunk)
        n += int(chunk.grads.shape[0])
    sync()
    return {"positions": n, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def bench_loop(model: RNNLanguageModel, positions: int, device: str) -> dict[str, float]:
    """Per-(t, d) loop for ``positions`` positions t = 50, 51, ... of one segment (forward pass included)."""
    ids = _ids(D + positions, device)
    acc = StateGradientAccumulator(D, H, E)
    ts = list(range(D, D + positions))
    sync()
    c0, w0 = time.process_time(), time.perf_counter()
    grads, valid = state_gradient_loop(model, ids, max_delay=D, positions=ts)
    # index tensors where the loop returned its results (the library collects them on the CPU)
    sel = torch.tensor(ts, device=grads.device)
    src = sel.unsqueeze(1) - torch.arange(D + 1, device=grads.device).unsqueeze(0)
    acc.update(GradientChunk(grads[sel], valid[sel], src, sel))
    sync()
    return {"positions": positions, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0}


def memory_run(positions: int, rows: int, device: str) -> dict[str, float]:
    """Online computation over ``positions`` positions; returns this process's peak RSS (MiB) on the CPU, or on
    CUDA the peak memory allocated by torch above what the model and ids hold (MiB)."""
    model = _model(device)
    ids = _ids(positions, device)
    acc = StateGradientAccumulator(D, H, E)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    w0 = time.perf_counter()
    for chunk in iter_rnn_state_gradients(model, ids, max_delay=D, segment_length=100, batch_size=rows):
        acc.update(chunk)
    sync()
    wall = time.perf_counter() - w0
    if cuda:
        return {"positions": positions, "wall_s": wall,
                "peak_cuda_allocated_above_model_mib": (torch.cuda.max_memory_allocated(device) - before) / 2**20}
    return {"positions": positions, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-positions", type=int, default=3)
    ap.add_argument("--vec-steps", type=int, default=40)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs=2, default=[400, 1600])
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where the model and both "
                    "gradient computations run")
    ap.add_argument("--json", default=None, help="write the measurements (with the device and machine) here")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; recorded)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the model's weights (ids: seed + 1; default 0)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    check_device(ap, args.device)
    if args.threads < 1 or args.seed < 0:
        ap.error("--threads must be at least 1 and --seed non-negative")
    global SEED
    SEED = args.seed
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        print(json.dumps(memory_run(args.memory_child, args.rows, args.device)))
        return
    model = _model(args.device)
    vec = bench_vectorised(model, args.rows, args.vec_steps, args.device)
    loop = bench_loop(model, args.loop_positions, args.device)
    per = {k: {"cpu": r["cpu_s"] / r["positions"], "wall": r["wall_s"] / r["positions"]}
           for k, r in (("vectorised", vec), ("loop", loop))}
    print(f"model: LSTM E={E} H={H} V={V}, cell state, delays 0..{D}, {args.threads} thread(s), seed {args.seed}, "
          f"device {args.device}")
    print(f"vectorised online: {vec['positions']} positions, {vec['cpu_s']:.2f} CPU s, {vec['wall_s']:.2f} wall s "
          f"-> {per['vectorised']['cpu'] * 1e3:.1f} CPU ms / position")
    print(f"per-(t, d) loop:   {loop['positions']} positions, {loop['cpu_s']:.2f} CPU s, {loop['wall_s']:.2f} wall s "
          f"-> {per['loop']['cpu'] * 1e3:.1f} CPU ms / position")
    print(f"speed ratio (loop / vectorised): {per['loop']['cpu'] / per['vectorised']['cpu']:.0f}x CPU time, "
          f"{per['loop']['wall'] / per['vectorised']['wall']:.0f}x wall time")
    memory = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--rows", str(args.rows),
                              "--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        raw_gb = n * (D + 1) * H * E * 4 / 1e9
        if "peak_rss_mib" in r:
            peak = f"peak RSS, online over {n} positions: {r['peak_rss_mib']:.0f} MiB"
        else:
            peak = (f"peak CUDA memory allocated above the model, online over {n} positions: "
                    f"{r['peak_cuda_allocated_above_model_mib']:.0f} MiB")
        print(f"{peak} ({r['wall_s']:.1f} s); storing every G_d(t) in float32 instead would take {raw_gb:.2f} GB")
        memory.append(r)
    if args.json:
        payload = {"machine": machine_info(args.device), "config": vars(args), "vectorised": vec, "loop": loop,
                   "per_position": per, "memory": memory}
        Path(args.json).write_text(json.dumps(payload, indent=1, default=str))


if __name__ == "__main__":
    main()
