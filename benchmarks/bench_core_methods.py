"""Benchmark seqexplain's core attribution methods against inseq and a plain captum loop.

Same model, same run: a randomly initialised 4-layer GPT-2 (d=256, 4 heads) with a byte-level BPE trained in
code, a ``--prompt-len``-token prompt and a fixed ``--targets``-token continuation (teacher-forced everywhere).
The attributed function is ``log p(target_i | prefix)`` for all three libraries.

* seqexplain: ``explain(model, prompt, target=continuation, method=...)`` (the public entry point: encoding,
  the method, and the final scoring forward are all timed).
* inseq: ``inseq.load_model(model, method, tokenizer=tokenizer)`` and
  ``attribute(prompt, prompt + continuation, attributed_fn="probability", logprob=True, step_scores=[])``; the
  forced continuation makes inseq attribute exactly the same target tokens (checked), one generation step at a
  time, with no extra step scores. inseq's baseline is the ``<unk>`` embedding, which is zero in this model.
* captum: the usual per-target loop. For each target, the embeddings of its prefix go through
  ``IntegratedGradients`` / ``Saliency`` / ``InputXGradient`` / ``Occlusion`` with a forward returning the
  last position's log-softmax and ``target=<token id>``.

Compared quantities (on the cells a target can see): gradient norm ``‖∂f/∂e_j‖₂`` (inseq saliency and captum
Saliency give ``|∂f/∂e_jd|``, reduced here with the L2 norm over d), grad×input and IG summed over the embedding
dimension, occlusion ``f(x) − f(x with e_j replaced by the <unk>/zero embedding)`` (inseq returns its absolute
value). seqexplain's default occlusion *drops* the position instead, which is a different quantity: it is timed
against the peers but its values are not compared; ``replace_with="unk"`` is the comparable variant.

Run ``python benchmarks/bench_core_methods.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    Timing,
    agreement,
    bpe_tokenizer,
    common_setup,
    machine_info,
    markdown_table,
    prompt_and_target,
    random_gpt2,
    time_call,
    time_interleaved,
)

import seqexplain  # noqa: E402

METHODS = ["occlusion", "gradient_norm", "grad_x_input", "integrated_gradients"]
TARGETS = {"occlusion": 15.0, "gradient_norm": 1.5, "grad_x_input": 1.5, "integrated_gradients": 1.3}
INSEQ_NAME = {"occlusion": "occlusion", "gradient_norm": "saliency", "grad_x_input": "input_x_gradient",
              "integrated_gradients": "integrated_gradients"}
IG_STEPS = 50


@dataclass
class Variant:
    """A seqexplain configuration of a method; ``comparable`` says whether its values match the peers'."""

    label: str
    options: dict[str, Any]
    comparable: bool
    abs_for_inseq: bool = False


def variants(method: str, token_budget: int | None) -> list[Variant]:
    budget = {} if token_budget is None else {"token_budget": token_budget}
    if method == "occlusion":
        return [Variant("drop (default)", dict(budget), comparable=False),
                Variant("replace_with=unk", {"replace_with": "unk", **budget}, comparable=True, abs_for_inseq=True)]
    if method == "integrated_gradients":
        return [Variant(f"{IG_STEPS} steps GL, zero", {"steps": IG_STEPS, "baseline": "zero", **budget}, True)]
    return [Variant("default", dict(budget), comparable=True)]


# --------------------------------------------------------------------------------------------- runners
def seqexplain_runner(wrapped: Any, prompt: str, target: str, method: str,
                      options: dict[str, Any]) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        return seqexplain.explain(wrapped, prompt, target=target, method=method, **options).scores

    return run


def reduce_dims(attr: torch.Tensor, method: str) -> torch.Tensor:
    """Per-token scores from per-embedding-dimension ones (last axis); occlusion scores are per token already."""
    if method == "occlusion":
        return attr
    if method == "gradient_norm":
        return attr.float().norm(dim=-1)
    return attr.float().sum(-1)


def inseq_runner(inseq_model: Any, prompt: str, target: str, method: str, n_positions: int
                 ) -> Callable[[], np.ndarray]:
    extra: dict[str, Any] = {"n_steps": IG_STEPS} if method == "integrated_gradients" else {}

    def run() -> np.ndarray:
        out = inseq_model.attribute(prompt, prompt + target, show_progress=False, pretty_progress=False,
                                    attributed_fn="probability", logprob=True, step_scores=[], **extra)
        attr = out.sequence_attributions[0].target_attributions  # [L + 1, T(, D)]
        return reduce_dims(attr, method)[:n_positions].T.double().numpy()  # [T, L]

    return run


