"""Benchmark ``seqexplain run`` against real inseq (its ``attribute-dataset`` flow) on a causal LM, in one run.

Model: the random 4-layer GPT-2 of ``_common.random_gpt2`` (seed ``--seed``) with the offline byte-level BPE, saved
with ``save_pretrained`` (model and tokenizer) under ``--out``; every runner loads it from there. Its ``<unk>``
embedding row is zero, so inseq's default baseline (``<unk>`` embeddings) equals zero embeddings.

Data: the first ``--n`` SST-2 test sentences with at least two words, each split at its words into a prompt (the
first half, at least one word) and a continuation (the rest, with its leading space), written as JSONL
(``text``, ``target``): the run explains ``log p(continuation token | prefix)`` for every continuation token.

Methods: gradient norm, grad×input, occlusion with ``replace_with="unk"`` (inseq: saliency, input_x_gradient,
occlusion with its ``<unk>`` baseline). Runners, after a warm-up on ``--warmup`` sentences, timed in ``--rounds``
rounds (the second in reverse order; mean), each including its model load from disk:

* ``seqexplain run``: :func:`seqexplain.runs.runner.run` on a fresh folder, metrics off (attributions only),
  streaming Parquet store, ``shard_size = pack = --shard-size``;
* ``inseq``: for each method ``inseq.load_model(folder, method)`` and ONE ``attribute(input_texts=prompts,
  generated_texts=prompts + continuations, batch_size=--inseq-batch-size, attribute_target=False, step_scores=[],
  attributed_fn="probability", logprob=True)`` over the whole corpus (what ``inseq attribute-dataset`` calls),
  results kept in memory and saved once at the end (``out.save``). inseq 0.7.1 attributes forced continuations of a
  decoder-only model one sequence at a time whatever the batch size ("Batched constrained decoding is currently not
  supported for decoder-only models. Using batch size of 1."), so the option changes nothing there;
* ``captum loops`` (unless ``--no-captum``): per method and sentence, the per-target captum loop of
  ``bench_core_methods.captum_runner`` on the raw model, results kept in memory.

Device (``--device``, default ``cpu``; ``cuda`` or ``cuda:N``): every runner computes there — the run through its
config's ``model.device``, inseq through ``load_model(..., device=...)``, captum on the model moved there with its
token ids made there; CUDA is synchronised before each timer starts and stops (``_common.timed_rounds``). The device
is printed in the header and recorded in the JSON (``info.device``, with the GPU's name from
``_common.machine_info``).

Agreement: on the first ``--check`` sentences, the largest relative difference (``_common.agreement``, visible
cells) between the scores in the run's ``results.parquet`` and inseq's outputs of the timed call (per-dimension
scores reduced as in ``bench_core_methods``: L2 norm / sum; inseq's occlusion is an absolute value) and captum's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    agreement,
    bpe_tokenizer,
    check_device,
    git_commit,
    machine_info,
    markdown_table,
    random_gpt2,
    sync,
    timed_rounds,
)
from bench_core_methods import INSEQ_NAME, captum_runner, reduce_dims  # noqa: E402

from seqexplain.data.sst import read_sst  # noqa: E402
from seqexplain.runs.config import parse_config  # noqa: E402
from seqexplain.runs.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS: dict[str, dict[str, Any]] = {"gradient_norm": {}, "grad_x_input": {}, "occlusion": {"replace_with": "unk"}}
Pairs = list[tuple[str, str]]


def corpus(n: int) -> tuple[Pairs, int]:
    """(prompt, continuation) of the first ``n`` usable SST-2 test sentences, and how many one-word ones were
    passed over."""
    pairs: Pairs = []
    skipped = 0
    for s in read_sst("test"):
        words = s.text.split()
        if len(words) < 2:
            skipped += 1
            continue
        k = max(1, len(words) // 2)
        pairs.append((" ".join(words[:k]), " " + " ".join(words[k:])))
        if len(pairs) == n:
            break
    return pairs, skipped


def config(args: argparse.Namespace, data: Path, model_dir: Path, out: Path) -> dict[str, Any]:
    off = {"enabled": False}
    return {"seed": args.seed, "shard_size": args.shard_size, "pack": args.shard_size, "threads": args.threads,
            "data": {"format": "jsonl", "path": str(data), "text_field": "text", "target_field": "target"},
            "model": {"path": str(model_dir), "kind": "causal", "device": args.device},
            "methods": [{"name": m, "options": o} for m, o in METHODS.items()],
            "metrics": {"faithfulness": off, "plausibility": off, "agreement": off},
            "output": {"dir": str(out), "report": False, "merge": True}}


def inseq_run(model_dir: Path, pairs: Pairs, batch_size: int, out: Path, seconds: dict[str, list[float]],
              device: str) -> dict[str, Any]:
    """inseq's attribute-dataset flow, per method: load the model from disk, one ``attribute`` call over the corpus;
    every output kept in memory and saved once at the end. Each method's seconds are appended to ``seconds``."""
    import inseq

    outs = {}
    for m in METHODS:
        sync()
        t0 = time.perf_counter()
        im = inseq.load_model(str(model_dir), INSEQ_NAME[m], device=device)
        outs[m] = im.attribute(input_texts=[p for p, _ in pairs], generated_texts=[p + c for p, c in pairs],
                               batch_size=batch_size, attribute_target=False, step_scores=[], show_progress=False,
                               pretty_progress=False, attributed_fn="probability", logprob=True)
        sync()
        seconds.setdefault(m, []).append(time.perf_counter() - t0)
    out.mkdir(parents=True, exist_ok=True)
    for m, res in outs.items():
        res.save(str(out / f"{m}.json"), overwrite=True)
    return outs


