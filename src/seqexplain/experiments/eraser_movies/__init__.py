"""ERASER movie reviews (DeYoung et al., 2020): fine-tune MiniLM as a sentiment classifier (``train``), then evaluate
every attribution method's faithfulness, plausibility against the human rationales and agreement (``evaluate``).
Run through ``seqexplain reproduce eraser_movies train|evaluate`` (:mod:`seqexplain.experiments.registry`); results
in ``docs/evaluations/eraser_movies.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXPERIMENTS = {
    "train": "Fine-tune MiniLM with a 2-class head on the 1,600 training reviews.",
    "evaluate": "Faithfulness, plausibility and agreement of every method on the test reviews.",
}


def run(experiment: str, out: Path | str, *, quick: bool = False, data_root: Path | str | None = None, seed: int = 0,
        **options: Any) -> dict[str, Any]:
    """Run ``train`` or ``evaluate`` with the registry's option checks (options by their command-line names,
    e.g. ``limit=20``, ``methods="occlusion,greedy"``)."""
    from seqexplain.experiments.registry import run_experiment

    result: dict[str, Any] = run_experiment("eraser_movies", experiment, out, quick=quick, data_root=data_root,
                                            seed=seed, **options)
    return result
