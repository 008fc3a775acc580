"""Reproduction of Snell, Zhong, Klein & Steinhardt (2021), "Approximating How Single Head Attention Learns"
(arXiv 2103.07601), for attention classifiers: ``seqexplain reproduce snell2021 <sst2|agnews>``.

Pipeline (every step resumable: finished runs, dumps and baselines are reused on a rerun in the same folder, which
``settings.json`` claims for one experiment, seed, settings and data: :func:`claim_run`):

1. Data: SST-2 (train / dev from the SST trees, words lower-cased) or AG News (``../shared/data/ag_news``, the
   test split is all there is: split 80/10/10 by file position, :mod:`seqexplain.data.ag_news`). One vocabulary
   from the training split (words seen ≥ ``min_count`` times), texts read as ``<bos> words <eos>``.
2. Runs (:mod:`seqexplain.training.snell`): ``n_runs`` normal BiLSTM attention classifiers ``A, B, …`` (seeds
   ``seed, seed+1, …``) and one uniform-attention run (seed ``seed+100``), all on one checkpoint schedule.
3. Dumps (:mod:`seqexplain.analysis.training_dynamics`) at every checkpoint on two splits: ``val`` (the validation
   set, or ``max_eval`` of its examples drawn with ``seed`` — the SST files are sorted by label, so a prefix would
   not do) and ``train`` (as many training examples drawn with ``seed``), each kept in file order.
4. Baselines (:mod:`seqexplain.analysis.snell_baselines`): β^px of a bag-of-embeddings model (best validation-loss
   epoch) and logistic-regression β (C on validation accuracy).
5. The table (:func:`seqexplain.metrics.training_dynamics.dynamics_table`) per split and metric (top-5% match and
   Kendall τ), gold run A, comparison runs B…, performance = accuracy on that split; plus A(β^uf, β^lr) and ξ_lr for
   the logistic-regression β; plots of agreement and accuracy over checkpoints for every run. Each row records
   ``n_examples`` and ``undefined`` (examples left out of a mean because the metric is NaN there); rows with any
   get a warning on the console and in ``results.md`` / the ``markdown`` field.

Outputs in ``out``: ``runs/<name>/`` (checkpoints, TensorBoard), ``dumps/*.parquet``, ``baselines.parquet``,
``results.json`` (settings, run record, table), ``results.md``, ``plots/*.png``, and ``model/``: run A at its
best validation checkpoint as a model folder (:mod:`seqexplain.models.snell_saving`), so
``seqexplain explain --model <out>/model --text ...`` explains it with every method.

``device`` (``cpu`` by default, ``cuda``, ``cuda:N`` or ``auto``) is where training, dumps, the bag-of-embeddings
baseline and evaluation run; the files written do not depend on it (a folder made on a GPU can be continued on a
CPU). Settings record the device resolved (``auto`` → ``cuda`` or ``cpu``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqexplain.analysis.plots import plot_curves
from seqexplain.analysis.snell_baselines import fit_logistic, logistic_scores, px_scores, train_bag_of_embeddings
from seqexplain.analysis.training_dynamics import Dump, make_dump, read_dump, read_dumps, write_dump
from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import DataError, InputError
from seqexplain.metrics.training_dynamics import (
    DynamicsRow,
    RunCurves,
    dynamics_table,
    format_table,
    metric_by_name,
    undefined_warning,
)
from seqexplain.models.rnn.vocab import Vocab
from seqexplain.models.snell_classifier import BosEosTokenizer, SnellClassifierConfig
from seqexplain.models.snell_saving import save_snell_classifier
from seqexplain.runs import run_record
from seqexplain.runs.claims import DATA_KEY, claim_folder, data_fingerprint
from seqexplain.training.snell import (
    SnellTrainConfig,
    checkpoint_path,
    checkpoint_schedule,
    load_checkpoint,
    resolve_device,
    train_snell_classifier,
    vocab_hash,
)

EXPERIMENTS = {
    "sst2": "SST-2 (binary sentiment from the SST trees): BiLSTM attention classifiers, uniform run, A/ξ table",
    "agnews": "AG News (4 topics; the stored test split split 80/10/10): the same pipeline, multi-class β",
    "multi30k": "Multi30k de→en: LSTM encoder-decoders with attention, uniform run, per-target-row table, BLEU",
}
Examples = list[tuple[list[int], int]]


@dataclass
class Settings:
    """Sizes of one reproduction (``--quick`` and the full CPU default; options override single fields)."""

    n_runs: int = 4
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    emb_dim: int = 64
    hidden: int = 64
    attn_dim: int = 64
    checkpoint_every: int = 100
    checkpoint_steps: tuple[int, ...] = (10, 25, 50, 75)
    max_eval: int = 872
    min_count: int = 1
    boe_epochs: int = 10
    vocab_size: int = 8000
    n_train: int | None = None
    layers: int = 2
    dropout: float = 0.1
    beam: int = 5
    device: str = "cpu"


QUICK = {"n_runs": 2, "steps": 60, "emb_dim": 16, "hidden": 16, "attn_dim": 16, "checkpoint_every": 20,
         "checkpoint_steps": (5, 10), "max_eval": 100, "min_count": 2, "boe_epochs": 2}
TRANSLATION = {"n_runs": 3, "steps": 1500, "batch_size": 32, "emb_dim": 128, "hidden": 128, "checkpoint_every": 250,
               "checkpoint_steps": (25, 50, 100, 150), "max_eval": 200, "boe_epochs": 5, "vocab_size": 8000}
TRANSLATION_QUICK = {**QUICK, "steps": 40, "checkpoint_steps": (10,), "max_eval": 20, "vocab_size": 500,
                     "n_train": 2000, "beam": 2, "boe_epochs": 1}


def settings(quick: bool, experiment: str = "sst2", **overrides: Any) -> Settings:
    if experiment == "multi30k":
        base = Settings(**(TRANSLATION_QUICK if quick else TRANSLATION))  # type: ignore[arg-type]
    else:
        base = Settings(**QUICK) if quick else Settings()  # type: ignore[arg-type]
    known = {f.name for f in fields(Settings)}
    unknown = set(overrides) - known
    if unknown:
        raise InputError(f"unknown snell2021 options {sorted(unknown)}; known: {sorted(known)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    out = replace(base, **given)
    if "checkpoint_steps" not in given:  # the defaults follow --steps; explicit steps beyond it are an error
        out = replace(out, checkpoint_steps=tuple(c for c in base.checkpoint_steps if c <= out.steps))
    if out.n_runs < 2:
        raise InputError(f"the table needs a gold run and at least one more normal run: --runs ≥ 2, got {out.n_runs}")
    checkpoint_schedule(out.steps, out.checkpoint_steps, out.checkpoint_every)
    return replace(out, device=str(resolve_device(out.device)))


def label_names(experiment: str) -> tuple[str, ...]:
    """The class names of a classification experiment."""
    if experiment == "agnews":
        from seqexplain.data.ag_news import LABELS

        return LABELS
    from seqexplain.data.sst import BINARY_LABELS

    return BINARY_LABELS


def best_step(table: dict[str, Any], experiment: str, measure: str = "accuracy") -> int:
    """Gold run A's checkpoint of best validation ``measure`` (the earliest of ties), as :func:`tables` found it."""
    return int(table[f"{experiment} / val / top_k / {measure}"]["best_step"])