def captum_loops(model_dir: Path, pairs: Pairs, device: str) -> dict[str, list[np.ndarray]]:
    """Per method and sentence the per-target captum loop of ``bench_core_methods`` on the raw model on ``device``:
    [T, L]."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval().to(device)
    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    encoded = [(tok(p, add_special_tokens=False)["input_ids"], tok(c, add_special_tokens=False)["input_ids"])
               for p, c in pairs]
    return {m: [captum_runner(model, torch.tensor(a + b, device=device), len(a), m)() for a, b in encoded]
            for m in METHODS}


def run_scores(run_dir: Path, n: int) -> dict[str, list[np.ndarray]]:
    """The [T, L] score matrices of examples ``0..n-1`` per method, read back from the run's ``results.parquet``."""
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "results.parquet", columns=["index", "method", "scores"]).to_pylist()
    got: dict[str, list[np.ndarray]] = {m: [np.empty(0)] * n for m in METHODS}
    for row in table:
        if row["index"] < n:
            got[row["method"]][row["index"]] = np.array(row["scores"], dtype=np.float64)
    return got


def check(ours: dict[str, list[np.ndarray]], peer: dict[str, list[np.ndarray]], abs_occlusion: bool
          ) -> dict[str, dict[str, float] | str]:
    """Per method the agreement over the examples (all visible cells pooled), or what did not line up."""
    res: dict[str, dict[str, float] | str] = {}
    for m in METHODS:
        a, b = ours[m], peer[m][:len(ours[m])]
        bad = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x.shape != y.shape]
        if bad:
            res[m] = f"shape mismatch at examples {bad[:5]}: {a[bad[0]].shape} vs {b[bad[0]].shape}"
            continue
        mine = np.concatenate([x.ravel() for x in a])
        theirs = np.concatenate([y.ravel() for y in b])
        if abs_occlusion and m == "occlusion":
            mine = np.abs(mine)
        res[m] = agreement(mine, theirs, ~np.isnan(mine) & ~np.isnan(theirs))
    return res


def run_method_seconds(run_dir: Path) -> dict[str, float]:
    """Sum of the ``seconds`` column per method in the run's ``results.parquet`` (the methods' compute time)."""
    import pyarrow.parquet as pq

    got: dict[str, float] = {}
    for row in pq.read_table(run_dir / "results.parquet", columns=["method", "seconds"]).to_pylist():
        got[row["method"]] = got.get(row["method"], 0.0) + float(row["seconds"] or 0.0)
    return got


