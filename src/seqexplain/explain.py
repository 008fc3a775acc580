"""``explain`` and ``explain_many``: inputs in, :class:`Attribution` out, for any wrapped model and registered
method."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from seqexplain.attribution import Attribution
from seqexplain.attribution_rationale import Rationale
from seqexplain.errors import DataError, InputError, NonFiniteScoresError, SeqExplainError, UnsupportedError
from seqexplain.methods.registry import MethodResult, get_method
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import Example
from seqexplain.models.loading import load_model
from seqexplain.models.module_state import first_parameter
from seqexplain.progress import progress_bar


def explain(
    model: Any,
    text: Any,
    target: str | int | None = None,
    method: str = "integrated_gradients",
    *,
    tokenizer: Any = None,
    objective: str = "logprob",
    foil: Any = None,
    groups: Mapping[str, list[list[int]]] | None = None,
    max_new_tokens: int = 10,
    truncate: bool = False,
    strict: bool = False,
    progress: bool = False,
    **options: Any,
) -> Attribution:
    """Explain the model's prediction of ``target`` from ``text`` with ``method``.

    ``text`` is the prompt (causal LM), the source (encoder-decoder) or the input (classifier); ``target`` is the
    continuation / target text / label (index or name), or ``None`` for the model's own prediction (greedy,
    up to ``max_new_tokens``; the argmax label). ``options`` go to the method (see ``seqexplain methods``).
    ``objective`` is the explained function: ``"logprob"`` (``log p(target_i | context)``, default), ``"prob"``,
    ``"logit"`` or ``"contrast"`` (``log p(target_i) − log p(foil_i)``; ``foil`` a text with one token per target,
    or a list of tokens / ids, or a label for a classifier). ``groups`` names groups of input positions
    (``{name: [[position, ...], ...]}``, checked against the input) that :meth:`Attribution.aggregate` can sum,
    average or max over (``by=name``). ``scores[i, j]`` is NaN where input ``j`` cannot
    influence target ``i``. Non-finite scores at visible cells are recorded in ``meta["nonfinite_cells"]`` and
    warned about, or raise :class:`NonFiniteScoresError` with ``strict=True``. ``progress=True`` shows a progress
    bar (counts, rate, ETA) over the method's forwards on stderr.
    """
    wrapped = model if isinstance(model, SequenceModel) else load_model(model, tokenizer)
    get_method(method).check_options(options)  # before encoding, which may generate
    example = encode_item(wrapped, text, target, objective=objective, foil=foil, groups=groups,
                          max_new_tokens=max_new_tokens, truncate=truncate)
    with progress_bar(f"{method} ({example.n_targets} target(s), {example.length} positions)", enabled=progress):
        return explain_example(wrapped, example, method, strict=strict, **options)


def encode_item(wrapped: SequenceModel, text: Any, target: Any = None, *, objective: str = "logprob",
                foil: Any = None, groups: Mapping[str, list[list[int]]] | None = None, **encode_options: Any
                ) -> Example:
    """Encode one input with its objective and named groups of positions (checked against the input)."""
    return finish_item(wrapped, wrapped.encode(text, target, **encode_options), objective, foil, groups)


def finish_item(wrapped: SequenceModel, example: Example, objective: str = "logprob", foil: Any = None,
                groups: Mapping[str, list[list[int]]] | None = None) -> Example:
    """An encoded input with its objective (and foil) and its named groups of positions."""
    if objective != "logprob" or foil is not None:
        example = wrapped.with_objective(example, objective, foil)
    if groups:
        example = example.replace(groups={**example.groups, **check_groups(groups, example.length)})
    return example


def check_groups(groups: Mapping[str, Any], length: int) -> dict[str, list[list[int]]]:
    """Named groups of positions, each group a non-empty list of positions in ``0..length-1``, groups of one
    grouping disjoint; :class:`InputError` naming the problem otherwise."""
    if not isinstance(groups, Mapping):
        raise InputError(f"groups must be a mapping of names to groupings (e.g. {{'words': [[0, 1], [2]]}}), not "
                         f"{type(groups).__name__}")
    out: dict[str, list[list[int]]] = {}
    for name, grouping in groups.items():
        if not isinstance(grouping, (list, tuple)):
            raise InputError(f"grouping {name!r} must be a list of groups (lists of positions)")
        seen: dict[int, int] = {}
        clean: list[list[int]] = []
        for g, members in enumerate(grouping):
            if not isinstance(members, (list, tuple)) or not members:
                raise InputError(f"group {g} of {name!r} is empty or not a list of positions")
            for j in members:
                if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)) or not 0 <= j < length:
                    raise InputError(f"group {g} of {name!r} holds position {j!r}, outside the input's positions "
                                     f"0..{length - 1}")
                if j in seen:
                    raise InputError(f"groups {seen[j]} and {g} of {name!r} overlap at position {j}; a grouping's "
                                     "groups must be disjoint")
                seen[int(j)] = g
            clean.append([int(j) for j in members])
        out[str(name)] = clean
    return out


def explain_example(wrapped: SequenceModel, example: Example, method: str, *, strict: bool = False,
                    **options: Any) -> Attribution:
    """:func:`explain` for an already encoded :class:`Example` (its precomputed vectors, when set, checked first)."""
    spec = get_method(method)
    spec.check_options(options)
    wrapped.check_vectors(example)
    return to_attribution(wrapped, example, method, spec.fn(wrapped, example, **options), options, strict)


def to_attribution(wrapped: SequenceModel, example: Example, method: str, result: MethodResult,
                   options: dict[str, Any], strict: bool = False) -> Attribution:
    """The :class:`Attribution` of a method's result on ``example``."""
    spec = get_method(method)
    visible = example.visible().cpu().numpy()
    scores = np.asarray(result.scores, dtype=np.float64).copy()
    bad = visible & ~np.isfinite(scores)
    scores[~visible] = np.nan
    logprobs = result.target_logprobs
    if logprobs is None:
        with torch.no_grad():
            logprobs = wrapped.predictions(example)[1][0].double().cpu().tolist()
    meta = {**precision_meta(wrapped), **result.meta}
    if "token_budget" in spec.defaults() and options.get("token_budget") is None:
        meta["token_budget_used"] = wrapped.default_token_budget()  # options keep None: "the device's default"
    attr = Attribution(
        tokens=list(example.tokens),
        scores=scores,
        target_tokens=list(example.target_tokens),
        target_positions=list(example.target_positions),
        offsets=list(example.offsets),
        segments=list(example.segments),
        method=method,
        options={**spec.defaults(), **options},
        model_id=wrapped.model_id,
        model_kind=wrapped.kind,
        text=example.text,
        target_text=example.target_text,
        target_logprobs=logprobs,
        rationale=Rationale.from_method(result.rationales, result.rationale_log, result.meta, example.n_targets),
        objective=example.objective,
        foil_tokens=None if example.foil_tokens is None else list(example.foil_tokens),
        groups={k: [list(g) for g in v] for k, v in example.groups.items()},
        warnings=[*wrapped.model_warnings, *example.warnings,
                  *(example.keep_warnings if spec.drops(options) else [])],
        meta=meta,
    )
    attr.warnings.extend(result.warnings)
    if spec.ignores_objective and example.objective != "logprob":
        attr.warnings.append(f"{method}: {spec.ignores_objective}: this result is the same for "
                             f"objective={example.objective!r} as for the default; use a gradient, perturbation, "
                             "greedy or baseline_rationale method to explain it")
    attr.warnings.extend(rationale_warnings(attr, visible))
    if bad.any():
        attr.meta["nonfinite_cells"] = [[int(i), int(j)] for i, j in zip(*np.nonzero(bad), strict=True)]
        attr.warnings.append(f"{int(bad.sum())} score(s) are NaN or infinite where the target can see the input "
                             "(the model overflowed, or a target has probability 0)")
        try:
            attr.check_finite()
        except NonFiniteScoresError as exc:
            if strict:
                raise
            warnings.warn(str(exc), RuntimeWarning, stacklevel=3)
    return attr


