"""Shared pieces of the benchmark scripts: an offline tokenizer, a random GPT-2, fixed texts, timing, tables.

Nothing is downloaded. The tokenizer is a byte-level BPE trained in code on the docstrings of a few standard
library modules (deterministic for a given Python version); the model is a randomly initialised GPT-2 whose
``<unk>`` embedding row is set to zero, so that "embeddings of ``<unk>``" (inseq's default baseline) and "zero
embeddings" (seqexplain's and captum's usual integrated-gradients baseline) are the same tensor.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]


def _corpus() -> list[str]:
    import argparse
    import collections
    import json
    import re
    import statistics as stats_mod
    import string
    import textwrap

    texts: list[str] = []
    for module in (textwrap, collections, argparse, json, re, string, stats_mod):
        for _, obj in sorted(vars(module).items()):
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                texts.append(doc)
    return texts


def bpe_tokenizer(vocab_size: int = 4096) -> Any:
    """A byte-level BPE ``PreTrainedTokenizerFast`` (about 4k tokens) trained on stdlib docstrings."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>")


def random_gpt2(tokenizer: Any, n_layer: int = 4, n_embd: int = 256, n_head: int = 4, n_positions: int = 512,
                seed: int = 0) -> torch.nn.Module:
    """A randomly initialised ``GPT2LMHeadModel`` in eval mode, with a zero ``<unk>`` embedding row."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=len(tokenizer),
                     n_positions=n_positions, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.unk_token_id] = 0.0
    return model


def prompt_and_target(tokenizer: Any, prompt_len: int, n_targets: int, seed: int = 0) -> tuple[str, str]:
    """A prompt of exactly ``prompt_len`` tokens and a continuation (starting with a space) of exactly
    ``n_targets`` tokens, such that ``prompt + continuation`` tokenises to the two token lists concatenated.

    Words are single-token vocabulary entries (``Ġword``, ASCII letters), drawn with a fixed seed."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    words = [s[1:] for s, _ in vocab if s.startswith("Ġ") and s[1:].isascii() and s[1:].isalpha() and len(s) > 2]
    first = [w for w in words if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    rng = random.Random(seed)
    seq = [rng.choice(first)] + [rng.choice(words) for _ in range(prompt_len + n_targets - 1)]
    prompt = " ".join(seq[:prompt_len])
    target = " " + " ".join(seq[prompt_len:])

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    got = (count(prompt), count(target), count(prompt + target))
    if got != (prompt_len, n_targets, prompt_len + n_targets):
        raise RuntimeError(f"token counts {got} != {(prompt_len, n_targets, prompt_len + n_targets)}")
    return prompt, target


@dataclass
class Timing:
    """Wall times (``time.perf_counter``) and process CPU times (``time.process_time``) of the timed calls."""

    times_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    result: Any = field(default=None, repr=False)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_s)


def _timed(fn: Callable[[], Any], timing: Timing) -> None:
    sync()
    c0, t0 = time.process_time(), time.perf_counter()
    timing.result = fn()
    sync()
    timing.times_s.append(time.perf_counter() - t0)
    timing.cpu_s.append(time.process_time() - c0)


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Median wall time of ``repeats`` calls after ``warmup`` untimed calls."""
    return time_interleaved({"fn": fn}, repeats, warmup)["fn"]


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """Time several callables round-robin (``warmup`` untimed rounds, then ``repeats`` timed rounds), so that a
    change of machine load during the run affects them alike."""
    timings = {k: Timing() for k in fns}
    for _ in range(warmup):
        for k, fn in fns.items():
            timings[k].result = fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            _timed(fn, timings[k])
    return timings


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def agreement(ours: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Max absolute difference and that difference relative to ``max |ref|``, on the cells in ``mask``."""
    a, b = np.asarray(ours, dtype=np.float64)[mask], np.asarray(ref, dtype=np.float64)[mask]
    diff = float(np.max(np.abs(a - b))) if a.size else float("nan")
    scale = float(np.max(np.abs(b))) if b.size else float("nan")
    return {"max_abs_diff": diff, "max_rel_diff": diff / scale if scale > 0 else float("nan"), "ref_scale": scale}


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "device": device,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    from importlib import metadata

    for name in ("transformers", "captum", "inseq", "seqexplain"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def check_device(ap: Any, device: str) -> None:
    """Exit 2 with one line (``ap.error``) for a ``--device`` this machine cannot run: CUDA where there is none, a GPU
    ``N`` it lacks, or a name torch does not know; make ``cuda:N`` CUDA's current device (so that :func:`sync` waits
    on it and ``cuda`` means it)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        ap.error(f"--device {device!r} is not a torch device; use cpu or cuda (cuda:N)")
    if dev.type not in ("cpu", "cuda"):
        ap.error(f"--device {device!r}: the benchmarks run on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None:
        if dev.index >= torch.cuda.device_count():
            ap.error(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(dev.index)


def common_setup(ap: Any, args: Any, methods: str, known: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """Threads, warnings and device checks every benchmark does, and its ``--methods`` / ``--peers`` lists."""
    import warnings

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    check_device(ap, args.device)
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = set(chosen) - set(known)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {list(known)}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    return chosen, peers


def wall_and_cpu(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, process CPU seconds)``, CUDA synchronised (:func:`sync`) before and after."""
    sync()
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - w, time.process_time() - c


def training_bench_args(description: str, steps: int, checkpoint_every: int, n_dump: int) -> Any:
    """The options of the training-loop benchmarks (``--threads --seed --steps --batch-size --checkpoint-every
    --n-dump --json --device``), parsed; a ``--device`` this machine lacks exits 2 (:func:`check_device`)."""
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    ap.add_argument("--n-dump", type=int, default=n_dump)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: both loops and the dump run there")
    args = ap.parse_args()
    check_device(ap, args.device)
    return args


def timed_rounds(runners: dict[str, Callable[[int], Any]], rounds: int) -> dict[str, list[float]]:
    """Wall seconds of each ``runners[name](round)`` in ``rounds`` rounds (1 or 2), the second in reverse order: the
    mean of a runner's two rounds cancels a linear drift of the machine's load. CUDA is synchronised (:func:`sync`)
    before each timer starts and stops."""
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r, order in enumerate((list(runners), list(reversed(runners)))[:rounds]):
        for name in order:
            sync()
            t0 = time.perf_counter()
            runners[name](r)
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def inseq_classifier_note(model: torch.nn.Module, tokenizer: Any, device: str = "cpu") -> str:
    """Why a sequence classifier has no inseq runner: ``inseq.load_model`` is tried once on it (inseq supports
    causal and seq2seq LMs only) and its error is quoted, or "inseq not installed"."""
    from importlib import metadata

    try:
        import inseq
    except ImportError:
        return "inseq not installed"
    version = metadata.version("inseq")
    try:
        inseq.load_model(model, "saliency", tokenizer=tokenizer, device=device)
    except Exception as exc:  # whatever inseq raises is the answer being recorded
        first = (str(exc).splitlines() or [""])[0]
        return f"inseq {version} cannot load a sequence classifier: {type(exc).__name__}: {first}"
    return f"inseq {version} loaded the sequence classifier"


def git_commit(folder: str | Path | None = None) -> str | None:
    """The short commit of the checkout holding ``folder`` (default: these scripts), or None outside one."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=folder or Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None