def load_data(experiment: str, data_root: Path | str | None) -> tuple[list[tuple[list[str], int]],
                                                                         list[tuple[list[str], int]], int]:
    """``(train, val, n_classes)`` as (lower-cased words, label) pairs."""
    if experiment == "sst2":
        from seqexplain.data.sst import read_sst

        def words(split: str) -> list[tuple[list[str], int]]:
            return [([w.lower() for w in s.words], s.label) for s in read_sst(split, binary=True, root=data_root)]

        return words("train"), words("dev"), 2
    if experiment == "agnews":
        from seqexplain.data.ag_news import LABELS, read_ag_news, split_ag_news

        items = read_ag_news(data_root)
        return ([(list(x.words), x.label) for x in split_ag_news(items, "train")],
                [(list(x.words), x.label) for x in split_ag_news(items, "val")], len(LABELS))
    raise InputError(f"unknown snell2021 experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")


def run_names(s: Settings) -> list[str]:
    return [f"normal_{chr(ord('A') + i)}" for i in range(s.n_runs)] + ["uniform"]


def claim_run(out: Path, experiment: str, s: Settings, seed: int, data: Any) -> list[str]:
    """Record the experiment, settings (but the device), seed and the sha256 of ``data`` (the training and
    validation items as loaded: :func:`~seqexplain.runs.claims.data_fingerprint`) in ``out/settings.json``, or, when
    the folder holds another run's, raise :class:`InputError`: its finished runs, dumps and baselines would be reused
    silently (a run whose last checkpoint exists is not retrained) under the new settings' or data's name. A folder
    claimed before the data were recorded takes them now; the returned warning says so (stored with the results)."""
    return claim_folder(out / "settings.json", {"experiment": experiment, "seed": seed,
                                                "settings": {k: v for k, v in asdict(s).items() if k != "device"},
                                                DATA_KEY: data_fingerprint(data)},
                        "a snell2021 run", of="settings or data")


