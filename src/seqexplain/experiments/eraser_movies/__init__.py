"""ERASER movie reviews (DeYoung et al., 2020): fine-tune MiniLM as a sentiment classifier (``train``), then evaluate
every attribution method's faithfulness, plausibility against the human rationales and agreement (``evaluate``).
Run through ``seqexplain reproduce eraser_movies train|evaluate`` (:mod:`seqexplain.experiments.registry`); results
in ``docs/evaluations/eraser_movies.md``."""

from __future__ import annotations

EXPERIMENTS = {
    "train": "Fine-tune MiniLM with a 2-class head on the 1,600 training reviews.",
    "evaluate": "Faithfulness, plausibility and agreement of every method on the test reviews.",
}