def precision_meta(wrapped: SequenceModel) -> dict[str, str]:
    """Where and in which precision the scores were computed, for the result's ``meta``: ``device`` (``cpu``,
    ``cuda:0``), ``dtype`` of the weights (``float32``, ``bfloat16``, ...) and ``autocast`` (``bfloat16`` /
    ``float16``) when every forward ran under :func:`torch.autocast`; a result in reduced precision is then told
    apart from a float32 one in the saved file and in the reports."""
    out = {"device": str(wrapped.device)}
    module = getattr(wrapped, "model", None)
    if isinstance(module, torch.nn.Module):
        param = first_parameter(module)
        out["dtype"] = str(torch.float32 if param is None else param.dtype).removeprefix("torch.")
    if wrapped.autocast is not None:
        out["autocast"] = str(wrapped.autocast).removeprefix("torch.")
    return out


def rationale_warnings(attr: Attribution, visible: np.ndarray) -> list[str]:
    """Warnings for rationale searches that are not what they seem: a search that never reached the target, one
    that hit its size bound, and a rationale that is the target's whole context."""
    rat = attr.rationale
    if rat is None:
        return []
    out = []
    for i, positions in enumerate(rat.positions):
        name = f"target {i} ({_target_text(attr, i)!r})"
        if i < len(rat.bound_hit) and rat.bound_hit[i]:
            bound = ", ".join(f"{k}={attr.options[k]}" for k in ("max_size", "max_subsets") if k in attr.options)
            if positions:
                out.append(f"{attr.method}: {name}: the search stopped at its bound ({bound}) without the model "
                           f"predicting the target; these {len(positions)} positions are not a sufficient rationale")
            else:
                out.append(f"{attr.method}: {name}: no rationale within the search bound ({bound}); the empty "
                           "rationale is not a result")
        elif not positions and i < len(rat.reached) and not rat.reached[i]:
            out.append(f"{attr.method}: {name}: no subset of its {int(visible[i].sum())} visible positions, not even "
                       "the whole context, makes the model predict the target; the empty rationale is not a result")
        elif i < len(rat.reached) and not rat.reached[i] and len(positions) >= int(visible[i].sum()):
            out.append(f"{attr.method}: {name}: not even the whole context ({len(positions)} visible "
                       f"position{'s' if len(positions) != 1 else ''}) makes the model predict the target; "
                       "it is not a sufficient rationale")
        elif i < len(rat.reached) and not rat.reached[i]:
            out.append(f"{attr.method}: {name}: the search stopped ({len(positions)} positions) without the model "
                       "predicting the target; this is not a sufficient rationale")
        elif len(positions) >= int(visible[i].sum()) > 1:
            out.append(f"{attr.method}: {name}: the rationale is the whole context ({len(positions)} positions)")
    return out