def with_warnings(markdown: str, notes: list[str]) -> str:
    """``markdown`` with one ``**warning:**`` paragraph per note."""
    return markdown + "".join(f"\n\n**warning:** {n}" for n in notes)


def run(experiment: str, out: Path | str, *, quick: bool = False, data_root: Path | str | None = None,
        seed: int = 0, progress: bool = True, **options: Any) -> dict[str, Any]:
    """The whole pipeline (module docstring); returns the results (also written to ``out``)."""
    if experiment not in EXPERIMENTS:
        raise InputError(f"unknown snell2021 experiment {experiment!r}; choose one of {', '.join(sorted(EXPERIMENTS))}")
    s = settings(quick, experiment, **options)
    out = Path(out)
    if experiment == "multi30k":
        from seqexplain.experiments.snell2021_translation import run_translation

        return run_translation(s, out, data_root=data_root, seed=seed, progress=progress, quick=quick)
    train_w, val_w, n_classes = load_data(experiment, data_root)
    notes = claim_run(out, experiment, s, seed, [train_w, val_w])
    vocab = Vocab.build([w for ws, _ in train_w for w in ws], min_count=s.min_count)
    tok = BosEosTokenizer(vocab)
    train: Examples = [(tok.encode_words(ws), y) for ws, y in train_w]
    val_all: Examples = [(tok.encode_words(ws), y) for ws, y in val_w]
    rng = np.random.default_rng(seed)
    val = [val_all[int(i)] for i in sorted(rng.choice(len(val_all), min(s.max_eval, len(val_all)), replace=False))]
    pick = rng.choice(len(train), size=min(len(val), len(train)), replace=False)
    evals = {"val": val, "train": [train[int(i)] for i in sorted(pick)]}
    model_cfg = SnellClassifierConfig(len(vocab), n_classes, s.emb_dim, s.hidden, s.attn_dim)
    names = run_names(s)
    schedule = checkpoint_schedule(s.steps, s.checkpoint_steps, s.checkpoint_every)
    vh = vocab_hash(vocab)
    for i, name in enumerate(names):
        uniform = name == "uniform"
        run_dir = out / "runs" / name
        run_seed = seed + (100 if uniform else i)
        cfg = SnellTrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, seed=run_seed,
                               checkpoint_steps=list(s.checkpoint_steps), checkpoint_every=s.checkpoint_every)
        if not checkpoint_path(run_dir, s.steps).is_file():
            train_snell_classifier(replace(model_cfg, uniform_attention=uniform), train, cfg, run_dir, vocab,
                                   progress=progress, device=s.device)
        for step in schedule:
            model = None
            for split, data in evals.items():
                path = out / "dumps" / f"{name}__{split}__step{step:07d}.parquet"
                if path.is_file():
                    continue
                model = model or load_checkpoint(run_dir, step, s.device)
                write_dump(make_dump(model, data, run=name, step=step, split=split, dataset=experiment,
                                     vocab_hash=vh), out / "dumps")
    baselines = _baselines(out, train, evals, len(vocab), n_classes, s, seed)
    results: dict[str, Any] = {"experiment": experiment, "settings": asdict(s), "schedule": schedule,
                               "vocab_size": len(vocab), "n_train": len(train),
                               "n_eval": {k: len(v) for k, v in evals.items()}, "baselines": baselines["info"],
                               "table": {}}
    refs = {split: {"px": baselines[split]["px"], "extra": {"lr": baselines[split]["lr"]}} for split in evals}
    results["table"], results["markdown"], table_notes = tables(out, experiment, list(evals), names, schedule, refs,
                                                                seed)
    notes += table_notes
    results["markdown"], results["warnings"] = with_warnings(results["markdown"], notes), notes
    best = best_step(results["table"], experiment)
    save_snell_classifier(load_checkpoint(out / "runs" / names[0], best), vocab, out / "model", label_names(experiment))
    results["model"] = {"folder": "model", "run": names[0], "step": best}
    results["run"] = run_record(seed, quick=quick, n_classes=n_classes)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float))
    atomic_write_text(out / "results.md", f"{results_heading(experiment, quick)}\n\n{results['markdown']}\n")
    return results


