"""Reproduction of Vafa, Deng, Blei & Rush (2021), "Rationales for Sequential Predictions" (EMNLP 2021).

Experiments (the paper's others live in sibling modules; all are listed in :mod:`seqexplain.experiments.registry`):

``majority_class``
    The synthetic majority-class language (``<s> b1 … b17 = label </s>``, label = majority bit). The paper's small
    transformer LM (4 layers, d_model 64, FFN 256, 2 heads) is trained *standard* (no word dropout), then made
    *compatible* by fine-tuning a copy with word dropout (``uniform_length``, ``mixture`` 0.5). (The paper also
    trains the compatible model from scratch with mixture 1.0, on a GPU for 20,000 updates of 64,000 tokens; on
    2 CPU cores, training from scratch with word dropout stayed at the label-blind plateau, perplexity 1.866 =
    2^(18/20), after 4,000 steps, while fine-tuning the standard model works within minutes. ``compat_init=
    "scratch"`` runs the from-scratch variant.)
    Measured: test perplexity per predicted token against the optimum ``2 ** (17 / 20) ≈ 1.8025``; compatibility,
    i.e. the model's ``p(label = 1 | kept bits)`` (``<s>`` and ``=`` kept, each bit kept with probability 1/2, as
    in the paper's figure; and for every number of kept bits) against the exact binomial posterior; greedy
    rationales for the label (``seqexplain.explain(..., method="greedy")``) checked against the known answer.

Run: ``seqexplain reproduce vafa2021 majority_class --out runs/vafa2021 --threads 1 --seed 0 [--quick]``. The output
folder
gets ``results.json``, ``majority_class.md`` (the table), ``majority_class_compatibility.png`` and the two
trained models (``standard/model``, ``compatible/model``: safetensors + JSON config, loadable with
:func:`seqexplain.models.transformer.load_transformer_lm`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.data.majority_class import (
    EQUALS_POSITION,
    N_BITS,
    OPTIMAL_PERPLEXITY,
    MajorityClassSplit,
    MajorityClassVocab,
    encode_split,
    label_posterior,
    load_split,
)
from seqexplain.errors import InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.transformer import TransformerLM, TransformerLMConfig
from seqexplain.runs import run_record
from seqexplain.training.causal_lm_data import TokenData
from seqexplain.training.causal_lm_loss import evaluate_lm
from seqexplain.training.compatible import train_causal_lm
from seqexplain.training.compatible_config import TrainConfig, TrainResult
from seqexplain.training.word_dropout import WordDropout


@dataclass
class MajoritySettings:
    """Everything that defines a majority-class run."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    dropout: float
    mixture: float
    n_train: int | None  # None: all 50,000 training sequences
    n_test: int | None  # test sequences for perplexity (None: all 5,000)
    n_compat: int  # sequences for the compatibility scatter (Bernoulli(1/2) kept bits)
    n_curve: int  # sequences per number of kept bits for the compatibility curve
    n_rationales: int  # sequences whose label gets a greedy rationale
    compat_steps: int = 0  # fine-tuning steps of the compatible model (0: same as steps)
    compat_lr: float = 0.0  # its learning rate (0: same as lr)
    compat_init: str = "standard"  # "standard": fine-tune the standard model; "scratch": train from scratch
    n_valid: int = 2000  # validation sequences evaluated during training
    seed: int = 0


def majority_settings(quick: bool) -> MajoritySettings:
    if quick:
        return MajoritySettings(steps=120, batch_size=32, lr=3e-3, warmup_steps=20, dropout=0.0, mixture=0.5,
                                n_train=4000, n_test=500, n_compat=100, n_curve=20, n_rationales=10,
                                compat_steps=60, compat_lr=1e-3, n_valid=300)
    return MajoritySettings(steps=2500, batch_size=64, lr=2e-3, warmup_steps=200, dropout=0.0, mixture=0.5,
                            n_train=None, n_test=None, n_compat=200, n_curve=200, n_rationales=100,
                            compat_steps=2500, compat_lr=1e-3)


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def label_probabilities(model: TransformerLM, split: MajorityClassSplit, keep_bits: torch.Tensor,
                        vocab: MajorityClassVocab | None = None, batch_size: int = 1024) -> torch.Tensor:
    """``p(label = 1)`` read at ``=`` when only the bits in ``keep_bits[N, 17]`` are visible (``<s>`` and ``=``
    kept, original positions kept)."""
    v = vocab or MajorityClassVocab()
    ids = encode_split(split, v)[:, : EQUALS_POSITION + 1]
    n = ids.shape[0]
    keep = torch.cat([torch.ones(n, 1, dtype=torch.bool), keep_bits.bool(), torch.ones(n, 1, dtype=torch.bool)], 1)
    one = v.stoi["1"]
    out = []
    with eval_mode(model):
        for s in range(0, n, batch_size):
            logits = model(input_ids=ids[s : s + batch_size], attention_mask=keep[s : s + batch_size].long()).logits
            out.append(torch.softmax(logits[:, EQUALS_POSITION].float(), -1)[:, one])
    return torch.cat(out)