def _target_text(attr: Attribution, i: int) -> str:
    """Target ``i`` as the text it covers (not a byte-level token string)."""
    p = attr.target_positions[i]
    off = None if p is None else attr.offsets[p]
    if off is not None and attr.segments[p] == "target":
        return attr.target_text[off[0] : off[1]]
    return attr.target_tokens[i]


def explain_many(model: Any, items: Iterable[Any], method: str = "integrated_gradients", *, tokenizer: Any = None,
                 pack: int = 1024, progress: bool = True, strict: bool = False, objective: str = "logprob",
                 max_new_tokens: int = 10, truncate: bool = False, **options: Any) -> Iterator[Attribution]:
    """Explain many inputs, yielding one :class:`Attribution` per item in input order, equal (to float rounding) to
    one :func:`explain` call per item.

    An item is a text, a ``(text, target)`` pair, or a mapping with ``text`` and optionally ``target``, ``foil``,
    ``groups``, ``objective``; ``max_new_tokens`` and ``truncate`` are :func:`explain`'s. Items are read as they come,
    encoded a pack at a time (the model's own targets of items without one found in shared forwards:
    :meth:`SequenceModel.encode_many`; one at a time for methods without a batched form) and explained ``pack`` at
    a time: methods with a
    batched implementation (gradient norm, grad×input, IG, occlusion) pack the examples' rows into shared forwards
    under the method's token budget (examples of one length together where the adapter cannot pad); other
    methods run, and are yielded, one example at a time. ``pack`` is 1,024 by default: the more items are sorted
    by length together, the less padding the packed forwards carry (docs/methods.md: 16.3 % of the tokens with 256
    items, 4.5 % with 1,024, on SST-2 sentences through MiniLM in CPU forwards of up to 1,024 tokens). A progress
    bar counts items, and for batched methods a second one the forward rows of the pack being computed (and one the
    prediction of the pack's own targets)."""
    from tqdm.auto import tqdm

    wrapped = model if isinstance(model, SequenceModel) else load_model(model, tokenizer)
    spec = get_method(method)
    spec.check_options(options)
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise InputError("pack must be a positive number of items")
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        one = "text" if isinstance(items, str) else "mapping" if isinstance(items, Mapping) else None
        raise InputError(f"explain_many takes an iterable of items (texts, (text, target) pairs or mappings), not "
                         f"{type(items).__name__}" + (f"; wrap one {one} in a list" if one else ""))
    batched = spec.many is not None
    limit = pack if batched else 1  # nothing to share: each item's result goes out as soon as it is computed
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=f"explain_many {method}", unit="item", disable=not progress)
    buffer: list[dict[str, Any]] = []
    form: str | None = None
    try:
        for n, item in enumerate(items):
            got, fields = _item_fields(item, objective)
            if form is not None and got != form:
                raise InputError(f"explain_many item {n} is a {got} but the earlier items are {form}s; give items "
                                 "of one kind (all texts, all (text, target) pairs, or all mappings)")
            form = got
            buffer.append(fields)
            if len(buffer) >= limit:
                examples = _encode_pack(wrapped, buffer, n + 1 - len(buffer), progress and batched,
                                        max_new_tokens=max_new_tokens, truncate=truncate)
                yield from _pack_with_progress(wrapped, examples, method, options, strict, progress and batched)
                bar.update(len(buffer))
                buffer = []
        if buffer:
            examples = _encode_pack(wrapped, buffer, n + 1 - len(buffer), progress and batched,
                                    max_new_tokens=max_new_tokens, truncate=truncate)
            yield from _pack_with_progress(wrapped, examples, method, options, strict, progress and batched)
            bar.update(len(buffer))
    finally:
        bar.close()