def captum_runner(model: torch.nn.Module, ids: torch.Tensor, prompt_len: int, method: str
                  ) -> Callable[[], np.ndarray]:
    from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

    emb_layer = model.get_input_embeddings()

    def forward(embeds: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(model(inputs_embeds=embeds).logits[:, -1], dim=-1)

    n_l = int(ids.shape[0])
    n_t = n_l - prompt_len

    def run() -> np.ndarray:
        scores = np.full((n_t, n_l), np.nan)
        for i in range(n_t):
            p = prompt_len + i
            x = emb_layer(ids[:p].unsqueeze(0)).detach()
            tid = int(ids[p])
            if method == "integrated_gradients":
                attr = IntegratedGradients(forward).attribute(x, baselines=torch.zeros_like(x), target=tid,
                                                              n_steps=IG_STEPS, method="gausslegendre")
            elif method == "gradient_norm":
                attr = Saliency(forward).attribute(x, target=tid, abs=True)
            elif method == "grad_x_input":
                attr = InputXGradient(forward).attribute(x, target=tid)
            else:
                with torch.no_grad():
                    attr = Occlusion(forward).attribute(x, sliding_window_shapes=(1, x.shape[-1]), baselines=0.0,
                                                        target=tid)[..., 0]
            scores[i, :p] = reduce_dims(attr[0].detach(), method).double().cpu().numpy()
        return scores

    return run


# ------------------------------------------------------------------------------------------------- run
@dataclass
class Row:
    method: str
    variant: str
    ours: Timing
    peer: str
    theirs: Timing | None
    target: float | None
    values: dict[str, float] | None

    @property
    def speedup(self) -> float | None:
        """Wall-time speed-up of seqexplain: peer median / seqexplain median."""
        return None if self.theirs is None else self.theirs.median_s / self.ours.median_s

    @property
    def cpu_speedup(self) -> float | None:
        return None if self.theirs is None else self.theirs.median_cpu_s / self.ours.median_cpu_s


def fmt(x: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else format(x, spec) + unit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls per measurement")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--targets", type=int, default=16, help="number of forced target tokens")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--peers", default="inseq,captum", help="comma-separated subset of inseq,captum (or none)")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda when available")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random GPT-2's weights (default 0; recorded)")
    ap.add_argument("--token-budget", type=int, default=None, help="seqexplain token_budget (default: its own)")
    ap.add_argument("--budget-sweep", default="", help="comma-separated token budgets: time seqexplain alone with each")
    ap.add_argument("--json", dest="json_path", default=None, help="write all measurements to this JSON file")
    args = ap.parse_args(argv)

    methods, peers = common_setup(ap, args, args.methods, METHODS)

    tokenizer = bpe_tokenizer()
    n_pos = max(512, args.prompt_len + args.targets + 1)
    model = random_gpt2(tokenizer, n_positions=n_pos, seed=args.seed).to(args.device)
    prompt, target = prompt_and_target(tokenizer, args.prompt_len, args.targets)
    wrapped = seqexplain.load_model(model, tokenizer)
    example = wrapped.encode(prompt, target)
    if (example.length, example.n_targets) != (args.prompt_len + args.targets, args.targets):
        raise RuntimeError(f"seqexplain encoded {example.length} positions / {example.n_targets} targets")
    n_l = example.length
    visible = example.visible().numpy()
    ids = torch.tensor(tokenizer(prompt + target, add_special_tokens=False)["input_ids"], device=args.device)
    if ids.cpu().tolist() != example.input_ids.tolist():
        raise RuntimeError("prompt + continuation does not tokenise to seqexplain's input axis")
    info = machine_info(args.device)
    print(f"# model: GPT-2 n_layer=4 n_embd=256 n_head=4 vocab={len(tokenizer)}; prompt {args.prompt_len} tokens, "
          f"{args.targets} targets; device {args.device}; torch {info['torch']}, {info['threads']} thread(s); "
          f"repeats {args.repeats} (median), warm-up {args.warmup}; seed {args.seed}", flush=True)

    inseq_models: dict[str, Any] = {}
    if "inseq" in peers:
        import inseq

        for m in methods:
            inseq_models[m] = inseq.load_model(model, INSEQ_NAME[m], tokenizer=tokenizer, device=args.device)

    rows: list[Row] = []
    for m in methods:
        runners: dict[str, Callable[[], np.ndarray]] = {}
        vs = variants(m, args.token_budget)
        for v in vs:
            runners[f"seqexplain:{v.label}"] = seqexplain_runner(wrapped, prompt, target, m, v.options)
        for peer in peers:
            runners[peer] = (inseq_runner(inseq_models[m], prompt, target, m, n_l) if peer == "inseq"
                             else captum_runner(model, ids, args.prompt_len, m))
        timings = time_interleaved(runners, args.repeats, args.warmup)
        for name, t in timings.items():
            if t.result.shape != (args.targets, n_l):
                raise RuntimeError(f"{name} {m} returned scores of shape {t.result.shape}")
            print(f"{m} {name}: wall {t.median_s:.4f} s, cpu {t.median_cpu_s:.4f} s", flush=True)
        for v in vs:
            ours = timings[f"seqexplain:{v.label}"]
            for peer in peers:
                theirs = timings[peer]
                values = None
                if v.comparable:
                    mine = np.abs(ours.result) if (peer == "inseq" and v.abs_for_inseq) else ours.result
                    values = agreement(mine, theirs.result, visible)
                rows.append(Row(m, v.label, ours, peer, theirs, TARGETS[m] if peer == "inseq" else None, values))
            if not peers:
                rows.append(Row(m, v.label, ours, "-", None, None, None))

    header = ["method", "seqexplain variant", "seqexplain s", "peer", "peer s", "speed-up", "CPU-time speed-up",
              "target", "max abs diff", "rel diff"]
    table = [[r.method, r.variant, fmt(r.ours.median_s, ".3f"), r.peer,
              fmt(r.theirs.median_s if r.theirs else None, ".3f"), fmt(r.speedup, ".2f", "×"),
              fmt(r.cpu_speedup, ".2f", "×"),
              "-" if r.target is None else (f"≥{r.target:g}× " + ("met" if (r.speedup or 0) >= r.target
                                                                   else "NOT met")),
              fmt(r.values["max_abs_diff"], ".2e") if r.values else "n/a",
              fmt(r.values["max_rel_diff"], ".2e") if r.values else "n/a"] for r in rows]
    print()
    print(markdown_table(header, table))

    sweep_rows: list[dict[str, Any]] = []
    budgets = [int(b) for b in args.budget_sweep.split(",") if b.strip()]
    if budgets:
        sweep_table = []
        for m in methods:
            for b in budgets:
                v = variants(m, b)[0]
                t = time_call(seqexplain_runner(wrapped, prompt, target, m, v.options), args.repeats, args.warmup)
                sweep_rows.append({"method": m, "variant": v.label, "token_budget": b, "median_s": t.median_s,
                                   "median_cpu_s": t.median_cpu_s, "times_s": t.times_s, "cpu_s": t.cpu_s})
                sweep_table.append([m, str(b), f"{t.median_s:.3f}", f"{t.median_cpu_s:.3f}"])
                print(f"sweep {m} token_budget={b}: wall {t.median_s:.4f} s, cpu {t.median_cpu_s:.4f} s", flush=True)
        print()
        print(markdown_table(["method", "token_budget", "seqexplain s", "seqexplain CPU s"], sweep_table))

    if args.json_path:
        payload = {
            "machine": info,
            "config": {k: v for k, v in vars(args).items() if k != "json_path"} | {"vocab_size": len(tokenizer),
                                                                                   "seq_len": n_l},
            "rows": [{"method": r.method, "variant": r.variant, "seqexplain_s": r.ours.median_s, "peer": r.peer,
                      "peer_s": r.theirs.median_s if r.theirs else None, "speedup": r.speedup,
                      "cpu_speedup": r.cpu_speedup, "target": r.target, "values": r.values,
                      "seqexplain_times_s": r.ours.times_s, "seqexplain_cpu_s": r.ours.cpu_s,
                      "peer_times_s": r.theirs.times_s if r.theirs else None,
                      "peer_cpu_s": r.theirs.cpu_s if r.theirs else None} for r in rows],
            "budget_sweep": sweep_rows,
        }
        Path(args.json_path).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
