"""Benchmark: training throughput of seqexplain's Snell et al. classifier loop against a plain PyTorch loop with the
same model, and the speed of the per-checkpoint dump.

Data: random token sequences (vocabulary 10,000; lengths uniform in 10..40, about SST-2's and AG News's range),
binary labels; model: the BiLSTM attention classifier at the reproduction's default size (64-d embeddings, 64 units
per direction, 64-d attention layer). Both loops run the same number of Adam updates of the same batches from the
same initial weights (after 20 untimed warm-up updates, so that the loop timed first does not pay the warm-up):

* seqexplain: :func:`seqexplain.training.snell.train_snell_classifier` (batch order, packing, checkpoints at every
  ``--checkpoint-every`` updates with the resume state, TensorBoard off);
* plain: a hand-written loop (``pad`` + ``model(ids, lengths)`` + cross-entropy + ``Adam.step``), no checkpoints.

Dump speed: :func:`seqexplain.analysis.training_dynamics.make_dump` (α, oriented β, Δ with one backward per batch)
plus :func:`write_dump` of ``--n-dump`` examples, per checkpoint. Times are wall seconds and CPU seconds
(``time.process_time``; the latter is robust to other processes on a shared machine).

Device (``--device``, default ``cpu``; ``cuda`` or ``cuda:N``): both loops and the dump run there — weights
initialised on the CPU from the seed and moved (as the library does), every batch tensor on the device; CUDA is
synchronised before each timer starts and stops. On CUDA the CPU seconds are the host's time only (launches and
waits), so compare the wall figures there. The device is printed and recorded in the JSON (``device``). "Same final
weights" uses ``atol=1e-6`` on every device: on CUDA, non-deterministic kernels (cuDNN RNNs) may make two identical
loops differ by more after many updates.

Run: ``python benchmarks/bench_snell_training.py --threads 1 --seed 0 [--steps 200] [--n-dump 872] [--device cuda]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch  # noqa: E402
from _common import training_bench_args, wall_and_cpu  # noqa: E402

from seqexplain.analysis.training_dynamics import make_dump, write_dump
from seqexplain.models.rnn import Vocab
from seqexplain.models.snell_classifier import SnellClassifier, SnellClassifierConfig, pad_batch
from seqexplain.runs import apply_threads, run_record
from seqexplain.training.snell import SnellTrainConfig, batch_indices, train_snell_classifier

V = 10_000


def _data(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(3, V, int(rng.integers(10, 41))).tolist(), int(rng.integers(0, 2))) for _ in range(n)]


def _plain(cfg: SnellClassifierConfig, data: list[tuple[list[int], int]], steps: int, batch: int, seed: int,
           device: str) -> SnellClassifier:
    torch.manual_seed(seed)
    model = SnellClassifier(cfg).to(device).train()  # initialised on the CPU, then moved: the library's weights
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        idx = batch_indices(len(data), batch, seed, step)
        ids, lengths = pad_batch([data[i][0] for i in idx])
        labels = torch.tensor([data[i][1] for i in idx], device=device)
        loss = torch.nn.functional.cross_entropy(model(ids.to(device), lengths.to(device))[0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model



def main() -> None:
    args = training_bench_args(__doc__.split("\n\n")[0], steps=200, checkpoint_every=50, n_dump=872)
    apply_threads(args.threads)
    data = _data(4000, args.seed)
    vocab = Vocab(["<unk>", "<eos>", "<bos>"] + [f"w{i}" for i in range(3, V)])
    cfg = SnellClassifierConfig(V, 2, 64, 64, 64)
    n_ex = args.steps * args.batch_size
    _plain(cfg, data, 20, args.batch_size, args.seed, args.device)  # warm-up (allocator, kernels): neither loop pays it
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = SnellTrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                checkpoint_every=args.checkpoint_every, tensorboard=False)
        ours, w_ours, c_ours = wall_and_cpu(lambda: train_snell_classifier(cfg, data, tcfg, Path(tmp) / "run", vocab,
                                                                           device=args.device))
        plain, w_plain, c_plain = wall_and_cpu(lambda: _plain(cfg, data, args.steps, args.batch_size, args.seed,
                                                              args.device))
        same = all(torch.allclose(v, plain.state_dict()[k], atol=1e-6) for k, v in ours.state_dict().items())
        dump_data = data[: args.n_dump]
        times = []
        for rep in range(3):
            _, w, c = wall_and_cpu(lambda rep=rep: write_dump(make_dump(
                ours, dump_data, run="bench", step=rep, split="val", dataset="random", vocab_hash="v"), Path(tmp)))
            times.append((w, c))
    w_dump, c_dump = (float(np.median([t[i] for t in times])) for i in (0, 1))
    res = {"device": args.device, "steps": args.steps, "batch_size": args.batch_size,
           "checkpoints": args.steps // args.checkpoint_every + 1,
           "seqexplain_examples_per_s_wall": n_ex / w_ours, "seqexplain_examples_per_s_cpu": n_ex / c_ours,
           "plain_examples_per_s_wall": n_ex / w_plain, "plain_examples_per_s_cpu": n_ex / c_plain,
           "same_weights": same, "dump_examples": len(dump_data), "dump_s_per_checkpoint_wall": w_dump,
           "dump_s_per_checkpoint_cpu": c_dump, "run": run_record(args.seed)}
    print(f"training ({args.steps} updates × {args.batch_size}, on {args.device}): seqexplain "
          f"{res['seqexplain_examples_per_s_cpu']:.0f} ex/s CPU ({res['seqexplain_examples_per_s_wall']:.0f} wall), "
          f"plain loop {res['plain_examples_per_s_cpu']:.0f} ex/s CPU ({res['plain_examples_per_s_wall']:.0f} wall); "
          f"same final weights: {same}")
    print(f"dump of {len(dump_data)} examples on {args.device}: {c_dump:.2f} s CPU ({w_dump:.2f} wall) per checkpoint "
          f"({len(dump_data) / c_dump:.0f} examples/s CPU)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