def _pack_with_progress(wrapped: SequenceModel, examples: list[Example], method: str, options: dict[str, Any],
                        strict: bool, progress: bool) -> list[Attribution]:
    """One pack's attributions, computed under a row-level progress bar (the methods report forward rows), so that
    a long pack shows progress before its items are done. Computed whole inside the bar's block: the bar is
    context-local and must not stay open while the caller holds a suspended generator."""
    with progress_bar(f"{method}: pack of {len(examples)}", enabled=progress):
        return list(explain_pack(wrapped, examples, method, options, strict))


def _item_fields(item: Any, objective: str) -> tuple[str, dict[str, Any]]:
    """An item's kind and its fields ``{text, target, objective, foil, groups}`` (a mapping's keys checked)."""
    if isinstance(item, str):
        return "text", {"text": item, "target": None, "objective": objective, "foil": None, "groups": None}
    if isinstance(item, Mapping):
        unknown = set(item) - {"text", "target", "foil", "groups", "objective"}
        if unknown or "text" not in item:
            raise InputError(f"an explain_many item mapping takes text, target, foil, groups, objective; got "
                             f"{sorted(item)}")
        return "mapping", {"text": item["text"], "target": item.get("target"),
                           "objective": item.get("objective", objective), "foil": item.get("foil"),
                           "groups": item.get("groups")}
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return "(text, target) pair", {"text": item[0], "target": item[1], "objective": objective, "foil": None,
                                       "groups": None}
    raise InputError(f"an explain_many item is a text, a (text, target) pair or a mapping, not "
                     f"{type(item).__name__}")


def _encode_pack(wrapped: SequenceModel, fields: list[dict[str, Any]], first: int, progress: bool,
                 **encode_options: Any) -> list[Example]:
    """A pack of items encoded together (:meth:`SequenceModel.encode_many`: the model's own predictions of the
    items without a target can share forwards), each then given its objective and groups. With ``progress``, a bar
    follows the predictions (labels, or decoded tokens) while there are any. ``first`` is the index of the pack's
    first item: a user error names the item it comes from (found by encoding the items alone, only on error)."""
    todo = sum(f["target"] is None for f in fields)
    try:
        with progress_bar(f"predicting the targets of {todo} item(s)", enabled=progress and todo > 0, unit="step"):
            encoded = wrapped.encode_many([(f["text"], f["target"]) for f in fields], **encode_options)
    except SeqExplainError:
        for k, f in enumerate(fields):
            with _naming_item(first + k):
                wrapped.encode_many([(f["text"], f["target"])], **encode_options)
        raise
    out = []
    for k, (ex, f) in enumerate(zip(encoded, fields, strict=True)):
        with _naming_item(first + k):
            out.append(finish_item(wrapped, ex, f["objective"], f["foil"], f["groups"]))
    return out


@contextlib.contextmanager
def _naming_item(n: int) -> Iterator[None]:
    """A user error raised in the block, as the same error with ``explain_many item N: `` before its message."""
    try:
        yield
    except SeqExplainError as exc:
        if not isinstance(exc, (InputError, UnsupportedError, DataError)):
            raise
        raise type(exc)(f"explain_many item {n}: {exc}") from exc


def explain_pack(wrapped: SequenceModel, examples: list[Example], method: str, options: dict[str, Any],
                 strict: bool = False) -> Iterator[Attribution]:
    """The attributions of ``examples`` in order: through the method's batched form where it has one (examples
    sorted by length; one group per length where the adapter cannot pad), else one example at a time."""
    spec = get_method(method)
    if spec.many is None:
        for ex in examples:
            yield to_attribution(wrapped, ex, method, spec.fn(wrapped, ex, **options), options, strict)
        return
    groups: dict[Any, list[int]] = {}
    for i in sorted(range(len(examples)), key=lambda k: examples[k].length):  # similar lengths pack with less padding
        groups.setdefault(None if wrapped.can_pad() else examples[i].length, []).append(i)
    results: list[MethodResult | None] = [None] * len(examples)
    for members in groups.values():
        for i, res in zip(members, spec.many(wrapped, [examples[i] for i in members], **options), strict=True):
            results[i] = res
    for ex, res in zip(examples, results, strict=True):
        assert res is not None
        yield to_attribution(wrapped, ex, method, res, options, strict)
