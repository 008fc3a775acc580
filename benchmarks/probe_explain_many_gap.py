"""Where explain_many's time goes next to the same packs written directly in torch, and whether the direct loop
itself could go faster (``bench_explain_many.py`` measures the ratios; this script explains them).

Same model and sentences as ``bench_explain_many.py`` (MiniLM with a seeded 2-label head, SST-2 test sentences with
their gold labels, gradient norm). Probes (``--probe``, each run ``--runs`` times, wall seconds per run printed):

* ``phases``: explain_many and the direct-torch loop, split by timing hooks into the model's forward calls, the
  ``autograd.grad`` calls and the rest; explain_many's rest split further into encoding, ``score_many`` around the
  forward, the gradient method around ``score_many`` and ``autograd.grad``, and building the ``Attribution``s; the
  full (generation-2) garbage collections that fell into each runner and their seconds.
* ``many``: explain_many alone (for A/B runs of two library versions: ``PYTHONPATH=<their src>``, alternately).
* ``grouping``: the direct loop with explain_many's packs (sorted by length, cut at the pack size in real tokens)
  against packs of equal length only (no padding, smaller forwards).
* ``workers``: the direct loop as one loop of ``--threads`` intra-op threads against ``--threads`` Python worker
  threads of one intra-op thread each (half the sentences each).
* ``sdpa``: the direct loop under each scaled-dot-product-attention backend of the CPU (default, math, flash).
* ``gc``: the garbage collector's share in a long job: explain_many and one-at-a-time each run ``--runs`` times over
  the sentences in one loop that keeps every result (as a user collecting a corpus's attributions does), the garbage
  collected before each loop; the full (generation-2) collections inside and their seconds. First, the number of
  tracked objects explain_many holds at its first forward (a pack's examples, alive while it computes).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import git_commit, machine_info  # noqa: E402
from _explain_many_runners import (  # noqa: E402
    Items,
    load_classifier,
    many_runner,
    sentences,
    single_runner,
    torch_packed_runner,
)

import seqexplain  # noqa: E402
from seqexplain.models.batching import length_groups  # noqa: E402

PROBES = ("phases", "many", "grouping", "workers", "sdpa", "gc")


class Clock:
    """Seconds spent inside wrapped callables, per name (a callable inside another counts in both), and the full
    garbage collections by the runner they fell into."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.gc_full: dict[str, list[float]] = {}
        self.runner = "-"
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif info["generation"] == 2:
            self.gc_full.setdefault(self.runner, []).append(time.perf_counter() - self._gc_start)

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        setattr(owner, attr, timed)

    @contextlib.contextmanager
    def run(self, runner: str) -> Iterator[None]:
        self.runner, self.seconds = runner, {}
        try:
            yield
        finally:
            self.runner = "-"


def equal_length_groups(lengths: list[int], limit: int) -> list[list[int]]:
    """Indices of equal length together, cut at ``limit`` real tokens (at least one index each)."""
    by_length: dict[int, list[int]] = {}
    for k, n in enumerate(lengths):
        by_length.setdefault(n, []).append(k)
    return [[idx[i] for i in group] for n, idx in sorted(by_length.items())
            for group in length_groups([n] * len(idx), limit)]


