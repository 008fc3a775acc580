"""Reproduction of Verwimp et al. (2018), "State Gradients for RNN Memory Analysis" (Interspeech 2018).

Recipe: train a word-level LSTM language model (64-d embeddings, 256 hidden units, as in the paper) on WikiText-2
(or PTB); compute the state gradients ``G_d(t) = ∂ c_t / ∂ x_{t-d}`` of the cell state for delays ``d <= 50`` over
the evaluation text, online; normalise the embedding space to equal variance; decompose the mean gradient per delay
with an SVD, overall and per part-of-speech class of the input word ``x_{t-d}``; plot singular values against delay.
The paper's qualitative finding to reproduce: memory (singular values) decays with delay.

Only the validation and test splits of the corpora are available here: the model is trained on ``valid`` and the
gradients and perplexity are computed on ``test``.

Run: ``seqexplain reproduce verwimp2018 --out runs/verwimp2018 --threads 2 --seed 0 [--quick]
[--docs docs/reproductions]``. :func:`run_reproduction` is the function behind it; ``results.md`` and
``results.json`` name the command that reruns it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from seqexplain.analysis.plots import plot_curves, plot_top_singular_values
from seqexplain.analysis.spectra import EmbeddingNormalizer, relative_memory, subspace_cosine, summarize
from seqexplain.analysis.state_gradient_chunks import GradientStoreWriter
from seqexplain.analysis.state_gradient_stats import accumulate
from seqexplain.analysis.state_gradients import iter_rnn_state_gradients
from seqexplain.analysis.word_classes import (
    DEFAULT_CLASSES,
    PTB_TAGS,
    WordClasses,
    read_class_file,
    read_tag_lexicon,
    spacy_available,
    tag_tokens_spacy,
)
from seqexplain.atomic import atomic_write_text
from seqexplain.data.corpus import load_corpus
from seqexplain.errors import InputError
from seqexplain.models.rnn.lm import RNNLanguageModel, RNNLMConfig
from seqexplain.models.rnn.vocab import Vocab, write_word2vec
from seqexplain.runs import command_line, current_command, output_dir, run_record
from seqexplain.training.lm import TrainConfig, perplexity, train_lm

TagSource = Literal["auto", "spacy", "lexicon", "none"]
REPORT_DELAYS = [0, 1, 2, 3, 5, 10, 20, 30, 40, 50]


def _settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"embedding_size": 16, "hidden_size": 32, "dropout": 0.0, "epochs": 1, "max_epoch": 1,
                "max_train_tokens": 8000, "max_eval_tokens": 3000, "max_delay": 10, "positions": 256,
                "segment_length": 30, "rows": 4, "ppl_tokens": 3000}
    return {"embedding_size": 64, "hidden_size": 256, "dropout": 0.5, "epochs": 2, "max_epoch": 1,
            "max_train_tokens": None, "max_eval_tokens": None, "max_delay": 50, "positions": 2000,
            "segment_length": 150, "rows": 8, "ppl_tokens": None}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ over the pairs where ``y`` is not NaN (scipy: tied values share their average rank; NaN for
    fewer than 3 pairs or a constant side, where ρ is undefined)."""
    from scipy.stats import spearmanr

    ok = ~np.isnan(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def run_reproduction(
    out_dir: Path,
    data_root: Path | None = None,
    quick: bool = False,
    corpus: Literal["wikitext2", "ptb"] = "wikitext2",
    seed: int = 0,
    epochs: int | None = None,
    max_delay: int | None = None,
    positions: int | None = None,
    tag_source: TagSource = "auto",
    tag_file: Path | None = None,
    class_file: Path | None = None,
    store_raw: bool = False,
    docs_dir: Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the whole reproduction; write ``results.md``, ``results.json``, PNG plots, the model and the statistics
    into ``out_dir`` (and, with ``docs_dir``, ``<docs_dir>/verwimp2018.md`` + ``<docs_dir>/verwimp2018/*.png``).

    ``quick``: a tiny model and corpus slice (about a minute or less). ``tag_source``: word classes from spaCy
    (``spacy``), a word → tags file (``lexicon``, needs ``tag_file``), none, or ``auto`` (lexicon if a file is given,
    else spaCy when installed, else none). Returns the numbers of the report as a dict.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if docs_dir is not None:  # checked before any work: a folder that cannot be written failed after the analysis
        output_dir(docs_dir, "--docs folder")
    # the word classes' files are read before training too (a missing tag file was refused only after it)
    classes = WordClasses(read_class_file(class_file) if class_file is not None else dict(DEFAULT_CLASSES))
    source = tag_source
    if source == "auto":
        source = "lexicon" if tag_file is not None else ("spacy" if spacy_available() else "none")
    if source not in ("spacy", "lexicon", "none"):
        raise InputError(f"unknown tag_source {tag_source!r}; choose auto, spacy, lexicon or none")
    lexicon: dict[str, list[str]] | None = None
    if source == "lexicon":
        if tag_file is None:
            raise InputError("tag_source='lexicon' needs tag_file (one word per line followed by its tags)")
        known = PTB_TAGS | {t for tags in classes.classes.values() for t in tags}  # a class file's own tag set
        lexicon = read_tag_lexicon(tag_file, known)
    cfg = _settings(quick)
    if epochs is not None:
        cfg["epochs"] = epochs
    if max_delay is not None:
        if max_delay >= cfg["segment_length"]:  # no such delay exists, and each step would hold max_delay + 1 Jacobians
            raise InputError(f"--max-delay {max_delay} reaches past the segments of {cfg['segment_length']} tokens the "
                             "state gradients are computed over (they stop at segment boundaries); give --max-delay "
                             f"<= {cfg['segment_length'] - 1}")
        cfg["max_delay"] = max_delay
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if positions is not None:
        cfg["positions"] = positions
    torch.manual_seed(seed)
    np.random.seed(seed)

    # 1. data and model --------------------------------------------------------------------------------------------
    corp = load_corpus(corpus, data_root, max_train_tokens=cfg["max_train_tokens"],
                       max_eval_tokens=cfg["max_eval_tokens"])
    vocab = Vocab.build(corp.train)
    train_ids, eval_ids = vocab.encode(corp.train), vocab.encode(corp.eval)
    model_cfg = RNNLMConfig(vocab_size=len(vocab), cell="lstm", embedding_size=cfg["embedding_size"],
                            hidden_size=cfg["hidden_size"], num_layers=1, dropout=cfg["dropout"])
    model = RNNLanguageModel(model_cfg)
    tcfg = TrainConfig(epochs=cfg["epochs"], max_epoch=cfg["max_epoch"], seed=seed)
    monitor = eval_ids[:30000]
    t0, c0 = time.perf_counter(), time.process_time()
    result = train_lm(model, train_ids, monitor, tcfg, out_dir=out / "training", vocab=vocab, progress=progress)
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.save(out / "model", vocab)
    write_word2vec(out / "model" / "embeddings.w2v.txt", vocab.itos, model.get_input_embeddings().weight)
    ppl_ids = eval_ids if cfg["ppl_tokens"] is None else eval_ids[: cfg["ppl_tokens"]]
    test_ppl = perplexity(model, ppl_ids, batch_size=10, num_steps=35)

    # 2. word classes of the evaluation tokens ----------------------------------------------------------------------
    tags: list[str | None] | None = None
    if source == "spacy":
        tags = tag_tokens_spacy(corp.eval)
        class_mask: np.ndarray | None = classes.mask_from_tags(tags, corp.eval)
    elif source == "lexicon":
        assert lexicon is not None
        class_mask = classes.mask_from_lexicon(corp.eval, lexicon)
    else:
        class_mask = None
    class_names = classes.names if class_mask is not None else []

    # 3. state gradients, online ------------------------------------------------------------------------------------
    t0, c0 = time.perf_counter(), time.process_time()
    store = GradientStoreWriter(out / "raw_gradients", dtype="float16") if store_raw else None
    chunks = iter_rnn_state_gradients(model, eval_ids, layer=0, state="cell", max_delay=cfg["max_delay"],
                                      segment_length=cfg["segment_length"], batch_size=cfg["rows"],
                                      max_positions=cfg["positions"], progress=progress)
    meta = {"model": "lstm", "state": "cell", "layer": 0, "corpus": corpus, "split": "test",
            "class_of": "input word at t-d", "tag_source": source}
    stats = accumulate(chunks, class_names, class_mask, store=store, meta=meta)
    stats.save(out / "stats")
    grad_seconds, grad_cpu = time.perf_counter() - t0, time.process_time() - c0

    # 4. normalisation and spectra -----------------------------------------------------------------------------------
    counts = Counter(train_ids.tolist())
    weights = torch.tensor([counts.get(i, 0) for i in range(len(vocab))], dtype=torch.float64)
    emb = model.get_input_embeddings().weight.detach()
    norm = EmbeddingNormalizer.fit(emb, weights)
    k = 5
    mean_sum = summarize(stats, norm, k=k, kind="mean")
    rms_sum = summarize(stats, norm, k=k, kind="rms")
    d_max = stats.max_delay
    delays = [d for d in REPORT_DELAYS if d <= d_max]
    all_total = mean_sum.total[0].numpy()
    rho = _spearman(np.arange(1, d_max + 1, dtype=float), all_total[1:])
    rho_rms = _spearman(np.arange(1, d_max + 1, dtype=float), rms_sum.total[0].numpy()[1:])

    # directions between class-mean embeddings (token-frequency weighted over the evaluation text)
    directions: dict[str, dict[str, Any]] = {}
    if tags is not None:
        tag_arr = np.array([t or "" for t in tags])
        eval_np = eval_ids.numpy()

        def tag_mean(tagset: list[str]) -> torch.Tensor | None:
            sel = np.isin(tag_arr, tagset)
            if sel.sum() < 5:
                return None
            return emb[torch.from_numpy(eval_np[sel])].double().mean(0)

        pairs = {"singular→plural noun (NN→NNS)": (["NN"], ["NNS"]),
                 "noun→verb": (DEFAULT_CLASSES["noun"], DEFAULT_CLASSES["verb"]),
                 "present→past verb (VBZ→VBD)": (["VBZ"], ["VBD"])}
        for name, (a, b) in pairs.items():
            ma, mb = tag_mean(a), tag_mean(b)
            if ma is None or mb is None:
                continue
            v = (mb - ma).to(torch.float64)
            directions[name] = {"relative_memory": relative_memory(stats, v, norm)[0],
                                "cosine_top5": subspace_cosine(stats, v, k, norm)[0]}

    # 5. plots ----------------------------------------------------------------------------------------------------
    plots: dict[str, Path] = {}
    plots["top_singular_values"] = plot_top_singular_values(
        mean_sum.top[0], out / "top_singular_values.png",
        f"LSTM cell state ({corpus}): top-{k} singular values, mean normalised G_d")
    per_class = {n: mean_sum.total[i] for i, n in enumerate(stats.class_names)}
    plots["sum_by_class"] = plot_curves(per_class, out / "sum_singular_values_by_class.png",
                                        "Σσ of mean normalised G_d, by class of the word at t-d",
                                        "Σσ (memory)", logy=True)
    per_class_rms = {n: rms_sum.total[i] for i, n in enumerate(stats.class_names)}
    plots["rms_by_class"] = plot_curves(per_class_rms, out / "rms_sum_singular_values_by_class.png",
                                        "Σσ_rms of normalised G_d, by class of the word at t-d", "Σσ_rms",
                                        logy=True)
    if directions:
        plots["relative_memory"] = plot_curves({n: v["relative_memory"] for n, v in directions.items()},
                                               out / "relative_memory.png",
                                               "Relative memory of directions between class means", "r_d(u)")

    # 6. report ---------------------------------------------------------------------------------------------------
    total_seconds = time.perf_counter() - t_start
    summary: dict[str, Any] = {
        "corpus": corpus, "quick": quick, "seed": seed, "vocab_size": len(vocab),
        "train_tokens": len(corp.train), "eval_tokens": len(corp.eval),
        "model": model_cfg.to_dict(), "train_history": result.history, "test_ppl": test_ppl,
        "positions": int(stats.count[0, 0]), "max_delay": d_max, "tag_source": source,
        "class_counts_at_d0": {n: int(stats.count[i, 0]) for i, n in enumerate(stats.class_names)},
        "sum_sv_all": {d: float(all_total[d]) for d in delays},
        "sum_sv_rms_all": {d: float(rms_sum.total[0, d]) for d in delays},
        "spearman_delay_vs_sum_sv": rho, "spearman_delay_vs_sum_rms": rho_rms,
        "decays_with_delay": bool(rho < -0.5 and all_total[d_max] < all_total[1]),
        "seconds": {"train": train_seconds, "state_gradients": grad_seconds, "total": total_seconds},
        "cpu_seconds": {"train": train_cpu, "state_gradients": grad_cpu, "total": time.process_time() - cpu_start},
        "torch_threads": torch.get_num_threads(),
    }
    cmd = command or current_command() or command_line(
        ["seqexplain", "reproduce", "verwimp2018"],
        options={"--out": out_dir, "--data-root": data_root, "--quick": quick, "--corpus": corpus, "--seed": seed,
                 "--epochs": epochs, "--max-delay": max_delay, "--positions": positions, "--tags": tag_source,
                 "--tag-file": tag_file, "--class-file": class_file, "--store-raw": store_raw, "--docs": docs_dir,
                 "--threads": torch.get_num_threads()})
    summary["run"] = run_record(seed, command=cmd)
    md = _report_markdown(summary, mean_sum, rms_sum, directions, delays, plots, cmd, corp.notes)
    atomic_write_text(out / "results.md", md)
    atomic_write_text(out / "results.json", json.dumps(summary, indent=2, default=float))
    if docs_dir is not None:
        _write_docs(Path(docs_dir), md, plots)
    summary["out_dir"] = str(out)
    return summary


def _report_markdown(summary: dict[str, Any], mean_sum: Any, rms_sum: Any, directions: dict[str, dict[str, Any]],
                     delays: list[int], plots: dict[str, Path], cmd: str, notes: list[str]) -> str:
    m = summary["model"]
    lines = [
        "# Reproduction: Verwimp et al. (2018), State Gradients for RNN Memory Analysis",
        "",
        f"Command: `{cmd}`",
        "",
        f"- Corpus: {summary['corpus']} ({'; '.join(notes)}); vocabulary {summary['vocab_size']} words from the "
        f"training text; {summary['train_tokens']} training tokens, {summary['eval_tokens']} evaluation tokens.",
        f"- Model: {m['num_layers']}-layer LSTM, {m['embedding_size']}-d embeddings, {m['hidden_size']} hidden units, "
        f"dropout {m['dropout']} (drop probability; keep probability {1 - m['dropout']:.2g}), full softmax.",
        f"- Training: {len(summary['train_history'])} epochs SGD (TF PTB schedule); test perplexity "
        f"**{summary['test_ppl']:.1f}**.",
        f"- State gradients: cell state of layer 0, delays 0..{summary['max_delay']}, {summary['positions']} "
        f"positions of the test text; class = part of speech of the word at t-d (tags: {summary['tag_source']}).",
        "- Embedding space normalised to equal variance (training-frequency-weighted covariance, G·D).",
        f"- Wall time: training {summary['seconds']['train']:.0f} s, state gradients "
        f"{summary['seconds']['state_gradients']:.0f} s, total {summary['seconds']['total']:.0f} s; CPU time (all "
        f"threads, {summary['torch_threads']} torch threads): training {summary['cpu_seconds']['train']:.0f} s, state "
        f"gradients {summary['cpu_seconds']['state_gradients']:.0f} s, total {summary['cpu_seconds']['total']:.0f} s.",
        "",
        "## Training",
        "",
        "| epoch | lr | train ppl | monitor ppl (first 30k test tokens) | seconds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in summary["train_history"]:
        lines.append(f"| {row['epoch']} | {row['lr']:.3g} | {row['train_ppl']:.1f} | {row['valid_ppl']:.1f} | "
                     f"{row['seconds']:.0f} |")
    lines += [
        "",
        "## Memory decays with delay",
        "",
        f"Spearman correlation between delay (1..{summary['max_delay']}) and the sum of singular values of the mean "
        f"normalised gradient: **{summary['spearman_delay_vs_sum_sv']:.3f}** (RMS spectrum: "
        f"{summary['spearman_delay_vs_sum_rms']:.3f}). Decays with delay: **{summary['decays_with_delay']}**.",
        "",
        "### Mean normalised gradient, top singular values (all classes first)",
        "",
        mean_sum.to_markdown(delays),
        "### RMS singular values of the individual normalised gradients",
        "",
        rms_sum.to_markdown(delays),
    ]
    if directions:
        lines += ["## Directions between class-mean embeddings", "",
                  "Relative memory r_d(u) (1 = like an average direction) and cosine with the top-5 singular subspace.",
                  "", "| direction | " + " | ".join(f"d={d}" for d in delays) + " |",
                  "|---|" + "---:|" * len(delays)]
        for name, v in directions.items():
            lines.append(f"| r: {name} | " + " | ".join(f"{float(v['relative_memory'][d]):.3g}" for d in delays)
                         + " |")
            lines.append(f"| cos: {name} | " + " | ".join(f"{float(v['cosine_top5'][d]):.3g}" for d in delays)
                         + " |")
        lines.append("")
    lines += ["## Plots", ""]
    for name, p in plots.items():
        lines.append(f"![{name}]({Path(p).name})")
    lines.append("")
    return "\n".join(lines)


#: the hand-written part of the docs page: kept from the existing page when ``--docs`` writes it anew
NOTES_HEADING = "\n## Notes\n"


def _write_docs(docs_dir: Path, md: str, plots: dict[str, Path]) -> None:
    """``<docs_dir>/verwimp2018.md`` (the run's report, plots in ``verwimp2018/``), followed by the existing page's
    hand-written part from its ``## Notes`` heading on, which the report does not generate."""
    page = docs_dir / "verwimp2018.md"
    if page.is_file() and NOTES_HEADING in (old := page.read_text(encoding="utf-8")):
        md = md.rstrip("\n") + "\n" + old[old.index(NOTES_HEADING):]
    img_dir = docs_dir / "verwimp2018"
    img_dir.mkdir(parents=True, exist_ok=True)
    for p in plots.values():
        (img_dir / Path(p).name).write_bytes(Path(p).read_bytes())
    for p in plots.values():
        md = md.replace(f"]({Path(p).name})", f"](verwimp2018/{Path(p).name})")
    atomic_write_text(page, md)
