"""The work of one shard: encode its examples, explain them with every method, score the explanations, and
return the store's rows (:data:`seqexplain.runs.store.SCHEMA`).

Determinism: before each method runs on a shard, torch, numpy and ``random`` are seeded with
``seed + first example index of the shard + 1000003·method number``; the random-ranking baseline of example ``i``
uses ``seed + i``. A shard's packs are the same however the run is cut into processes or restarts, so a resumed or
distributed run writes the same rows as an uninterrupted one-process run (on the same threads and device).

Too-long examples (more tokens than ``data.max_length``, or than the model takes): skipped and counted, or with
``data.truncate`` cut at a token boundary with a warning stored in every row of the example (a language model's
prompt loses its oldest tokens, other inputs their end). Plausibility (one gold rationale per example) is computed
on the first explained target's scores; a row with more targets says so in its warnings; an example whose gold
rationale covers no token of the explained input (e.g. cut away by truncation) is not scored for plausibility, with
a warning, rather than scored 0. Faithfulness evaluates the full input's ``log p`` once per example (the random
baseline's first ranking, or the first method's) and passes it to every other ranking of the example
(``full_logprob``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqexplain.attribution import Attribution
from seqexplain.errors import DataError, InputError, UnreadableTextError
from seqexplain.explain import encode_item, explain_pack
from seqexplain.metrics import agreement_matrix, faithfulness, plausibility, random_baseline
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.labels import label_readings
from seqexplain.runs.config import RunConfig
from seqexplain.runs.data import Item

TRUNCATED = "truncated:"


@dataclass
class Encoded:
    item: Item
    example: Example
    gold: list[int] | None  # token positions of the gold rationale


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


#: how the reason of an example skipped because the tokenizer reads nothing in it begins (the others: too long)
UNREADABLE = "unreadable: "


def count_skips(reasons: Iterable[str]) -> tuple[int, int]:
    """``(too long, unreadable)``: how many skipped examples each reason of :func:`encode` accounts for."""
    reasons = list(reasons)
    unreadable = sum(r.startswith(UNREADABLE) for r in reasons)
    return len(reasons) - unreadable, unreadable


def _target(item: Item, labels: list[str] | None, names: list[str]) -> Any:
    """The item's target, mapped through ``data.labels`` (its position there) when given: a value that is not one of
    the labels is a :class:`DataError` naming the line (it fell back to a lookup among the model's label names,
    which a mapping in another order or case makes a different label, silently). Without ``data.labels``, a value
    that reads both as an index and as the name of another of the model's labels ``names`` (a CSV column of
    numerals, a model with labels "1", "2", "3") is a :class:`DataError` too: which one the data means only
    ``data.labels`` can say, and a warning on every row would be easy to miss."""
    if item.target is None:
        return None
    if labels is None:
        values = item.target if isinstance(item.target, (list, tuple)) else [item.target]
        for value in values:
            readings = label_readings(names, value)
            if readings is not None:
                i, j = readings
                raise DataError(f"{item.where}: target {value!r} reads both as the label index {i} ({names[i]!r}) "
                                f"and as the label named {names[j]!r}; set data.labels to the data's label values in "
                                f"the model's label order (the model's labels: {', '.join(names)}) so that each "
                                "value names one label")
        return item.target

    def mapped(value: Any) -> int:
        if str(value) not in labels:
            raise DataError(f"{item.where}: target {value!r} is not one of data.labels {labels}; list every label "
                            "value the data holds, in the model's label order")
        return labels.index(str(value))

    # a token labeller's target is a label per token (or word): each is mapped
    return [mapped(v) for v in item.target] if isinstance(item.target, (list, tuple)) else mapped(item.target)


def _cut(wrapped: SequenceModel, item: Item, example: Example, max_length: int, target: Any) -> tuple[Example, int]:
    """``example`` re-encoded from its text cut at a token boundary so that it has at most ``max_length`` positions,
    and the number of characters cut from the text's start (the re-encoded offsets are relative to the cut text).

    The text loses its end or, where the adapter's ``truncation_side`` is ``"left"`` (a language model's prompt,
    whose targets continue the text), its oldest tokens, as the adapter's own truncation does. ``example``'s own
    truncation warnings (the model's cut to its positions) are kept, so the warnings together count every token cut
    from the text."""
    spans = [off for j, off in enumerate(example.offsets) if off is not None and example.segments[j] == "source"]
    oldest = wrapped.truncation_side == "left"
    keep = len(spans) - (example.length - max_length)
    while keep > 0:
        start = spans[len(spans) - keep][0] if oldest else 0
        text = item.text[start:] if oldest else item.text[:spans[keep - 1][1]]
        cut = encode_item(wrapped, text, target, truncate=True)
        if cut.length <= max_length:
            side = "the oldest" if oldest else "the end"
            note = (f"truncated: {example.length - cut.length} of {example.length} input tokens were cut ({side}) "
                    f"to fit data.max_length={max_length}")
            earlier = [w for w in example.warnings if w.startswith(TRUNCATED) and w not in cut.warnings]
            return cut.replace(warnings=[*cut.warnings, *earlier, note]), start
        keep -= 1
    raise InputError(f"{item.where}: cannot cut the example to {max_length} tokens")


def encode(wrapped: SequenceModel, item: Item, cfg: RunConfig) -> tuple[Encoded | None, str | None]:
    """The encoded example, or ``None`` and the reason it is skipped (too long without ``truncate``; a text with
    nothing the tokenizer reads, ``unreadable: …``)."""
    target = _target(item, cfg.data.labels, wrapped.label_names())
    try:
        example = encode_item(wrapped, item.text, target, truncate=True)
    except UnreadableTextError as exc:  # nothing to explain in it: skipped with the reason, as a too-long example
        return None, f"{UNREADABLE}{exc}"
    except InputError as exc:
        raise InputError(f"{item.where}: {exc}") from None
    limit = cfg.data.max_length
    was_cut = any(w.startswith(TRUNCATED) for w in example.warnings)
    if was_cut and not cfg.data.truncate:
        return None, "longer than the model's maximum length"
    if limit is not None and example.length > limit:
        if not cfg.data.truncate:
            return None, f"{example.length} tokens > data.max_length={limit}"
        example, shift = _cut(wrapped, item, example, limit, target)
    else:
        shift = 0
    gold = None
    if item.spans is not None:
        gold = [j for j, off in enumerate(example.offsets)
                if off is not None and example.segments[j] == "source"
                and any(off[0] < b - shift and a - shift < off[1] for a, b in item.spans)]
    return Encoded(item, example, gold), None


def explain_examples(wrapped: SequenceModel, examples: list[Example], method: str, options: dict[str, Any],
                     pack: int) -> tuple[list[Attribution], float]:
    """Attributions of ``examples`` (``pack`` at a time through :func:`seqexplain.explain.explain_pack`, as
    :func:`seqexplain.explain_many` does) and the seconds taken."""
    start = time.perf_counter()
    attrs: list[Attribution] = []
    for first in range(0, len(examples), pack):
        attrs.extend(explain_pack(wrapped, examples[first:first + pack], method, options))
    return attrs, time.perf_counter() - start


def _matrix(a: np.ndarray | None) -> list[list[float]] | None:
    return None if a is None else [[float(v) for v in row] for row in np.asarray(a, dtype=np.float64)]


def _mean(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _agreements(cfg: RunConfig, attrs: dict[str, Attribution]) -> dict[str, dict[str, dict[str, float]]]:
    """Per method: ``{metric: {other method: value}}``."""
    acfg = cfg.metrics.agreement
    out: dict[str, dict[str, dict[str, float]]] = {k: {} for k in attrs}
    if not acfg.enabled or len(attrs) < 2:
        return out
    keys = list(attrs)
    for metric in acfg.metrics:
        m = agreement_matrix(attrs, metric, k_percent=acfg.k_percent, k=acfg.k)  # type: ignore[arg-type]
        for a, ka in enumerate(keys):
            out[ka][metric] = {kb: float(m[a, b]) for b, kb in enumerate(keys) if b != a}
    return out


def shard_rows(wrapped: SequenceModel, cfg: RunConfig, encoded: list[Encoded], first_index: int
               ) -> list[dict[str, Any]]:
    """The rows of one shard's encoded examples, every method, with their metrics."""
    fcfg, pcfg = cfg.metrics.faithfulness, cfg.metrics.plausibility
    examples = [e.example for e in encoded]
    per_method: dict[str, tuple[list[Attribution], float]] = {}
    for m, mcfg in enumerate(cfg.methods):
        seed_everything(cfg.seed + first_index + 1_000_003 * m)
        per_method[mcfg.key] = explain_examples(wrapped, examples, mcfg.name, dict(mcfg.options),
                                                min(cfg.pack, cfg.shard_size))
    rows: list[dict[str, Any]] = []
    for n, enc in enumerate(encoded):
        ex, item = enc.example, enc.item
        t0 = time.perf_counter()
        base = None
        if fcfg.enabled and fcfg.random_baseline:
            base = random_baseline(wrapped, ex, fcfg.bins, seed=cfg.seed + item.index, repeats=fcfg.random_repeats,
                                   token_budget=fcfg.token_budget, variant=fcfg.variant, removal=fcfg.removal,
                                   replace_with=fcfg.replace_with)
        base_seconds = (time.perf_counter() - t0) / max(1, len(cfg.methods))
        full = None if base is None else base.runs[0].full_logprob  # the full input's log p: once per example
        attrs = {key: got[0][n] for key, got in per_method.items()}
        agree = _agreements(cfg, attrs)
        for mcfg in cfg.methods:
            attr = attrs[mcfg.key]
            t1 = time.perf_counter()
            row = _row(item, mcfg.key, mcfg.name, attr, enc.gold, agree[mcfg.key])
            if fcfg.enabled and fcfg.removal == "drop":  # the metrics drop tokens even where the method did not
                row["warnings"] += [f"faithfulness: {w}" for w in ex.keep_warnings if w not in attr.warnings]
            if fcfg.enabled:
                f = faithfulness(wrapped, ex, attr.scores, fcfg.bins, fcfg.token_budget, variant=fcfg.variant,
                                 removal=fcfg.removal, replace_with=fcfg.replace_with, full_logprob=full)
                full = f.full_logprob
                row.update(comprehensiveness=_matrix(f.comprehensiveness), sufficiency=_matrix(f.sufficiency),
                           aopc_comprehensiveness=_mean(f.aopc_comprehensiveness),
                           aopc_sufficiency=_mean(f.aopc_sufficiency))
            if base is not None:
                row.update(random_comprehensiveness=_matrix(base.comprehensiveness),
                           random_sufficiency=_matrix(base.sufficiency),
                           random_aopc_comprehensiveness=_mean(base.aopc_comprehensiveness),
                           random_aopc_sufficiency=_mean(base.aopc_sufficiency))
            if pcfg.enabled and enc.gold == []:
                row["warnings"] = [*row["warnings"], "plausibility: not scored, the gold rationale covers no token of "
                                   "the (possibly truncated) input"]
            scores = np.asarray(attr.scores, dtype=np.float64).copy()
            scores[:, [j for j, seg in enumerate(ex.segments) if seg == "special"]] = np.nan  # never rationale
            if pcfg.enabled and enc.gold and not np.isfinite(scores[0]).any():
                # no ranking to take a rationale from: scored as an empty rationale it pulled the F1 means to 0
                row["warnings"] = [*row["warnings"], "plausibility: not scored, the first target has no finite score"]
            elif pcfg.enabled and enc.gold:
                mask = np.zeros(ex.length, dtype=bool)
                mask[enc.gold] = True
                p = plausibility(scores[0], mask, k=pcfg.k, threshold=pcfg.threshold,
                                 iou_threshold=pcfg.iou_threshold)
                row.update(auprc=p.auprc, token_precision=p.token.precision, token_recall=p.token.recall,
                           token_f1=p.token.f1, iou_f1=p.iou.f1, predicted_rationale=list(p.rationale))
                if scores.shape[0] > 1:
                    row["warnings"] = [*row["warnings"], f"plausibility: scored on the first of {scores.shape[0]} "
                                       "explained targets only"]
            row["seconds"] = per_method[mcfg.key][1] / len(encoded)
            row["metric_seconds"] = time.perf_counter() - t1 + base_seconds
            rows.append(row)
    return rows


def _row(item: Item, key: str, name: str, attr: Attribution, gold: list[int] | None,
         agree: dict[str, dict[str, float]]) -> dict[str, Any]:
    rat = attr.rationale
    return {
        "index": item.index, "id": item.id, "method": key, "method_name": name,
        "options": json.dumps(attr.options, sort_keys=True, default=str), "text": attr.text,
        "target_text": attr.target_text,
        "target": None if item.target is None else json.dumps(item.target, default=str),
        "tokens": list(attr.tokens), "offsets": [None if o is None else list(o) for o in attr.offsets],
        "segments": list(attr.segments), "target_tokens": list(attr.target_tokens),
        "target_positions": list(attr.target_positions),
        "target_logprobs": [float(v) for v in attr.target_logprobs] if attr.target_logprobs is not None else None,
        "scores": _matrix(attr.scores), "rationale": None if rat is None else [list(p) for p in rat.positions],
        "rationale_reached": None if rat is None else [bool(r) for r in rat.reached],
        "gold_positions": gold, "warnings": list(attr.warnings), "agreement": json.dumps(agree, sort_keys=True),
    }


__all__ = ["Encoded", "encode", "explain_examples", "seed_everything", "shard_rows"]