def in_workers(fn: Callable[[Items], Any], n: int) -> Callable[[Items], None]:
    """``fn`` over every ``n``-th sentence in each of ``n`` Python threads, one intra-op thread each."""
    def run(items: Items) -> None:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            workers = [threading.Thread(target=fn, args=(items[k::n],)) for k in range(n)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        finally:
            torch.set_num_threads(saved)
    return run


def with_context(fn: Callable[[Items], Any], make: Callable[[], Any]) -> Callable[[Items], Any]:
    def run(items: Items) -> Any:
        with make():
            return fn(items)
    return run


def timings(runners: dict[str, Callable[[Items], Any]], items: Items, runs: int, clock: Clock | None = None
            ) -> None:
    """Every runner once per round, ``runs`` rounds; wall seconds per run (and, with a clock, its phases)."""
    for r in range(runs):
        for name, fn in runners.items():
            context = clock.run(name) if clock else contextlib.nullcontext()
            with context:
                t0 = time.perf_counter()
                fn(items)
                wall = time.perf_counter() - t0
            line = f"run {r + 1} {name}: {wall:.3f} s"
            if clock:
                phases = dict(clock.seconds)
                rest = wall - phases.get("forward", 0.0) - phases.get("backward", 0.0)
                line += "".join(f", {k} {v:.3f}" for k, v in phases.items()) + f", rest {rest:.3f}"
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", choices=PROBES, required=True)
    ap.add_argument("--n", type=int, default=1000, help="SST-2 test sentences (default 1000)")
    ap.add_argument("--runs", type=int, default=3, help="rounds of every runner (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info("cpu")
    print(f"# commit {git_commit()}; library at {git_commit(Path(seqexplain.__file__).parent)}; probe {args.probe}; "
          f"{args.n} "
          f"sentences; torch {info['torch']}, {info['threads']} thread(s); seed {args.seed}")
    model, tokenizer = load_classifier(args.seed, "cpu")
    wrapped = seqexplain.load_model(model, tokenizer)
    items = sentences(args.n, "test", args.seed, sort_by_length=False)
    pack, pack_tokens = 1024, wrapped.default_pack_tokens()
    many = many_runner(wrapped, "gradient_norm", {}, pack)
    direct = torch_packed_runner(model, tokenizer, "gradient_norm", pack, pack_tokens, "cpu")
    many(items[:50])  # warm-up
    direct(items[:50])
    if args.probe == "phases":
        clock = Clock()
        clock.wrap(type(model), "forward", "forward")
        clock.wrap(torch.autograd, "grad", "backward")
        explain_module = importlib.import_module("seqexplain.explain")
        gradient_module = importlib.import_module("seqexplain.methods.gradient")
        clock.wrap(explain_module, "_encode_pack", "encode")
        clock.wrap(explain_module, "to_attribution", "attributions")
        clock.wrap(type(wrapped), "score_many", "score_many")
        clock.wrap(gradient_module, "_gradients_many", "gradient method")
        timings({"explain_many": many, "direct torch": direct}, items, args.runs, clock)
        print("full garbage collections (s):",
              {k: [round(s, 3) for s in v] for k, v in clock.gc_full.items()} or "none")
    elif args.probe == "many":
        timings({"explain_many": many}, items, args.runs)
    elif args.probe == "grouping":
        import _explain_many_runners as runners_module

        def grouped(rule: Callable[[list[int], int], list[list[int]]]) -> Callable[[Items], Any]:
            def run(part: Items) -> Any:
                saved = runners_module.length_groups
                runners_module.length_groups = rule
                try:
                    return direct(part)
                finally:
                    runners_module.length_groups = saved
            return run

        lengths = [len(ids) for ids in tokenizer([t for t, _ in items])["input_ids"]]
        for name, rule in (("explain_many's packs", runners_module.length_groups),
                           ("equal lengths", equal_length_groups)):
            groups = rule(lengths, pack_tokens)
            padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
            print(f"# {name}: {len(groups)} forwards, padding {100 * (padded / sum(lengths) - 1):.1f} % of the real "
                  "tokens")
        timings({"explain_many's packs": direct, "equal lengths": grouped(equal_length_groups)}, items, args.runs)
    elif args.probe == "gc":
        gc.collect()
        before, alive = len(gc.get_objects()), []
        score_many = wrapped.score_many

        def counting(parts: Any) -> Any:  # tracked objects alive at explain_many's first forward
            if not alive:
                gc.collect()
                alive.append(len(gc.get_objects()) - before)
            return score_many(parts)

        wrapped.score_many = counting  # type: ignore[method-assign]
        many(items)
        wrapped.score_many = score_many  # type: ignore[method-assign]
        print(f"explain_many holds {alive[0]} more garbage-collector-tracked objects at its first forward than before "
              f"it began ({len(items)} sentences in the pack)", flush=True)
        clock = Clock()
        for name, fn in (("explain_many", many), ("one-at-a-time", single_runner(wrapped, "gradient_norm", {}))):
            kept: list[Any] = []
            gc.collect()
            with clock.run(name):
                t0 = time.perf_counter()
                for _ in range(args.runs):
                    kept.extend(fn(items))
                wall = time.perf_counter() - t0
            full = clock.gc_full.get(name, [])
            print(f"{name}: {len(kept)} sentences in {wall:.1f} s; {len(full)} full garbage collection(s) inside, "
                  f"{sum(full):.2f} s ({100 * sum(full) / wall:.1f} % of the wall time): "
                  f"{[round(x, 3) for x in full]}", flush=True)
            del kept
    elif args.probe == "workers":
        timings({f"one loop, {args.threads} threads": direct,
                 f"{args.threads} workers, 1 thread each": in_workers(direct, args.threads)}, items, args.runs)
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        timings({"default": direct,
                 "math": with_context(direct, lambda: sdpa_kernel([SDPBackend.MATH])),
                 "flash": with_context(direct, lambda: sdpa_kernel([SDPBackend.FLASH_ATTENTION]))}, items, args.runs)


if __name__ == "__main__":
    main()