def true_posteriors(split: MajorityClassSplit, keep_bits: torch.Tensor) -> torch.Tensor:
    ones = (split.bits * keep_bits.long()).sum(1)
    kept = keep_bits.long().sum(1)
    return torch.tensor([label_posterior(int(o), int(k)) for o, k in zip(ones, kept, strict=True)])


def compatibility(model: TransformerLM, split: MajorityClassSplit, n_scatter: int, n_curve: int,
                  seed: int) -> dict[str, Any]:
    """Model vs exact posterior: a scatter (each bit kept with probability 1/2, as in the paper) and the mean
    absolute error for every number of kept bits ``0..17`` (kept bits chosen uniformly)."""
    gen = torch.Generator().manual_seed(seed)
    sub = split.subset(n_scatter)
    keep = torch.rand(len(sub), N_BITS, generator=gen) < 0.5
    model_p = label_probabilities(model, sub, keep)
    true_p = true_posteriors(sub, keep)
    curve = []
    cur = split.subset(n_curve)
    for m in range(N_BITS + 1):
        order = torch.argsort(torch.rand(len(cur), N_BITS, generator=gen), dim=1)
        keep_m = torch.zeros(len(cur), N_BITS, dtype=torch.bool)
        keep_m.scatter_(1, order[:, :m], True)
        err = (label_probabilities(model, cur, keep_m) - true_posteriors(cur, keep_m)).abs()
        curve.append({"kept_bits": m, "mae": float(err.mean())})
    return {"model_probs": model_p.tolist(), "true_probs": true_p.tolist(),
            "mae": float((model_p - true_p).abs().mean()), "max_error": float((model_p - true_p).abs().max()),
            "curve": curve}


