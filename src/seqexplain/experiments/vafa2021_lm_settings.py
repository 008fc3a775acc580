"""Vafa et al. (2021) LM recipes (:mod:`seqexplain.experiments.vafa2021_lm`): the method table, the run settings
and the plumbing every recipe shares.

* :data:`BASELINES`, :data:`ALL_METHODS` (and each recipe's default methods), :data:`LABELS` (table names),
  :data:`DEFAULT_LIMITS` / :data:`QUICK_LIMITS` (examples per recipe).
* :class:`Settings` / :func:`settings`: the knobs of a run; :meth:`Settings.method_options` maps a table method to
  the registered method and its options, :meth:`Settings.fingerprint` is what the result store keys on.
* :func:`run_method` (one method on one example, timed), :func:`predicts_target` (argmax = every target token),
  :func:`subsample` / :func:`example_limit` / :func:`choose_methods` (the seeded subsample, the limit and method
  arguments), :func:`setup_run` (output folder, data root, seeds), :func:`write_outputs` (``<stem>.json`` + ``.md``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqexplain.atomic import atomic_write_text
from seqexplain.data.paths import data_root
from seqexplain.errors import InputError
from seqexplain.methods.registry import MethodResult, get_method
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.module_state import eval_mode
from seqexplain.runs import run_record

BASELINES: dict[str, str] = {
    "gradient_norm": "gradient norm",
    "grad_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
    "attention_last": "last attention",
    "attention_all": "all attention",
    "attention_rollout": "attention rollout",
    "occlusion": "occlusion",
}
ALL_METHODS: tuple[str, ...] = ("greedy", *BASELINES, "exhaustive")
LAMBADA_METHODS: tuple[str, ...] = ("greedy", *BASELINES)
ANALOGY_METHODS: tuple[str, ...] = ALL_METHODS
TIMING_METHODS: tuple[str, ...] = ALL_METHODS
DEFAULT_LIMITS: dict[str, int] = {"lambada": 4, "analogies": 30, "timing": 8}
"""CPU defaults, sized from measured runs to stay under an hour each on one torch thread (see
docs/reproductions/vafa2021_lm.md); ``limit=0`` means every example."""
QUICK_LIMITS: dict[str, int] = {"lambada": 3, "analogies": 4, "timing": 2}
LABELS: dict[str, str] = {"greedy": "greedy", "exhaustive": "exhaustive", **BASELINES}


# =========================================================================== settings
@dataclass
class Settings:
    """Knobs of a run (defaults: CPU-feasible full runs; :func:`settings` gives the quick ones)."""

    quick: bool = False
    seed: int = 0
    ig_steps: int = 8  # integrated-gradients quadrature points (the paper: 100 Riemann steps, on a GPU)
    max_size: int | None = None  # cap on greedy / baseline rationale size (None: the whole context, as the paper)
    exhaustive_max_size: int = 3  # the paper: 6 (on a GPU)
    exhaustive_fraction: float = 1 / 3  # share of analogy examples searched exhaustively (the paper: a third)
    exhaustive_budget: int = 1 << 14  # tokens per forward for exhaustive search (its rows share cached prefixes)
    token_budget: int = 4096
    # compatibility fine-tune (LoRA + word dropout on WikiText-2 valid)
    train_steps: int = 400  # ~30 min on one CPU thread
    train_batch: int = 4
    train_length: int = 96
    train_lr: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    mixture: float = 0.5
    eval_rows: int = 32  # held-out WikiText-2 test rows of the compatibility check

    def method_options(self, method: str) -> tuple[str, dict[str, Any]]:
        """The registered method and its options for a table method name."""
        if method == "greedy":
            return "greedy", {"max_size": self.max_size, "token_budget": self.token_budget}
        if method == "exhaustive":
            return "exhaustive", {"max_size": self.exhaustive_max_size, "token_budget": self.exhaustive_budget}
        if method in BASELINES:
            order_options: dict[str, Any] = {}
            if method == "integrated_gradients":
                order_options = {"steps": self.ig_steps}
            return "baseline_rationale", {"order_by": method, "order_options": order_options,
                                          "max_size": self.max_size, "token_budget": self.token_budget}
        raise InputError(f"unknown method {method!r}; choose from {', '.join(TIMING_METHODS)}")

    def fingerprint(self, method: str) -> dict[str, Any]:
        """What determines ``method``'s result besides the model and the example (the token budget only
        batches the same computation)."""
        name, options = self.method_options(method)
        return {"method": name, **{k: v for k, v in options.items() if k != "token_budget"}}

    def compatible_settings(self) -> dict[str, Any]:
        """The settings of the compatibility fine-tune."""
        return {"steps": self.train_steps, "batch": self.train_batch, "length": self.train_length,
                "lr": self.train_lr, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "mixture": self.mixture,
                "seed": self.seed}


def settings(quick: bool, seed: int = 0, **overrides: Any) -> Settings:
    """Default settings; ``quick`` shrinks everything so a run takes seconds on a tiny random model."""
    s = Settings(quick=quick, seed=seed)
    if quick:
        s.ig_steps, s.max_size, s.exhaustive_max_size = 4, 12, 3
        s.train_steps, s.train_batch, s.train_length, s.lora_r, s.lora_alpha = 3, 4, 32, 4, 8
        s.eval_rows = 4
    for key, value in overrides.items():
        if value is not None:
            if not hasattr(s, key):
                raise InputError(f"unknown setting {key!r}")
            setattr(s, key, value)
    return s


# =========================================================================== shared helpers
def subsample(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices ``0..n-1``, or the first ``limit`` of a seeded shuffle, in that order: a larger limit extends a
    smaller one, and a run stopped early has done a smaller limit's examples (its cached results are reused)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 1:
        raise InputError("limit must be a positive number of examples")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[:limit]


def example_limit(experiment: str, limit: int | None, quick: bool) -> int | None:
    """``None`` → the default for the mode; ``0`` → no limit."""
    if limit is None:
        return (QUICK_LIMITS if quick else DEFAULT_LIMITS)[experiment]
    if limit < 0:
        raise InputError("limit must be >= 0 (0: every example)")
    return limit or None


def choose_methods(methods: Sequence[str] | None, default: Sequence[str], allowed: Sequence[str]) -> list[str]:
    chosen = list(default if methods is None else methods)
    unknown = [m for m in chosen if m not in allowed]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return chosen


def run_method(model: SequenceModel, example: Example, method: str, s: Settings) -> tuple[MethodResult, float]:
    """Run one table method on ``example``; returns the result and the seconds it took."""
    name, options = s.method_options(method)
    spec = get_method(name)
    spec.check_options(options)
    t0 = time.perf_counter()
    result = spec.fn(model, example, **options)
    return result, time.perf_counter() - t0


def predicts_target(model: SequenceModel, example: Example) -> bool:
    """Whether the model's argmax equals every target token (teacher forcing), from the full context."""
    with torch.no_grad(), eval_mode(model.model):
        argmax, _ = model.predictions(example)
    return bool((argmax[0].cpu() == example.target_ids).all())


def write_outputs(out_dir: Path, stem: str, summary: dict[str, Any], markdown: str) -> None:
    """``<stem>.json`` (the summary) and ``<stem>.md`` (the table); the summary gets the table as ``markdown``
    (what :func:`seqexplain.experiments.vafa2021.main` prints)."""
    summary["markdown"] = markdown
    summary["run"] = run_record(summary.get("seed"))
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(summary, indent=1, sort_keys=True, default=str))
    atomic_write_text(out_dir / f"{stem}.md", markdown)


def setup_run(out_dir: Path | str, data_root_: Path | str | None, seed: int) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data_root_) if data_root_ is not None else data_root()
    torch.manual_seed(seed)
    random.seed(seed)
    return out, root


def variant_name(compatible: bool) -> str:
    return "compatible" if compatible else "shipped"


def mean_or_nan(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


__all__ = ["ALL_METHODS", "ANALOGY_METHODS", "BASELINES", "DEFAULT_LIMITS", "LABELS", "LAMBADA_METHODS", "QUICK_LIMITS",
           "TIMING_METHODS", "Settings", "choose_methods", "example_limit", "mean_or_nan", "predicts_target",
           "run_method", "settings", "setup_run", "subsample", "variant_name", "write_outputs"]
