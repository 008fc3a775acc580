"""Decoding the targets of many prompts at once: seqexplain's ``encode_many`` against one ``encode`` per prompt and
against Hugging Face ``generate``, on SmolLM2-135M.

Prompts: the first 4-12 words (seeded) of ``--n`` SST-2 test sentences (``seqexplain.data.sst``), no target, so the
model's own greedy continuation of up to ``--max-new-tokens`` tokens is decoded, as ``explain(model, prompt)`` and
``explain_many(model, prompts)`` do before explaining it. Timed in one run, the runners taking turns ``--repeats``
times (order reversed every other time):

* one at a time: ``[wrapped.encode(p) for p in prompts]`` (one forward per prompt and step, no KV cache);
* ``encode_many``: ``wrapped.encode_many([(p, None), ...])`` (each step one forward per group of similar length,
  :mod:`seqexplain.models.greedy`);
* Hugging Face: ``model.generate(do_sample=False, max_new_tokens=...)`` on the same token ids, left-padded, in
  batches of ``--hf-batch`` prompts, with its KV cache (the peer a user would reach for);
* with ``--explain METHOD``, the whole explanation: ``explain_many(wrapped, prompts, METHOD)`` against one
  ``explain(wrapped, prompt, method=METHOD)`` per prompt (its ratio is to that loop).

Agreement: continuations identical to one-at-a-time's (encode_many must match all; ``generate``'s cached, padded
forwards round differently, so a near tie may go the other way), compared up to the end-of-sequence token.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import check_device, git_commit, machine_info, markdown_table  # noqa: E402
from _explain_many_runners import repeated  # noqa: E402

from seqexplain.data.sst import read_sst  # noqa: E402


def prompts_of(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    data = read_sst("test")
    order = list(range(len(data)))
    rng.shuffle(order)
    out = []
    for i in order[:n]:
        words = data[i].text.split()
        out.append(" ".join(words[: min(len(words), rng.randint(4, 12))]))
    return out


def hf_generate(wrapped: Any, prompts: list[str], max_new_tokens: int, batch: int) -> list[list[int]]:
    """Greedy continuations from ``model.generate`` on the adapter's own prompt ids, left-padded, cut after the
    first end-of-sequence token (kept when it is the first token, as seqexplain's rule keeps it)."""
    model, eos = wrapped.model, wrapped.special_id("eos_token_id")
    pad = wrapped.pad_id()
    ids = [list(wrapped.tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]  # the adapter's ids
    out: list[list[int]] = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        width = max(len(q) for q in chunk)
        x = torch.tensor([[pad] * (width - len(q)) + q for q in chunk], device=wrapped.device)
        mask = torch.tensor([[0] * (width - len(q)) + [1] * len(q) for q in chunk], device=wrapped.device)
        with torch.no_grad():
            gen = model.generate(input_ids=x, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=pad, eos_token_id=eos)
        for row in gen[:, width:].tolist():
            new: list[int] = []
            for t in row:
                if t == eos and new:
                    break
                new.append(t)
                if t == eos:
                    break
            out.append(new)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="prompts (default 64)")
    ap.add_argument("--max-new-tokens", type=int, default=10, help="tokens to decode per prompt (default 10)")
    ap.add_argument("--hf-batch", type=int, default=64, help="prompts per generate() call (default 64)")
    ap.add_argument("--repeats", type=int, default=2, help="timing rounds, order reversed every other (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompts' choice and length")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--explain", default=None, metavar="METHOD",
                    help="also time the whole explanation: explain_many(prompts, METHOD) against one explain call per "
                         "prompt (their targets decoded as above), e.g. gradient_norm")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    check_device(ap, args.device)
    torch.manual_seed(args.seed)
    import warnings

    warnings.filterwarnings("ignore")
    from seqexplain.models.smollm2 import smollm2

    wrapped = smollm2(device=args.device)
    prompts = prompts_of(args.n, args.seed)
    k = args.max_new_tokens

    def one(ps: list[str]) -> list[list[str]]:
        return [wrapped.encode(p, max_new_tokens=k).target_tokens for p in ps]

    def many(ps: list[str]) -> list[list[str]]:
        return [ex.target_tokens for ex in wrapped.encode_many([(p, None) for p in ps], max_new_tokens=k)]

    def hf(ps: list[str]) -> list[list[str]]:
        return [wrapped.tokenizer.convert_ids_to_tokens(ids) for ids in hf_generate(wrapped, ps, k, args.hf_batch)]

    runners: dict[str, Any] = {"one at a time": one, "encode_many": many, "HF generate": hf}
    if args.explain:
        import seqexplain

        def explain_one(ps: list[str]) -> list[list[str]]:
            return [seqexplain.explain(wrapped, p, method=args.explain, max_new_tokens=k).target_tokens for p in ps]

        def explain_many(ps: list[str]) -> list[list[str]]:
            return [a.target_tokens for a in seqexplain.explain_many(wrapped, ps, args.explain, progress=False,
                                                                      max_new_tokens=k)]

        runners.update({f"explain {args.explain}, one at a time": explain_one,
                        f"explain_many {args.explain}": explain_many})
    for fn in runners.values():
        fn(prompts[:4])  # warm-up
    total, _ = repeated(runners, prompts, [prompts], args.repeats)  # in turns, order reversed every other time
    walls = {name: wall for name, (wall, _, _) in total.items()}
    results = {name: res for name, (_, _, res) in total.items()}
    info = machine_info(args.device)
    ref = results["one at a time"]
    rows = []
    for name in runners:
        same = sum(a == b for a, b in zip(results[name], ref, strict=True))
        rows.append({"runner": name, "prompts_per_s": len(prompts) * args.repeats / walls[name],
                     "same_as_one_at_a_time": same})
    base = rows[0]["prompts_per_s"]
    if args.explain:  # the whole explanation against its own one-at-a-time loop
        rows[-2]["vs"] = rows[-1]["vs"] = rows[-2]["prompts_per_s"]
    print(f"# {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} commit {git_commit()}; "
          f"SmolLM2-135M; {len(prompts)} SST-2 prompts, {k} new tokens; device {args.device}; torch {info['torch']}, "
          f"{info['threads']} thread(s); {args.repeats} repeats")
    print(markdown_table(["runner", "prompts/s", "÷ its one-at-a-time loop", "continuations equal to one at a time"],
                         [[r["runner"], f"{r['prompts_per_s']:.2f}", f"{r['prompts_per_s'] / r.get('vs', base):.2f}×",
                           f"{r['same_as_one_at_a_time']}/{len(prompts)}"] for r in rows]))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"machine": info, "config": vars(args), "rows": rows,
                                                    "commit": git_commit()}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
