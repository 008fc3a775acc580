"""Vafa et al. 2021, the translation distractor experiment (``seqexplain reproduce vafa2021 distractors``).

The paper's distractor experiment. Random disjoint pairs ``(a, b)`` of test sentences are concatenated: source
``src_a + " " + src_b``, target ``hyp_a + " " + hyp_b`` where ``hyp`` is the model's own greedy translation (the
authors' script concatenates the compatible model's generated translations). Every target token is rationalized; for
the targets of the second half, the first half is a distractor: the *source* distractors of a rationale are its
source tokens from ``src_a``, the *target* distractors its decoder positions holding tokens of ``hyp_a`` (as in the
authors' script, the always-included previous token and the decoder start token are not counted). Reported per
method: mean number of distractors per rationale and the fraction of rationales with at least one, for the
second-half targets; plus the paper script's source measure over all targets (for first-half targets the second half
of the source is the distractor).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from seqexplain.errors import InputError
from seqexplain.experiments.vafa2021_translation import ensure_model, method_specs, rationalize, wrap_model
from seqexplain.experiments.vafa2021_translation_report import distractor_table, write_results
from seqexplain.training.translation_eval import translate


def _halves(offsets: Sequence[tuple[int, int] | None], boundary: int) -> list[int | None]:
    """0 for tokens that start before ``boundary`` (the first sentence), 1 after, None for special tokens."""
    return [None if o is None else (0 if o[0] < boundary else 1) for o in offsets]


def distractor_counts(rationales: Sequence[Sequence[int]], n_source: int, src_half: Sequence[int | None],
                      tgt_half: Sequence[int | None], reached: Sequence[bool] | None = None) -> list[dict[str, int]]:
    """Per target: its half, and the distractor source / target tokens of its rationale (module docstring).

    ``rationales`` are input-axis positions (source ``0..S-1``, decoder start ``S``, target ``k`` at ``S+1+k``),
    the first being the always-included previous position, which is not counted on the target side."""
    rows: list[dict[str, int]] = []
    for i, rat in enumerate(rationales):
        half = tgt_half[i]
        if half is None:
            continue
        other = 1 - half
        src = [j for j in rat if j < n_source and src_half[j] is not None]
        tgt = [j - n_source - 1 for j in rat[1:] if j > n_source]
        rows.append({
            "half": int(half),
            "source_distractors": sum(1 for j in src if src_half[j] == (0 if half == 1 else 1)),
            "target_distractors": sum(1 for k in tgt if tgt_half[k] == 0) if half == 1 else 0,
            "length": len(rat),
            "other": other,
            "reached": int(reached[i]) if reached is not None else 1,
        })
    return rows


def summarize_distractors(rows: Sequence[dict[str, int]]) -> dict[str, float]:
    """Means and fractions of :func:`distractor_counts` rows (module docstring); ``*_reached``: the same over the
    second-half targets whose rationale reached the stopping rule (an unreached search holds the whole context)."""
    second = [r for r in rows if r["half"] == 1]
    ok = [r for r in second if r["reached"]]
    src_ok = np.array([r["source_distractors"] for r in ok], dtype=float)
    tgt_ok = np.array([r["target_distractors"] for r in ok], dtype=float)
    src2 = np.array([r["source_distractors"] for r in second], dtype=float)
    tgt2 = np.array([r["target_distractors"] for r in second], dtype=float)
    src_all = np.array([r["source_distractors"] for r in rows], dtype=float)

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else float("nan")

    return {
        "source_mean": mean(src2), "target_mean": mean(tgt2),
        "source_frac": mean(src2 > 0), "target_frac": mean(tgt2 > 0),
        "source_mean_all_targets": mean(src_all), "source_frac_all_targets": mean(src_all > 0),
        "source_mean_reached": mean(src_ok), "target_mean_reached": mean(tgt_ok),
        "source_frac_reached": mean(src_ok > 0), "target_frac_reached": mean(tgt_ok > 0),
        "length": mean(np.array([r["length"] for r in rows], dtype=float)),
        "reached": mean(np.array([r["reached"] for r in rows], dtype=float)),
        "n_second_half_targets": len(second), "n_targets": len(rows),
    }


def run_distractors(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                    n_pairs: int | None = None, baselines: Sequence[str] | None = None, seed: int = 0,
                    progress: bool = True, max_size: int | None = None, targets: str | None = None) -> dict[str, Any]:
    """The distractor experiment (module docstring) with the de→en model under ``out_dir`` (trained first when
    missing). ``n_pairs`` concatenated pairs (default 40; quick: 2) drawn with ``seed``; ``targets`` is
    ``"translations"`` (the model's greedy translations, as in the paper; the default) or ``"references"`` (the
    reference translations; the default in quick mode, whose toy model translates nothing useful); writes
    ``<out_dir>/distractors/{results.json,table.md,rationales.jsonl}`` and returns the results."""
    from seqexplain.data.multi30k import read_multi30k

    t0 = time.perf_counter()
    model, tok, train_res = ensure_model(out_dir, quick, data_root, "de", "en", progress)
    wrapped = wrap_model(model, tok, "seqexplain-multi30k-de-en")
    n_pairs = n_pairs if n_pairs is not None else (2 if quick else 40)
    if max_size is None and quick:
        max_size = 6
    test = read_multi30k("test", "de", "en", data_root)
    rs = np.random.RandomState(seed)
    pool = rs.permutation(len(test))[: max(2 * n_pairs + 20, 2 * n_pairs)]
    targets = targets or ("references" if quick else "translations")
    if targets == "translations":
        hyps = dict(zip(pool.tolist(), translate(model, tok, [test.source[i] for i in pool]), strict=True))
    elif targets == "references":
        hyps = {int(i): test.target[int(i)] for i in pool}
    else:
        raise InputError(f"targets must be 'translations' or 'references', got {targets!r}")
    usable = [int(i) for i in pool if hyps[int(i)].strip()]
    if len(usable) < 2 * n_pairs:
        raise InputError(f"only {len(usable)} test sentences have a non-empty translation; lower n_pairs")
    first, second = usable[:n_pairs], usable[n_pairs : 2 * n_pairs]
    specs = method_specs(baselines, quick, max_size=max_size)
    rows: dict[str, list[dict[str, int]]] = {k: [] for k, _, _ in specs}
    seconds: dict[str, float] = {k: 0.0 for k, _, _ in specs}
    records: list[dict[str, Any]] = []
    for a, b in tqdm(list(zip(first, second, strict=True)), desc="distractor pairs", disable=not progress):
        src_text = test.source[a] + " " + test.source[b]
        tgt_text = hyps[a] + " " + hyps[b]
        ex = wrapped.encode(src_text, tgt_text)
        s = ex.n_source
        src_half = _halves(ex.offsets[:s], len(test.source[a]))
        tgt_half = _halves(ex.offsets[s + 1 :], len(hyps[a]))
        rec: dict[str, Any] = {"source": src_text, "target": tgt_text, "tokens": ex.tokens, "n_source": s,
                               "rationales": {}}
        for key, method, opts in specs:
            t1 = time.perf_counter()
            rats, ok = rationalize(wrapped, ex, method, opts)
            seconds[key] += time.perf_counter() - t1
            rows[key].extend(distractor_counts(rats, s, src_half, tgt_half, ok))
            rec["rationales"][key] = rats
        records.append(rec)
    summary = {k: {**summarize_distractors(rows[k]), "seconds": seconds[k]} for k, _, _ in specs}
    table = distractor_table(summary)
    result = {"experiment": "distractors", "quick": quick, "n_pairs": n_pairs, "seed": seed, "targets": targets,
              "model_test_bleu": train_res.get("test_bleu"), "methods": summary, "table": table, "markdown": table,
              "seconds": time.perf_counter() - t0}
    write_results(Path(out_dir) / "distractors", result, records)
    return result
