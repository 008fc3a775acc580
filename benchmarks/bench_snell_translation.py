"""Benchmark: training throughput of seqexplain's Snell et al. LSTM translator loop against a plain PyTorch loop with
the same model and batches, and the speed of its per-checkpoint dump (α, one-hot β and Δ per target row).

Data: random sentence pairs (vocabulary 2,000; source and target lengths uniform in 8..20, about Multi30k's);
model: the translator at the CPU reproduction's size (64-d embeddings, 2-layer BiLSTM encoder of 64 units per
direction, 2-layer decoder of 128, dropout 0.1). Both loops run the same Adam updates of the same batches
(:func:`seqexplain.training.snell.batch_indices`, :func:`seqexplain.training.snell_translation.collate`) from the
same initial weights, after 5 untimed warm-up updates; seqexplain's loop writes checkpoints with resume state at
every ``--checkpoint-every`` updates. Dump: :func:`make_translation_dump` + :func:`write_dump` of ``--n-dump`` pairs.
CPU seconds (``time.process_time``) and wall seconds.

Device (``--device``, default ``cpu``; ``cuda`` or ``cuda:N``): both loops and the dump run there — weights
initialised on the CPU from the seed and moved (as the library does), every batch on the device
(:func:`seqexplain.training.snell_translation.to_device`); CUDA is synchronised before each timer starts and stops.
On CUDA the CPU seconds are the host's time only, so compare the wall figures there. The device is printed and
recorded in the JSON (``device``). "Same final weights" uses ``atol=1e-6`` on every device: on CUDA, non-deterministic
kernels (cuDNN RNNs) may make two identical loops differ by more after many updates.

Run: ``python benchmarks/bench_snell_translation.py --threads 1 --seed 0 [--steps 60] [--n-dump 40] [--device cuda]``.
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

from seqexplain.analysis.training_dynamics import write_dump
from seqexplain.analysis.translation_dynamics import make_translation_dump
from seqexplain.models.snell_translation import SnellTranslator, SnellTranslatorConfig
from seqexplain.runs import apply_threads, run_record
from seqexplain.training.snell import SnellTrainConfig, batch_indices
from seqexplain.training.snell_translation import batch_nll, collate, to_device, train_snell_translator

V = 2000


def _pairs(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)

    def sent() -> list[int]:
        return [*rng.integers(4, V, int(rng.integers(8, 21))).tolist(), 2]

    return [(sent(), sent()) for _ in range(n)]


def _plain(cfg: SnellTranslatorConfig, pairs: list[tuple[list[int], list[int]]], steps: int, batch: int, seed: int,
           device: str) -> SnellTranslator:
    torch.manual_seed(seed)
    model = SnellTranslator(cfg).to(device).train()  # initialised on the CPU, then moved: the library's weights
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        b = to_device(collate(pairs, batch_indices(len(pairs), batch, seed, step), 0, 1), torch.device(device))
        nll, _ = batch_nll(model, b)
        loss = nll / (b["labels"] != -100).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model



def main() -> None:
    args = training_bench_args(__doc__.split("\n\n")[0], steps=60, checkpoint_every=20, n_dump=40)
    apply_threads(args.threads)
    pairs = _pairs(3000, args.seed)
    cfg = SnellTranslatorConfig(V, 64, 64, 2, 0.1)
    _plain(cfg, pairs, 5, args.batch_size, args.seed, args.device)  # warm-up
    n_ex = args.steps * args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        tc = SnellTrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                              checkpoint_every=args.checkpoint_every, tensorboard=False)
        ours, w_ours, c_ours = wall_and_cpu(lambda: train_snell_translator(cfg, pairs, tc, Path(tmp) / "run", "v",
                                                                           device=args.device))
        plain, w_plain, c_plain = wall_and_cpu(lambda: _plain(cfg, pairs, args.steps, args.batch_size, args.seed,
                                                              args.device))
        same = all(torch.allclose(v, plain.state_dict()[k], atol=1e-6) for k, v in ours.state_dict().items())
        dump_pairs = pairs[: args.n_dump]
        _, w_dump, c_dump = wall_and_cpu(lambda: write_dump(make_translation_dump(
            ours, dump_pairs, run="bench", step=0, split="val", dataset="random", vocab_hash="v"), Path(tmp)))
    rows = sum(len(t) for _, t in dump_pairs)
    res = {"device": args.device, "steps": args.steps, "batch_size": args.batch_size,
           "seqexplain_pairs_per_s_cpu": n_ex / c_ours, "seqexplain_pairs_per_s_wall": n_ex / w_ours,
           "plain_pairs_per_s_cpu": n_ex / c_plain, "plain_pairs_per_s_wall": n_ex / w_plain, "same_weights": same,
           "dump_pairs": len(dump_pairs), "dump_target_rows": rows, "dump_s_cpu": c_dump, "dump_s_wall": w_dump,
           "run": run_record(args.seed)}
    print(f"translator training ({args.steps} updates × {args.batch_size}, on {args.device}): seqexplain "
          f"{res['seqexplain_pairs_per_s_cpu']:.0f} pairs/s CPU, plain loop {res['plain_pairs_per_s_cpu']:.0f} "
          f"pairs/s CPU; same final weights: {same}")
    print(f"dump of {len(dump_pairs)} pairs ({rows} target rows) on {args.device}: {c_dump:.2f} s CPU "
          f"({w_dump:.2f} wall)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