def greedy_rationales(model: TransformerLM, split: MajorityClassSplit, n: int) -> dict[str, Any]:
    """Greedy rationales for the label of ``n`` test sequences, checked against the known answer.

    Input positions: 0 ``<s>``, 1..17 the bits, 18 ``=`` (the label is read at ``=``, which greedy includes
    first). For each rationale, with ``n1`` ones among its ``m`` bits, the exact posterior of the label is
    ``label_posterior(n1, m)``: the rationale *decides* the label when that posterior is on the label's side of
    1/2 (its majority-value bits outnumber its minority-value bits by enough); it is a *tie* when it holds no bit
    (the posterior is exactly 1/2 and the model's argmax happened to be the label); *only majority bits* means no
    bit of the minority value was added. The shortest rationale an exactly compatible model can give is ``=``
    plus one majority-value bit (posterior 0.598 > 1/2), or ``=`` alone on a tie.
    """
    from seqexplain import explain, load_model

    vocab = MajorityClassVocab()
    wrapped = load_model(model, vocab, model_id="majority-class-transformer")
    rows = []
    t0 = time.perf_counter()
    for i in range(min(n, len(split))):
        label = int(split.labels[i])
        attr = explain(wrapped, split.prompt(i), str(label), method="greedy")
        rat = list(attr.rationale.positions[0]) if attr.rationale else []
        bit_pos = sorted(j for j in rat if 1 <= j <= N_BITS)
        values = [int(split.bits[i, j - 1]) for j in bit_pos]
        ones = sum(values)
        post = label_posterior(ones, len(values))
        post_label = post if label == 1 else 1.0 - post
        rows.append({
            "index": i, "label": label, "rationale": rat, "size": len(rat), "bits": len(values),
            "majority_bits": sum(1 for b in values if b == label),
            "minority_bits": sum(1 for b in values if b != label),
            "posterior_of_label": post_label, "decided": post_label > 0.5, "tie": len(values) == 0,
            "reached": bool(attr.rationale.reached[0]) if attr.rationale else False,
            "has_equals": EQUALS_POSITION in rat,
        })
    seconds = time.perf_counter() - t0
    k = max(1, len(rows))
    return {
        "n": len(rows),
        "mean_size": sum(r["size"] for r in rows) / k,
        "mean_bits": sum(r["bits"] for r in rows) / k,
        "decided": sum(r["decided"] for r in rows) / k,
        "tie": sum(r["tie"] for r in rows) / k,
        "decided_or_tie": sum(r["decided"] or r["tie"] for r in rows) / k,
        "only_majority_bits": sum(r["minority_bits"] == 0 for r in rows) / k,
        "contradicting": sum(r["posterior_of_label"] < 0.5 for r in rows) / k,
        "reached": sum(r["reached"] for r in rows) / k,
        "has_equals": sum(r["has_equals"] for r in rows) / k,
        "seconds": seconds,
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------ plotting
def plot_compatibility(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """Two scatter panels (standard, compatible: model vs true posterior) and the error curve by kept bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.8))
    for ax, name in zip(axes, names, strict=False):
        c = results[name]["compatibility"]
        ax.scatter(c["model_probs"], c["true_probs"], s=12, alpha=0.7)
        ax.plot([0, 1], [0, 1], "r--", lw=1)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("model p(label = 1 | kept bits)")
        ax.set_ylabel("true posterior")
        ax.set_title(f"{name.capitalize()} training (MAE {c['mae']:.3f})")
    ax = axes[-1]
    for name in names:
        curve = results[name]["compatibility"]["curve"]
        ax.plot([N_BITS - r["kept_bits"] for r in curve], [r["mae"] for r in curve], marker="o", ms=3, label=name)
    ax.set_xlabel("bits dropped (of 17)")
    ax.set_ylabel("mean |model − true posterior|")
    ax.set_title("Compatibility as bits are dropped")
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=130)
    finally:
        plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ recipe
def new_majority_model(settings: MajoritySettings) -> TransformerLM:
    """The paper's small transformer LM for the majority-class vocabulary, initialised with ``settings.seed``."""
    vocab = MajorityClassVocab()
    torch.manual_seed(settings.seed)
    return TransformerLM(TransformerLMConfig(
        vocab_size=len(vocab), d_model=64, n_layers=4, n_heads=2, ffn_dim=256, max_position_embeddings=32,
        dropout=settings.dropout, pad_token_id=vocab.pad_token_id, bos_token_id=vocab.bos_token_id,
        eos_token_id=vocab.eos_token_id))


def train_majority_model(name: str, settings: MajoritySettings, train: TokenData, valid: TokenData | None,
                         out_dir: Path, progress: bool = True,
                         init: TransformerLM | None = None) -> tuple[TransformerLM, TrainResult]:
    """Train (``name="standard"``) or make compatible (``name="compatible"``: word dropout; fine-tuned from a copy
    of ``init`` when given) the paper's small transformer on the majority-class language."""
    import copy

    vocab = MajorityClassVocab()
    s = settings
    model = copy.deepcopy(init) if init is not None else new_majority_model(s)
    compatible = name == "compatible"
    steps = (s.compat_steps or s.steps) if compatible else s.steps
    lr = (s.compat_lr or s.lr) if compatible else s.lr
    warmup = min(s.warmup_steps, max(1, steps // 10))
    wd = WordDropout("uniform_length", s.mixture) if compatible else None
    cfg = TrainConfig(steps=steps, batch_size=s.batch_size, lr=lr, warmup_steps=warmup, schedule="cosine",
                      word_dropout=wd, seed=s.seed + (1 if compatible else 0), log_every=max(1, steps // 20),
                      eval_every=max(1, steps // 5), checkpoint_every=max(1, steps // 5),
                      lr_zero_at_last_step=True)  # the schedule the recorded results were trained with
    result = train_causal_lm(model, train, cfg, out_dir / name, valid=valid, progress=progress)
    vocab.save(out_dir / name / "model" / "vocab.json")
    return model, result


def run_majority_class(out_dir: Path, quick: bool = False, data_root: Path | None = None,
                       settings: MajoritySettings | None = None, progress: bool = True,
                       seed: int | None = None) -> dict[str, Any]:
    """The majority-class experiment (module docstring); returns the summary also written to ``results.json``.
    ``seed`` (default: the settings', 0) replaces ``settings.seed``."""
    s = settings or majority_settings(quick)
    if seed is not None:
        s = replace(s, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    vocab = MajorityClassVocab()
    train_split = load_split("train", data_root)
    if s.n_train is not None:
        train_split = train_split.subset(s.n_train)
    valid_split = load_split("valid", data_root).subset(s.n_valid)
    test_split = load_split("test", data_root)
    ppl_split = test_split.subset(s.n_test) if s.n_test is not None else test_split
    train = TokenData.from_tensor(encode_split(train_split, vocab))
    valid = TokenData.from_tensor(encode_split(valid_split, vocab))
    test = TokenData.from_tensor(encode_split(ppl_split, vocab))
    if s.compat_init not in ("standard", "scratch"):
        raise InputError(f"compat_init must be 'standard' or 'scratch', got {s.compat_init!r}")
    results: dict[str, dict[str, Any]] = {}
    standard: TransformerLM | None = None
    for name in ("standard", "compatible"):
        init = standard if (name == "compatible" and s.compat_init == "standard") else None
        model, tr = train_majority_model(name, s, train, valid, out_dir, progress, init=init)
        if name == "standard":
            standard = model
        ev = evaluate_lm(model, test)
        full_p = label_probabilities(model, ppl_split, torch.ones(len(ppl_split), N_BITS, dtype=torch.bool))
        acc = float(((full_p > 0.5).long() == ppl_split.labels).double().mean())
        results[name] = {
            "test_ppl": ev["ppl"], "test_loss": ev["loss"], "test_tokens": ev["tokens"],
            "gap_to_optimum": ev["ppl"] / OPTIMAL_PERPLEXITY - 1.0, "label_accuracy": acc,
            "train_seconds": tr.seconds, "train_cpu_seconds": tr.cpu_seconds, "train_history": tr.history,
            "compatibility": compatibility(model, test_split, s.n_compat, s.n_curve, s.seed + 1),
            "greedy": greedy_rationales(model, test_split, s.n_rationales),
        }
    plot = plot_compatibility(results, out_dir / "majority_class_compatibility.png")
    summary: dict[str, Any] = {
        "experiment": "majority_class", "quick": quick, "settings": asdict(s),
        "optimal_ppl": OPTIMAL_PERPLEXITY, "results": results, "plot": plot.name,
        "seconds": time.perf_counter() - t_start, "torch_threads": torch.get_num_threads(),
        "run": run_record(s.seed),
    }
    md = majority_markdown(summary)
    atomic_write_text(out_dir / "majority_class.md", md)
    atomic_write_text(out_dir / "results.json", json.dumps(summary, indent=2))
    summary["markdown"] = md
    return summary


def majority_markdown(summary: dict[str, Any]) -> str:
    """The results table (like the paper's) plus the compatibility curve, as markdown."""
    from seqexplain.report.markdown import markdown_table

    res = summary["results"]
    rows = []
    for name, r in res.items():
        g, c = r["greedy"], r["compatibility"]
        rows.append({
            "training": name, "test ppl": f"{r['test_ppl']:.4f}", "optimum": f"{summary['optimal_ppl']:.4f}",
            "gap": f"{100 * r['gap_to_optimum']:+.2f}%", "label acc.": f"{100 * r['label_accuracy']:.1f}%",
            "compat. MAE": f"{c['mae']:.3f}", "greedy size": f"{g['mean_size']:.2f}",
            "decided": f"{100 * g['decided']:.0f}%", "decided or tie": f"{100 * g['decided_or_tie']:.0f}%",
            "only majority bits": f"{100 * g['only_majority_bits']:.0f}%",
            "train s (wall / CPU)": f"{r['train_seconds']:.0f} / {r['train_cpu_seconds']:.0f}",
        })
    curve_rows = []
    names = list(res)
    for m in range(N_BITS + 1):
        row: dict[str, Any] = {"bits dropped": N_BITS - m}
        for name in names:
            row[f"MAE {name}"] = f"{res[name]['compatibility']['curve'][m]['mae']:.3f}"
        curve_rows.append(row)
    s = summary["settings"]
    lines = [
        "## Majority class (Vafa et al. 2021)" + (" — --quick smoke run, not the documented one" if summary["quick"]
                                                  else ""), "",
        f"Transformer LM 4 layers, d_model 64, FFN 256, 2 heads; standard: {s['steps']} steps of {s['batch_size']} "
        f"sequences, AdamW lr {s['lr']} (warm-up, cosine), dropout {s['dropout']}, seed {s['seed']}; compatible: "
        f"{'the standard model fine-tuned' if s['compat_init'] == 'standard' else 'trained from scratch'} "
        f"{s['compat_steps'] or s['steps']} steps (lr {s['compat_lr'] or s['lr']}) with word dropout uniform_length, "
        f"mixture {s['mixture']}. Perplexity per predicted token over the 20 predicted tokens of each test "
        "sequence; optimum 2^(17/20).", "",
        markdown_table(rows),
        "compat. MAE: mean |p_model(label=1 | kept bits) − exact binomial posterior| with `<s>` and `=` kept and "
        f"each bit kept with probability 1/2 ({s['n_compat']} test sequences). Greedy: rationales of the label for "
        f"{s['n_rationales']} test sequences; *decided*: the exact posterior given the rationale's bits favours the "
        "label; *tie*: no bit in the rationale (posterior exactly 1/2); *only majority bits*: no minority-value bit "
        "added.", "",
        "### Compatibility as bits are dropped", "",
        markdown_table(curve_rows),
        f"![compatibility]({summary['plot']})", "",
    ]
    return "\n".join(lines)