def results_heading(experiment: str, quick: bool) -> str:
    """The first line of ``results.md``: a ``--quick`` smoke run says so, so its table is not taken for the full one."""
    return f"# snell2021 {experiment}" + (" (--quick: smoke-test sizes, not the documented run)" if quick else "")


def tables(out: Path, experiment: str, splits: list[str], names: list[str], schedule: list[int],
           refs: dict[str, dict[str, Any]], seed: int, measure: str = "accuracy"
           ) -> tuple[dict[str, Any], str, list[str]]:
    """The A/ξ rows of every split and metric from the dumps in ``out/dumps`` (``refs[split]``: ``"px"`` the β^px
    vectors, ``"extra"`` more reference β's), the plots, the Markdown tables, and the warnings about them (for the
    results' ``warnings`` and the tables' warning paragraphs)."""
    rows: dict[str, DynamicsRow] = {}
    for split in splits:
        curves = _curves(read_dumps(out / "dumps", split), names)
        for metric in ("top_k", "kendall_tau"):
            key = f"{experiment} / {split} / {metric} / {measure}"
            rows[key] = dynamics_table(curves[names[0]], [curves[n] for n in names[1:-1]], curves["uniform"],
                                       refs[split]["px"], metric_by_name(metric), seed, extra=refs[split]["extra"],
                                       label=key)
            if metric == "top_k":
                own = {n: curves[n].perf for n in (names[0], "uniform")}
                _plots(out / "plots", f"{experiment}_{split}", rows[key], names, schedule, measure, own)
    # dynamics_table has warned on the console; the saved results say it too (the caller adds these notes)
    notes = [msg for key, row in rows.items() if (msg := undefined_warning(row, key))]
    late = sorted({k.split(" / ")[1] for k, r in rows.items() if r.best_step == schedule[-1]})
    if late:
        notes.append(f"run {names[0]}'s best {measure} on {', '.join(late)} is at its last checkpoint "
                     f"({schedule[-1]} updates): it was still improving, so the gold attention and the ξ's may change "
                     "with longer training (--steps)")
        warnings.warn(notes[-1], stacklevel=2)
    return {k: r.as_dict() for k, r in rows.items()}, _markdown(rows), notes


def _curves(dumps: list[Dump], names: list[str]) -> dict[str, RunCurves]:
    by_run: dict[str, list[Dump]] = {}
    for d in dumps:
        by_run.setdefault(d.run, []).append(d)
    missing = [n for n in names if n not in by_run]
    if missing:
        raise DataError(f"no dumps of runs {missing}; rerun the reproduction in the same folder to make them")
    out = {}
    for name in names:
        ds = sorted(by_run[name], key=lambda d: d.step)
        out[name] = RunCurves([d.step for d in ds], [d.alpha for d in ds], [d.beta for d in ds],
                              [d.delta for d in ds], [d.accuracy for d in ds])
    return out


