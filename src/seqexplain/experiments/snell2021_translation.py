"""``seqexplain reproduce snell2021 multi30k``: the translation half of Snell et al. (2021) on Multi30k de→en.

1. Data: Multi30k train (the first ``n_train`` pairs when set), val and test; a joint SentencePiece unigram
   vocabulary of ``vocab_size`` pieces trained on the German and English training sentences
   (:mod:`seqexplain.data.sentencepiece_vocab`); every side ends with ``</s>``.
2. Runs: ``n_runs`` normal LSTM encoder-decoders ``A, B, …`` and one uniform-attention run
   (:mod:`seqexplain.training.snell_translation`), one checkpoint schedule.
3. Dumps at every checkpoint with one row per target token (:mod:`seqexplain.analysis.translation_dynamics`) on
   ``val`` (``max_eval`` pairs drawn with ``seed``) and ``train`` (as many training pairs); the performance measure
   per checkpoint is the teacher-forced **token accuracy** of the dumped split (beam-search BLEU at every checkpoint
   is beyond a CPU budget).
4. β^px: the word-translation baseline (best validation-loss epoch).
5. The table per split and metric, averaged over target rows; plots; and, for run A at its best validation
   checkpoint, token accuracy, perplexity and beam-search BLEU (sacrebleu) on the test set's first ``max_eval``
   sentences; that model is saved as the folder ``model/`` (:mod:`seqexplain.models.snell_saving`), which
   ``seqexplain explain --model <out>/model`` opens.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.analysis.training_dynamics import write_dump
from seqexplain.analysis.translation_dynamics import make_translation_dump, px_rows, train_word_translation
from seqexplain.atomic import atomic_write_text
from seqexplain.data.multi30k import read_multi30k
from seqexplain.data.sentencepiece_vocab import train_sentencepiece
from seqexplain.data.tokenizers import load_tokenizer, save_tokenizer
from seqexplain.models.snell_saving import save_snell_translator
from seqexplain.models.snell_translation import SnellTranslatorConfig
from seqexplain.runs import run_record
from seqexplain.training.snell import SnellTrainConfig, checkpoint_path, checkpoint_schedule
from seqexplain.training.snell_translation import (
    beam_bleu,
    load_translator,
    teacher_forced,
    train_snell_translator,
)

Pairs = list[tuple[list[int], list[int]]]


def _tokenizer(out: Path, texts: list[str], vocab_size: int) -> tuple[Any, str]:
    import hashlib

    folder = out / "tokenizer"
    if (folder / "tokenizer.json").is_file():
        tok = load_tokenizer(folder)
    else:
        tok, _ = train_sentencepiece(texts, vocab_size)
        save_tokenizer(tok, folder)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    return tok, hashlib.sha256("\n".join(w for w, _ in vocab).encode()).hexdigest()[:16]


def run_translation(s: Any, out: Path, *, data_root: Path | str | None, seed: int, progress: bool,
                    quick: bool = False) -> dict[str, Any]:
    """The pipeline of the module docstring with settings ``s`` (:class:`seqexplain.experiments.snell2021.Settings`)."""
    from seqexplain.experiments.snell2021 import best_step, claim_run, results_heading, run_names, tables, with_warnings

    train_c = read_multi30k("train", root=data_root).subset(s.n_train)
    val_c, test_c = read_multi30k("val", root=data_root), read_multi30k("test", root=data_root)
    notes = claim_run(out, "multi30k", s, seed, [train_c.source, train_c.target, val_c.source, val_c.target])
    tok, vh = _tokenizer(out, train_c.source + train_c.target, s.vocab_size)

    def enc(corpus: Any) -> Pairs:
        return [(tok(a)["input_ids"], tok(b)["input_ids"]) for a, b in corpus.pairs()]

    train, val_all = enc(train_c), enc(val_c)
    rng = np.random.default_rng(seed)
    pick_val = sorted(int(i) for i in rng.choice(len(val_all), min(s.max_eval, len(val_all)), replace=False))
    pick_train = sorted(int(i) for i in rng.choice(len(train), min(len(pick_val), len(train)), replace=False))
    evals = {"val": [val_all[i] for i in pick_val], "train": [train[i] for i in pick_train]}
    cfg = SnellTranslatorConfig(len(tok), s.emb_dim, s.hidden, s.layers, s.dropout, False, tok.pad_token_id,
                                tok.bos_token_id, tok.eos_token_id)
    names = run_names(s)
    schedule = checkpoint_schedule(s.steps, s.checkpoint_steps, s.checkpoint_every)
    for i, name in enumerate(names):
        uniform = name == "uniform"
        run_dir = out / "runs" / name
        tc = SnellTrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, seed=seed + (100 if uniform else i),
                              checkpoint_steps=list(s.checkpoint_steps), checkpoint_every=s.checkpoint_every)
        if not checkpoint_path(run_dir, s.steps).is_file():
            train_snell_translator(replace(cfg, uniform_attention=uniform), train, tc, run_dir, vh, progress=progress,
                                   device=s.device)
        for step in schedule:
            model = None  # loaded once per checkpoint, only when one of its dumps is missing
            for split, data in evals.items():
                if (out / "dumps" / f"{name}__{split}__step{step:07d}.parquet").is_file():
                    continue
                model = model or load_translator(run_dir, step, s.device)
                write_dump(make_translation_dump(model, data, run=name, step=step, split=split,
                                                 dataset="multi30k-de-en", vocab_hash=vh), out / "dumps")
    base, base_info = train_word_translation(train, evals["val"], len(tok), tok.pad_token_id, emb_dim=s.emb_dim,
                                             epochs=s.boe_epochs, seed=seed, device=s.device)
    refs = {split: {"px": px_rows(base, data), "extra": {}} for split, data in evals.items()}
    table, markdown, table_notes = tables(out, "multi30k", list(evals), names, schedule, refs, seed,
                                          measure="token_accuracy")
    notes += table_notes
    best = best_step(table, "multi30k", "token_accuracy")
    model = load_translator(out / "runs" / names[0], best, s.device)
    save_snell_translator(model, tok, out / "model")
    test = enc(test_c)[: s.max_eval]
    score, sig, hyps, n_cut = beam_bleu(model, tok, [p[0] for p in test], test_c.target[: s.max_eval], beam=s.beam)
    final = {"run": names[0], "step": best, **teacher_forced(model, test), "bleu": score, "bleu_signature": sig,
             "beam": s.beam, "sentences": len(test), "translations_cut_at_max_len": n_cut,
             "example": {"source": test_c.source[0], "reference": test_c.target[0], "hypothesis": hyps[0]}}
    markdown += (f"\n\nRun {names[0]} at its best validation checkpoint ({best} updates) on the first {len(test)} test "
                 f"sentences: token accuracy {final['accuracy']:.3f}, perplexity {final['perplexity']:.2f}, "
                 f"beam-{s.beam} BLEU {score:.2f} ({sig}).")
    if n_cut:
        notes.append(f"{n_cut} of {len(test)} beam-search translations reached the length limit without </s> and "
                     "were scored cut off")
    markdown = with_warnings(markdown, notes)
    results = {"experiment": "multi30k", "settings": asdict(s), "warnings": notes, "schedule": schedule,
               "vocab_size": len(tok),
               "n_train": len(train), "n_eval": {k: len(v) for k, v in evals.items()},
               "n_rows": {k: sum(len(p[1]) for p in v) for k, v in evals.items()},
               "baselines": {"word_translation": base_info}, "table": table, "best_run_a": final,
               "markdown": markdown, "model": {"folder": "model", "run": names[0], "step": best},
               "run": run_record(seed, quick=quick)}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    atomic_write_text(out / "results.md", f"{results_heading('multi30k', quick)}\n\n{markdown}\n")
    return results