def inseq_matrices(outs: dict[str, Any], n: int) -> dict[str, list[np.ndarray]]:
    """inseq's [T, L] matrices (L = prompt + continuation tokens) of the first ``n`` sequences per method."""
    got: dict[str, list[np.ndarray]] = {}
    for m, res in outs.items():
        got[m] = []
        for seq in res.sequence_attributions[:n]:
            n_l = len(seq.target)  # the generated text (prompt + continuation) tokens
            got[m].append(reduce_dims(seq.target_attributions, m)[:n_l].T.double().cpu().numpy())
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="SST-2 test sentences (the first N with two words or more)")
    ap.add_argument("--inseq-batch-size", type=int, default=8, help="inseq's batch_size (1 for decoder-only LMs)")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=4, help="sentences each runner explains once before timing")
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=2)
    ap.add_argument("--check", type=int, default=20, help="sentences whose values are compared")
    ap.add_argument("--no-captum", action="store_true")
    ap.add_argument("--no-inseq", action="store_true", help="time seqexplain (and captum) only: for corpus sizes at "
                    "which inseq would take hours")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_run_lm")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: where every runner computes")
    args = ap.parse_args(argv)
    check_device(ap, args.device)
    torch.set_num_threads(args.threads)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = args.out / now.strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True)
    info = {**machine_info(args.device), "args": {k: str(v) for k, v in vars(args).items()}, "date": now.isoformat(),
            "commit": git_commit()}
    tok = bpe_tokenizer()
    model_dir = out / "model"
    random_gpt2(tok, seed=args.seed).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    pairs, skipped = corpus(args.n)
    n = len(pairs)
    data = out / "sst_test_lm.jsonl"
    data.write_text("".join(json.dumps({"text": p, "target": c}) + "\n" for p, c in pairs), encoding="utf-8")
    sizes = [(len(tok(p)["input_ids"]), len(tok(c)["input_ids"])) for p, c in pairs]
    info["corpus"] = {"tokens_mean": float(np.mean([a + b for a, b in sizes])),
                      "tokens_min": min(a + b for a, b in sizes), "tokens_max": max(a + b for a, b in sizes),
                      "targets": sum(b for _, b in sizes)}
    print(f"# {info['date']} commit {info['commit']}; {n} sentences ({skipped} one-word ones passed over), "
          f"{info['corpus']['tokens_mean']:.1f} tokens on average ({info['corpus']['tokens_min']}-"
          f"{info['corpus']['tokens_max']}), {info['corpus']['targets']} targets; device {args.device}; threads "
          f"{args.threads}, seed {args.seed}; load {info['load_average_at_start']}", flush=True)

    w = pairs[:min(args.warmup, n)]
    if w:  # first-call costs out of the timings
        wj = out / "warm.jsonl"
        wj.write_text("".join(json.dumps({"text": p, "target": c}) + "\n" for p, c in w), encoding="utf-8")
        run(parse_config(config(args, wj, model_dir, out / "warm_run")), progress=False)
        if not args.no_inseq:
            inseq_run(model_dir, w, args.inseq_batch_size, out / "warm_inseq", {}, args.device)
        if not args.no_captum:
            captum_loops(model_dir, w, args.device)
    kept: dict[str, Any] = {}
    inseq_s: dict[str, list[float]] = {}

    def keep(name: str, value: Any) -> None:
        kept[name] = value

    runners: dict[str, Any] = {
        "seqexplain run": lambda r: run(parse_config(config(args, data, model_dir, out / f"run{r}")), progress=False),
    }
    if not args.no_inseq:
        runners["inseq"] = lambda r: keep("inseq", inseq_run(model_dir, pairs, args.inseq_batch_size,
                                                             out / f"inseq{r}", inseq_s, args.device))
    if not args.no_captum:
        runners["captum loops"] = lambda r: keep("captum", captum_loops(model_dir, pairs, args.device))
    times = timed_rounds(runners, args.rounds)
    t = {k: sum(v) / len(v) for k, v in times.items()}
    load_after = os.getloadavg()
    rows = [[k, f"{v:.1f}", f"{n / v:.2f}", f"{t['inseq'] / v:.2f}×" if "inseq" in t else "n/a"]
            for k, v in t.items()]
    print(markdown_table(["runner", "wall s", "examples/s", "speed ÷ inseq"], rows))
    per_method = {"seqexplain run": run_method_seconds(out / "run0"), "inseq": {m: v[0] for m, v in inseq_s.items()}}
    print(f"per-method seconds (round 1; seqexplain: its rows' method seconds, inseq: load + attribute): {per_method}")

    c = min(args.check, n)
    ours = run_scores(out / "run0", c)
    values: dict[str, Any] = {}
    if "inseq" in kept:
        values["inseq"] = check(ours, inseq_matrices(kept["inseq"], c), True)
    if "captum" in kept:
        values["captum"] = check(ours, kept["captum"], False)
    for peer, per_method in values.items():
        for m, v in per_method.items():
            print(f"values on the first {c} sentences, seqexplain vs {peer}, {m}: " +
                  (v if isinstance(v, str) else f"max abs diff {v['max_abs_diff']:.2e}, "
                   f"max rel diff {v['max_rel_diff']:.2e}"))
    result = {"info": info, "n": n, "skipped_one_word": skipped, "seconds": t, "rounds": times,
              "per_method_seconds_round1": per_method,
              "examples_per_s": {k: n / v for k, v in t.items()}, "values": values, "load_after": load_after}
    (out / "bench_run_lm.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"load average {info['load_average_at_start']} → {load_after}; results: {out / 'bench_run_lm.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