def _baselines(out: Path, train: Examples, evals: dict[str, Examples], vocab_size: int, n_classes: int,
               s: Settings, seed: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = out / "baselines.parquet"
    info_path = out / "baselines.json"
    if not (path.is_file() and info_path.is_file()):
        val = evals["val"]
        boe, boe_info = train_bag_of_embeddings(train, val, vocab_size, n_classes, emb_dim=s.emb_dim,
                                                epochs=s.boe_epochs, seed=seed, device=s.device)
        cols: dict[str, list[Any]] = {"split": [], "example": [], "beta_px": [], "beta_lr": []}
        weights, lr_info = fit_logistic(train, val, vocab_size, seed=seed)
        for split, data in evals.items():
            lr_scores = logistic_scores(weights, data)
            cols["split"] += [split] * len(data)
            cols["example"] += list(range(len(data)))
            cols["beta_px"] += [a.tolist() for a in px_scores(boe, data)]
            cols["beta_lr"] += [a.tolist() for a in lr_scores]
        table = pa.table({"split": pa.array(cols["split"]), "example": pa.array(cols["example"], pa.int32()),
                          "beta_px": pa.array(cols["beta_px"], pa.list_(pa.float32())),
                          "beta_lr": pa.array(cols["beta_lr"], pa.list_(pa.float32()))})
        with atomic_path(path) as tmp:
            pq.write_table(table, str(tmp))
        atomic_write_text(info_path, json.dumps({"bag_of_embeddings": boe_info, "logistic_regression": lr_info}))
    got = pq.read_table(str(path)).to_pydict()
    res: dict[str, Any] = {"info": json.loads(info_path.read_text(encoding="utf-8"))}
    for split in evals:
        idx = [i for i, sp in enumerate(got["split"]) if sp == split]
        res[split] = {"px": [np.asarray(got["beta_px"][i], np.float32) for i in idx],
                      "lr": [np.asarray(got["beta_lr"][i], np.float32) for i in idx]}
    return res


def _plots(folder: Path, stem: str, row: DynamicsRow, names: list[str], steps: list[int], measure: str,
           own: dict[str, list[float]]) -> None:
    """Agreement of each comparison run's attention with run A's best (with the A thresholds as lines) and the
    performance of every run (gold, comparison and uniform) over the checkpoints."""
    agreement = {n: c for n, c in zip(names[1:-1], row.agreement_by_run, strict=True)}
    agreement["A(α,β^uf)"] = [row.agr_unif] * len(steps)
    agreement["A(β^uf,β^px)"] = [row.agr_px] * len(steps)
    agreement["A(Δ,β^uf)"] = [row.agr_grad] * len(steps)
    plot_curves(agreement, folder / f"{stem}_agreement.png", f"{stem}: agreement with run A's best attention",
                "top-5% match", xlabel="checkpoint (updates)", x=steps)
    perf = {names[0]: own[names[0]], **dict(zip(names[1:-1], row.perf_by_run, strict=True)), "uniform": own["uniform"]}
    plot_curves(perf, folder / f"{stem}_{measure}.png", f"{stem}: {measure} of every run", measure,
                xlabel="checkpoint (updates)", x=steps)


def _markdown(rows: dict[str, DynamicsRow]) -> str:
    lines = [format_table(rows)]
    names = sorted({name for r in rows.values() for name in r.extra})
    for name in names:
        lines += ["", f"| setting | A(β^uf,β^{name}) | ξ_{name} |", "|---|---:|---:|"]
        for key, r in rows.items():
            agr, xi = r.extra[name]["agr"], r.extra[name]["xi"]
            lines.append(f"| {key} | {agr:.3f} | {'none' if xi is None else f'{xi:.3f}'} |")
    return "\n".join(lines)


__all__ = ["EXPERIMENTS", "Settings", "load_data", "read_dump", "run", "settings"]
