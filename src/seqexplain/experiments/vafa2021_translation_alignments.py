"""Vafa et al. 2021, the translation alignment experiment (``seqexplain reproduce vafa2021 alignments``).

Rationales of gold (teacher-forced) reference translations against gold word alignments. Each target *word*'s
rationale is the union over its subword tokens of the source words of their rationales (decoder positions and
``</s>`` left out), in the order added; scored with :func:`seqexplain.metrics.alignment.score_corpus_alignments`
(Length, AER — standard, and the paper script's variant —, IOU, F1, Top1). Data: the EN–FR Hansards gold set (447
pairs, English → French, so an en→fr model trained on Multi30K's French side) and the 5-pair EN–DE sample (read with
German as the source for the de→en model: its links ``English i – German j`` are swapped). Because the
teacher-forced gold words are often not what a small model predicts, rationale searches are capped at 10 positions
here (see :func:`run_alignments`).
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
from seqexplain.experiments.vafa2021_translation_report import alignment_table, write_results

ALIGNMENT_SETS: dict[str, tuple[str, str]] = {"hansards_en_fr": ("en", "fr"), "europarl_de_en_sample": ("de", "en")}
"""Gold sets and the model direction each is evaluated with."""


def read_alignment_set(name: str, data_root: Path | str | None = None
                       ) -> list[tuple[list[str], list[str], Any]]:
    """``(source words, target words, GoldAlignment with (source word, target word) links)`` per sentence, in the
    direction of :data:`ALIGNMENT_SETS`."""
    from seqexplain.data.alignments import GoldAlignment, read_indexed_lines, read_parallel, read_pharaoh
    from seqexplain.data.paths import require_data

    base = require_data("word_alignment", data_root)
    if name == "hansards_en_fr":
        folder = base / "awesome_align_en_fr_ro_en"
        pairs = read_parallel(folder / "enfr.src-tgt")
        gold = read_pharaoh(folder / "enfr.gold", one_based=True, src_lengths=[len(s) for s, _ in pairs],
                            tgt_lengths=[len(t) for _, t in pairs])
        return [(s, t, g) for (s, t), g in zip(pairs, gold, strict=True)]
    if name == "europarl_de_en_sample":
        folder = base / "simalign_sample_en_de"
        eng = read_indexed_lines(folder / "sample_eng.txt")
        deu = read_indexed_lines(folder / "sample_deu.txt")
        gold = read_pharaoh(folder / "sample_eng_deu.gold", src_lengths=[len(x) for x in eng],
                            tgt_lengths=[len(x) for x in deu])
        swapped = [GoldAlignment(sure={(j, i) for i, j in g.sure}, possible={(j, i) for i, j in g.possible})
                   for g in gold]
        return list(zip(deu, eng, swapped, strict=True))
    raise InputError(f"unknown alignment set {name!r}; use one of {', '.join(ALIGNMENT_SETS)}")


def word_rationales(rationales: Sequence[Sequence[int]], src_word_of: Sequence[int | None],
                    tgt_word_of: Sequence[int | None], n_words: int) -> list[list[int]]:
    """Per target word, the source words of the rationales of its subword tokens, in the order added (first token
    first), duplicates removed."""
    from seqexplain.metrics.alignment import source_words_of_rationale

    out: list[list[int]] = [[] for _ in range(n_words)]
    for k, rat in enumerate(rationales):
        w = tgt_word_of[k]
        if w is None:
            continue
        for x in source_words_of_rationale(rat, src_word_of):
            if x not in out[w]:
                out[w].append(x)
    return out


def run_alignments(out_dir: Path | str, quick: bool = False, data_root: Path | str | None = None, *,
                   n_sentences: int | None = None, baselines: Sequence[str] | None = None,
                   sets: Sequence[str] | None = None, seed: int = 0, progress: bool = True,
                   max_size: int | None = 10, max_tokens: int = 30) -> dict[str, Any]:
    """The alignment experiment (module docstring) for each gold set in ``sets`` (default: both), with the matching
    model under ``out_dir`` (trained first when missing).

    The gold targets are teacher-forced, and a weak or out-of-domain model often does not predict them even from the
    whole context, where greedy search would go through every position (cubic cost); so every rationale search
    stops at ``max_size`` positions (default 10, counting the always-included previous token; ``None``: no cap; quick
    mode: 6), and only sentences whose source and target are at most ``max_tokens`` tokens each are *eligible*
    (the EN–DE sample is used whole). ``n_sentences`` eligible sentences per set are drawn with ``seed`` (default
    60; quick: the 2 shortest). Writes ``<out_dir>/alignments/...``."""
    from seqexplain.data.tokenizers import word_index_of_tokens, word_spans
    from seqexplain.metrics.alignment import score_corpus_alignments

    t0 = time.perf_counter()
    sets = tuple(sets) if sets is not None else tuple(ALIGNMENT_SETS)
    if quick:
        max_size = 6 if max_size is None else min(max_size, 6)
    specs = method_specs(baselines, quick, max_size=max_size)
    results: dict[str, Any] = {"experiment": "alignments", "quick": quick, "seed": seed, "max_size": max_size,
                               "max_tokens": max_tokens, "sets": {}}
    tables: list[str] = []
    records: list[dict[str, Any]] = []
    for name in sets:
        src_lang, tgt_lang = ALIGNMENT_SETS[name]
        model, tok, train_res = ensure_model(out_dir, quick, data_root, src_lang, tgt_lang, progress)
        wrapped = wrap_model(model, tok, f"seqexplain-multi30k-{src_lang}-{tgt_lang}")
        data = read_alignment_set(name, data_root)
        n_src = [len(x) for x in tok([" ".join(d[0]) for d in data], add_special_tokens=True)["input_ids"]]
        n_tgt = [len(x) for x in tok([" ".join(d[1]) for d in data], add_special_tokens=False)["input_ids"]]
        whole = name == "europarl_de_en_sample"
        eligible = [i for i in range(len(data)) if len(data[i][1]) > 0 and
                    (whole or (n_src[i] <= max_tokens and 0 < n_tgt[i] <= max_tokens))]
        want = n_sentences if n_sentences is not None else (2 if quick else 60)
        if quick:
            order = sorted(eligible, key=lambda i: (len(data[i][0]) < 3, n_src[i] + n_tgt[i]))[:want]
        elif want < len(eligible):
            order = [eligible[k] for k in np.random.RandomState(seed).choice(len(eligible), want, replace=False)]
        else:
            order = eligible
        order = sorted(order)
        per_method: dict[str, list[tuple[list[list[int]], list[set[int]], list[set[int]], int]]] = {
            k: [] for k, _, _ in specs}
        seconds = {k: 0.0 for k, _, _ in specs}
        reached: dict[str, list[bool]] = {k: [] for k, _, _ in specs}
        skipped = 0
        for i in tqdm(order, desc=f"alignments {name}", disable=not progress):
            src_words, tgt_words, gold = data[i]
            src_text, tgt_text = " ".join(src_words), " ".join(tgt_words)
            try:
                ex = wrapped.encode(src_text, tgt_text)
            except InputError:  # longer than the model's positions
                skipped += 1
                continue
            s = ex.n_source
            src_word_of = word_index_of_tokens(ex.offsets[:s], src_text, word_spans(src_text))
            src_word_of = src_word_of + [None] * (ex.length - s)
            tgt_word_of = word_index_of_tokens(ex.offsets[s + 1 :], tgt_text, word_spans(tgt_text))
            by_target = gold.sources_by_target()
            sure = [by_target.get(t, (set(), set()))[0] for t in range(len(tgt_words))]
            possible = [by_target.get(t, (set(), set()))[1] for t in range(len(tgt_words))]
            rec: dict[str, Any] = {"set": name, "index": i, "source": src_text, "target": tgt_text,
                                   "rationales": {}}
            for key, method, opts in specs:
                t1 = time.perf_counter()
                rats, ok = rationalize(wrapped, ex, method, opts)
                seconds[key] += time.perf_counter() - t1
                reached[key].extend(ok)
                words = word_rationales(rats, src_word_of, tgt_word_of, len(tgt_words))
                per_method[key].append((words, sure, possible, len(src_words)))
                rec["rationales"][key] = words
            records.append(rec)
        set_res: dict[str, Any] = {"direction": f"{src_lang}-{tgt_lang}", "sentences": len(order) - skipped,
                                   "skipped": skipped, "eligible": len(eligible), "total": len(data),
                                   "model_test_bleu": train_res.get("test_bleu"), "methods": {}}
        for key, _, _ in specs:
            if not per_method[key]:
                continue
            std = score_corpus_alignments(per_method[key], "standard")
            vafa = score_corpus_alignments(per_method[key], "vafa")
            set_res["methods"][key] = {"length": std.length, "aer": std.aer, "aer_vafa": vafa.aer, "iou": std.iou,
                                       "f1": std.f1, "top1": std.top1, "n_words": std.n_words,
                                       "reached": float(np.mean(reached[key])) if reached[key] else float("nan"),
                                       "seconds": seconds[key]}
        results["sets"][name] = set_res
        tables.append(f"**{name}** ({src_lang}→{tgt_lang}, {set_res['sentences']} of {len(eligible)} eligible of "
                      f"{len(data)} sentences, {skipped} skipped, rationales capped at {max_size} positions)\n\n"
                      + alignment_table(set_res["methods"]))
    results["table"] = results["markdown"] = "\n".join(tables)
    results["seconds"] = time.perf_counter() - t0
    write_results(Path(out_dir) / "alignments", results, records)
    return results
