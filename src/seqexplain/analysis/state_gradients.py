"""State gradients (Verwimp et al., Interspeech 2018): how much of an input embedding a model's state remembers.

For a state ``s_t`` (an LSTM's cell state ``c_t`` or a hidden state ``h_t`` of one layer) and the input word embedding
``x_{t-d}`` of the word ``d`` steps back, the **state gradient** is the Jacobian

    G_d(t) = ∂ s_t / ∂ x_{t-d}        (shape [H, E])

Gradients are stopped at segment boundaries, as in the original: the text is cut into segments of
``segment_length`` tokens; the state is carried from one segment to the next as a constant, so ``G_d(t)`` is defined
for ``0 <= d <= t_in_segment`` only (and ``d <= max_delay``).

**How it is computed (recurrent models).** Forward-mode differentiation along time: the model keeps, for the
current step ``t``, the tangents ``T_t[d, e] = ∂ S_t / ∂ x_{t-d}[e]`` of its full state ``S`` (all layers up to the
analysed one, hidden and cell) for ``d = 0..max_delay`` and every embedding coordinate ``e``. One step is

    T_t[0, :]  = ∂ step(x_t, S_{t-1}) / ∂ x_t                     (E tangents, the new input)
    T_t[d, :]  = ∂ step(x_t, S_{t-1}) / ∂ S_{t-1} · T_{t-1}[d-1, :]   (d = 1..max_delay)

computed with ``torch.func.jvp`` vectorised by ``torch.func.vmap`` over all ``(max_delay + 1)·E`` tangents and over a
batch of rows, i.e. one batched Jacobian-vector product per time step instead of one backward pass per ``(t, d)``.
Each tangent lives ``max_delay`` steps, so the cost is ``O(E · max_delay)`` vector-steps per position, against
``O(H · max_delay²)`` for a backward pass per ``(t, d)``. ``G_d(t)`` is read off ``T_t[d]`` and is exact (no
truncation: ``x_{t-d}`` for ``d <= max_delay`` reaches ``s_t`` only through steps ``t-d..t``).

**Transformers** (any Hugging Face causal LM): ``s_t`` is ``hidden_states[layer][t]`` (``output_hidden_states=True``),
``x`` is ``inputs_embeds`` (the token embedding, before position embeddings are added); per segment one batched
backward (``is_grads_batched``) per group of positions gives ``∂ s_t / ∂ x_τ`` for every ``τ``.

**Online statistics.** :class:`StateGradientAccumulator` keeps, per class ``c`` (index 0 = all positions) and delay
``d``, the count, the running mean of ``G_d`` and the running mean of ``G_dᵀ G_d`` ([E, E]); the class of a gradient is
the class of the **input word at t-d** (the word whose memory is measured). Memory is independent of the corpus
length. Both statistics can be normalised afterwards (:mod:`seqexplain.analysis.spectra`): for a right-multiplication
by ``D``, ``mean(G D) = mean(G) D`` and ``mean((G D)ᵀ G D) = Dᵀ mean(GᵀG) D``.

**Raw storage** (optional, :class:`GradientStoreWriter` / :class:`GradientStoreReader`): chunks of positions in
compressed ``.npz`` files plus a JSON manifest. Chosen over zarr because it needs no extra dependency, loads without
pickle (``allow_pickle=False``), streams chunk by chunk and compresses the zero padding of undefined delays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.data.corpus import batchify
from seqexplain.errors import DataError, InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rnn.lm import RNNLanguageModel, State

StateKind = Literal["cell", "hidden"]


@dataclass
class GradientChunk:
    """State gradients of ``N`` positions.

    ``grads[N, D+1, H, E]``: ``G_d(t)`` (zeros where undefined); ``valid[N, D+1]``: ``d`` within the segment;
    ``source_positions[N, D+1]``: index of the input token ``t-d`` in the analysed token stream (-1 where undefined);
    ``positions[N]``: index of ``t``.
    """

    grads: Tensor
    valid: Tensor
    source_positions: Tensor
    positions: Tensor


def _state_index(model: RNNLanguageModel, layer: int, state: StateKind) -> tuple[int, int]:
    if not 0 <= layer < len(model.layers):
        raise InputError(f"layer {layer} does not exist; the model has {len(model.layers)} layer(s) (0-based)")
    names = model.state_names
    if state not in names:
        raise InputError(f"state {state!r} does not exist for a {model.config.cell} model; choose one of {names}")
    return layer, names.index(state)


def _check_args(max_delay: int, segment_length: int) -> None:
    if max_delay < 0:
        raise InputError(f"max_delay must be >= 0, got {max_delay}")
    if segment_length < 1:
        raise InputError(f"segment_length must be >= 1, got {segment_length}")


def iter_rnn_state_gradients(
    model: RNNLanguageModel,
    ids: Tensor,
    layer: int = 0,
    state: StateKind = "cell",
    max_delay: int = 50,
    segment_length: int = 100,
    batch_size: int = 8,
    max_positions: int | None = None,
    progress: bool = False,
) -> Iterator[GradientChunk]:
    """Yield the state gradients of every position of the token stream ``ids``, one time step of all rows at a time.

    The stream is reshaped to ``[batch_size, N]`` rows (:func:`batchify`; position ``(b, t)`` is stream index
    ``b*N + t``); rows are processed in parallel, cut into segments of ``segment_length`` steps, with the state
    carried (as a constant) across segment boundaries. ``max_positions`` stops after about that many positions.
    """
    _check_args(max_delay, segment_length)
    li, si = _state_index(model, layer, state)
    data = batchify(ids, min(batch_size, max(1, len(ids) // 2)))
    rows, n = data.shape
    steps = n if max_positions is None else min(n, math.ceil(max_positions / rows))
    emb = model.get_input_embeddings().weight.detach()
    e_dim = emb.shape[1]
    n_layers = li + 1
    device = emb.device
    data = data.to(device)
    row_offset = torch.arange(rows, device=device) * n
    eye = torch.eye(e_dim, device=device, dtype=emb.dtype).unsqueeze(1).expand(e_dim, rows, e_dim)
    with eval_mode(model), torch.no_grad():
        s: State = model.initial_state(rows, device)[:n_layers]
        tangent: State | None = None
        for t in tqdm(range(steps), desc="state gradients", disable=not progress, leave=False):
            t_in = t % segment_length
            x = emb[data[:, t]]
            prev = s

            def from_x(xx: Tensor, prev: State = prev) -> State:
                return model.step(xx, prev, n_layers)

            def from_state(ss: State, x: Tensor = x) -> State:
                return model.step(x, ss, n_layers)

            if model.config.cell == "lstm":
                injected = _lstm_tangents(model, x, prev, eye, None)
            else:
                injected = torch.func.vmap(lambda dx, x=x, f=from_x: torch.func.jvp(f, (x,), (dx,))[1])(eye)
            if t_in == 0 or tangent is None or max_delay == 0:
                tangent = injected
            else:
                keep = min(t_in, max_delay) * e_dim
                old = tuple(tuple(leaf[:keep] for leaf in lay) for lay in tangent)
                if model.config.cell == "lstm":
                    moved = _lstm_tangents(model, x, prev, None, old)
                else:
                    moved = torch.func.vmap(lambda ts, p=prev, f=from_state: torch.func.jvp(f, (p,), (ts,))[1])(old)
                tangent = tuple(tuple(torch.cat([a, b]) for a, b in zip(la, lb, strict=True))
                                for la, lb in zip(injected, moved, strict=True))
            s = model.step(x, prev, n_layers)
            n_blocks = tangent[li][si].shape[0] // e_dim
            g = tangent[li][si].view(n_blocks, e_dim, rows, -1).permute(2, 0, 3, 1)  # [B, nb, H, E]
            grads = g.new_zeros(rows, max_delay + 1, g.shape[2], e_dim)
            grads[:, :n_blocks] = g
            d = torch.arange(max_delay + 1, device=device)
            valid = (d < n_blocks).unsqueeze(0).expand(rows, -1)
            src = torch.where(valid, row_offset.unsqueeze(1) + t - d.unsqueeze(0), torch.full_like(valid, -1,
                                                                                                   dtype=torch.long))
            yield GradientChunk(grads=grads, valid=valid.clone(), source_positions=src, positions=row_offset + t)


def _lstm_tangents(model: RNNLanguageModel, x: Tensor, state: State, dx: Tensor | None, dstate: State | None) -> State:
    """Forward-mode derivative of :meth:`RNNLanguageModel.step` for LSTMs, written out (faster than ``jvp``/``vmap``).

    Tangents have a leading dimension ``K``: ``dx[K, B, E]`` (input tangents) and/or ``dstate`` (per layer
    ``(dh, dc)``, each ``[K, B, H]``); ``None`` means zero. With ``a = σ'`` / ``tanh'`` of the gate pre-activations,
    ``dgates = (W_ih dx_in + W_hh dh) ⊙ a``, ``dc' = dgate_i g + dgate_f c + dgate_g i + f dc``,
    ``dh' = dgate_o tanh(c') + o (1 - tanh²(c')) dc'``; layer ``l`` gets ``dx_in = dh'`` of layer ``l - 1``.
    """
    out: list[tuple[Tensor, Tensor]] = []
    inp, d_inp = x, dx
    for layer in range(len(state)):
        mod = model.layers[layer]
        h, c = state[layer]
        gates = F.linear(inp, mod.weight_ih_l0, mod.bias_ih_l0) + F.linear(h, mod.weight_hh_l0, mod.bias_hh_l0)
        gi, gf, gg, go = gates.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
        c_new = f * c + i * g
        tc = torch.tanh(c_new)
        h_new = o * tc
        scale = torch.cat([i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)], dim=-1)
        dgates: Tensor | None = None
        if d_inp is not None:
            dgates = torch.matmul(d_inp, mod.weight_ih_l0.T)
        if dstate is not None:
            dh, dc = dstate[layer]
            rec = torch.matmul(dh, mod.weight_hh_l0.T)
            dgates = rec if dgates is None else dgates.add_(rec)
        if dgates is None:
            raise InputError("no tangent given")
        dgates.mul_(scale)
        hs = h.shape[-1]
        dgates[..., :hs].mul_(g)
        dgates[..., hs : 2 * hs].mul_(c)
        dgates[..., 2 * hs : 3 * hs].mul_(i)
        dc_new = dgates[..., :hs] + dgates[..., hs : 2 * hs]
        dc_new.add_(dgates[..., 2 * hs : 3 * hs])
        if dstate is not None:
            dc_new.addcmul_(dstate[layer][1], f)
        dh_new = dgates[..., 3 * hs :].mul_(tc)
        dh_new.addcmul_(dc_new, o * (1 - tc * tc))
        out.append((dh_new, dc_new))
        inp, d_inp = h_new, dh_new
    return tuple(out)


def state_gradient_loop(
    model: RNNLanguageModel,
    segment_ids: Tensor,
    layer: int = 0,
    state: StateKind = "cell",
    max_delay: int = 50,
    initial_state: State | None = None,
    positions: Iterable[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Reference implementation: one (unit-batched) backward pass per ``(t, d)`` on one segment ``segment_ids[L]``.

    Returns ``grads[L, max_delay+1, H, E]`` and ``valid[L, max_delay+1]`` (``d <= t``). Slow; for tests and the
    benchmark baseline. ``initial_state`` (per layer ``(h, c)`` with batch 1) is treated as a constant.
    ``positions`` restricts the computation to those ``t`` (the others stay zero and invalid).
    """
    _check_args(max_delay, 1)
    li, si = _state_index(model, layer, state)
    length = int(segment_ids.numel())
    emb = model.get_input_embeddings().weight.detach()
    with eval_mode(model):
        s = initial_state if initial_state is not None else model.initial_state(1, emb.device)
        s = tuple(tuple(v.detach() for v in lay) for lay in s)[: li + 1]
        xs = [emb[segment_ids[t]].unsqueeze(0).clone().requires_grad_(True) for t in range(length)]
        states: list[Tensor] = []
        for t in range(length):
            s = model.step(xs[t], s, li + 1)
            states.append(s[li][si])
        h = states[0].shape[-1]
        eye = torch.eye(h, dtype=emb.dtype, device=emb.device).unsqueeze(1)
        grads = torch.zeros(length, max_delay + 1, h, emb.shape[1], dtype=emb.dtype)
        valid = torch.zeros(length, max_delay + 1, dtype=torch.bool)
        for t in range(length) if positions is None else positions:
            if not 0 <= t < length:
                raise InputError(f"time step t={t} is outside the segment (0 <= t < {length})")
            for d in range(min(t, max_delay) + 1):
                (g,) = torch.autograd.grad(states[t], xs[t - d], grad_outputs=eye, is_grads_batched=True,
                                           retain_graph=True)
                grads[t, d] = g[:, 0, :]
                valid[t, d] = True
    return grads, valid


def state_gradient(
    model: RNNLanguageModel,
    segment_ids: Tensor,
    t: int,
    d: int,
    layer: int = 0,
    state: StateKind = "cell",
    initial_state: State | None = None,
) -> Tensor:
    """One state gradient ``G_d(t) = ∂ s_t / ∂ x_{t-d}`` ([H, E]) within the segment ``segment_ids[L]``.

    Raises :class:`InputError` when ``t`` is not a position of the segment or ``t - d`` falls outside it.
    """
    length = int(segment_ids.numel())
    if not 0 <= t < length:
        raise InputError(f"time step t={t} is outside the segment (0 <= t < {length})")
    if not 0 <= d <= t:
        raise InputError(f"delay d={d} reaches outside the segment at t={t} (0 <= d <= t required; gradients are "
                         "stopped at segment boundaries)")
    li, si = _state_index(model, layer, state)
    emb = model.get_input_embeddings().weight.detach()
    with eval_mode(model):
        s = initial_state if initial_state is not None else model.initial_state(1, emb.device)
        s = tuple(tuple(v.detach() for v in lay) for lay in s)[: li + 1]
        xs = emb[segment_ids[: t + 1]].clone()
        src = xs[t - d].unsqueeze(0).clone().requires_grad_(True)

        def run(x_src: Tensor) -> Tensor:
            st = s
            for k in range(t + 1):
                st = model.step(x_src if k == t - d else xs[k].unsqueeze(0), st, li + 1)
            return st[li][si][0]

        return torch.autograd.functional.jacobian(run, src)[:, 0, :]


def iter_transformer_state_gradients(
    model: nn.Module,
    ids: Tensor,
    layer: int = -1,
    max_delay: int = 50,
    segment_length: int = 64,
    positions_per_pass: int = 8,
    max_positions: int | None = None,
    progress: bool = False,
) -> Iterator[GradientChunk]:
    """State gradients of a Hugging Face-style causal LM: ``G_d(t) = ∂ hidden_states[layer][t] / ∂ inputs_embeds[t-d]``.

    ``model`` must accept ``inputs_embeds`` and ``output_hidden_states=True`` and have ``get_input_embeddings()``.
    ``layer`` indexes ``hidden_states`` (0 = embedding output, i = after block i, -1 = last). The stream is cut into
    independent segments of ``segment_length`` tokens (the context window); ``positions_per_pass`` positions share
    one batched backward.
    """
    _check_args(max_delay, segment_length)
    emb_layer = model.get_input_embeddings()
    total = int(ids.numel()) if max_positions is None else min(int(ids.numel()), max_positions)
    ids = ids.flatten()[:total]
    device = emb_layer.weight.device
    with eval_mode(model):
        bar = tqdm(total=total, desc="state gradients", disable=not progress, leave=False)
        for seg_start in range(0, total, segment_length):
            seg = ids[seg_start : seg_start + segment_length].to(device)
            length = int(seg.numel())
            x = emb_layer(seg.unsqueeze(0)).detach().requires_grad_(True)
            out = model(inputs_embeds=x, output_hidden_states=True)
            hidden_states = getattr(out, "hidden_states", None)
            if hidden_states is None:
                raise InputError("the model returned no hidden_states; it must support output_hidden_states=True")
            hs = hidden_states[layer][0]  # [L, H]
            h_dim, e_dim = hs.shape[-1], x.shape[-1]
            for t0 in range(0, length, positions_per_pass):
                t1 = min(length, t0 + positions_per_pass)
                nt = t1 - t0
                cot = torch.zeros(nt, h_dim, length, h_dim, dtype=hs.dtype, device=device)
                k = torch.arange(nt, device=device)
                j = torch.arange(h_dim, device=device)
                cot[k.unsqueeze(1), j.unsqueeze(0), (t0 + k).unsqueeze(1), j.unsqueeze(0)] = 1.0
                (g,) = torch.autograd.grad(hs, x, grad_outputs=cot.view(nt * h_dim, length, h_dim),
                                           is_grads_batched=True, retain_graph=True)
                g = g.view(nt, h_dim, length, e_dim).permute(0, 2, 1, 3)  # [nt, L, H, E]
                t = (t0 + k).unsqueeze(1)
                d = torch.arange(max_delay + 1, device=device).unsqueeze(0)
                tau = t - d
                valid = tau >= 0
                grads = g[k.unsqueeze(1), tau.clamp(min=0)] * valid[..., None, None]
                src = torch.where(valid, seg_start + tau, torch.full_like(tau, -1))
                yield GradientChunk(grads=grads.detach(), valid=valid, source_positions=src,
                                    positions=seg_start + t0 + k)
            bar.update(length)
        bar.close()


# ---------------------------------------------------------------------------------------------------------------
# online statistics


@dataclass
class StateGradientStats:
    """Per class (index 0 = ``all``) and delay: ``count[C, D+1]``, ``mean_grad[C, D+1, H, E]`` (mean of ``G_d``) and
    ``mean_gram[C, D+1, E, E]`` (mean of ``G_dᵀ G_d``), float64. ``meta``: how they were computed."""

    class_names: list[str]
    count: Tensor
    mean_grad: Tensor
    mean_gram: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def max_delay(self) -> int:
        return int(self.count.shape[1]) - 1

    def class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise InputError(f"unknown class {name!r}; known: {self.class_names}")
        return self.class_names.index(name)

    def save(self, directory: Path | str) -> Path:
        """Write ``stats.safetensors`` and ``stats.json`` (class names, meta) atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "stats.safetensors") as tmp:
            save_file({"count": self.count.contiguous(), "mean_grad": self.mean_grad.contiguous(),
                       "mean_gram": self.mean_gram.contiguous()}, str(tmp))
        atomic_write_text(d / "stats.json", json.dumps({"class_names": self.class_names, "meta": self.meta},
                                                       indent=2))
        return d

    @classmethod
    def load(cls, directory: Path | str) -> StateGradientStats:
        d = Path(directory)
        if not (d / "stats.safetensors").is_file() or not (d / "stats.json").is_file():
            raise DataError(f"{d} holds no state-gradient statistics (stats.safetensors + stats.json)")
        t = load_file(str(d / "stats.safetensors"))
        info = json.loads((d / "stats.json").read_text(encoding="utf-8"))
        return cls(list(info["class_names"]), t["count"], t["mean_grad"], t["mean_gram"], dict(info["meta"]))


class StateGradientAccumulator:
    """Running means of ``G_d`` and ``G_dᵀ G_d`` per class and delay (memory independent of the number of positions).

    ``class_mask[n_tokens, C]`` (bool) marks the classes of each token of the analysed stream; a gradient ``G_d(t)``
    counts for the classes of the input token ``t - d``. Update rule for a chunk with ``n`` new gradients of sum
    ``S``: ``mean += (S - n·mean) / (count + n)``.
    """

    def __init__(self, max_delay: int, hidden_size: int, embedding_size: int,
                 class_names: Iterable[str] = (), class_mask: np.ndarray | Tensor | None = None) -> None:
        self.class_names = ["all", *class_names]
        c = len(self.class_names)
        if class_mask is not None:
            cm = torch.as_tensor(np.asarray(class_mask), dtype=torch.bool)
            if cm.dim() != 2 or cm.shape[1] != c - 1:
                raise InputError(f"class_mask must be [n_tokens, {c - 1}], got {tuple(cm.shape)}")
            self.class_mask: Tensor | None = cm
        else:
            if c > 1:
                raise InputError("class names were given without a class mask")
            self.class_mask = None
        self.count = torch.zeros(c, max_delay + 1, dtype=torch.float64)
        self.mean_grad = torch.zeros(c, max_delay + 1, hidden_size, embedding_size, dtype=torch.float64)
        self.mean_gram = torch.zeros(c, max_delay + 1, embedding_size, embedding_size, dtype=torch.float64)

    def update(self, chunk: GradientChunk) -> None:
        g = chunk.grads.detach().to("cpu", torch.float32)
        if g.shape[1:] != self.mean_grad.shape[1:]:
            raise InputError(f"chunk gradients of shape {tuple(g.shape[1:])} do not fit "
                             f"{tuple(self.mean_grad.shape[1:])}")
        valid = chunk.valid.to("cpu")
        w = valid.unsqueeze(-1).float()  # [N, D+1, 1]
        if self.class_mask is not None:
            src = chunk.source_positions.to("cpu").clamp(min=0)
            if int(src.max()) >= self.class_mask.shape[0]:
                raise InputError("class_mask is shorter than the analysed token stream")
            cls = self.class_mask[src] & valid.unsqueeze(-1)
            w = torch.cat([w, cls.float()], dim=-1)  # [N, D+1, C]
        n_new = w.sum(0).T.double()  # [C, D+1]
        s_grad = torch.einsum("ndc,ndhe->cdhe", w, g).double()
        gram = torch.einsum("ndhe,ndhf->ndef", g, g)
        s_gram = torch.einsum("ndc,ndef->cdef", w, gram).double()
        total = self.count + n_new
        safe = total.clamp(min=1.0)[..., None, None]
        self.mean_grad += (s_grad - n_new[..., None, None] * self.mean_grad) / safe
        self.mean_gram += (s_gram - n_new[..., None, None] * self.mean_gram) / safe
        self.count = total

    def stats(self, meta: dict[str, Any] | None = None) -> StateGradientStats:
        return StateGradientStats(list(self.class_names), self.count.clone(), self.mean_grad.clone(),
                                  self.mean_gram.clone(), dict(meta or {}))


def accumulate(
    chunks: Iterable[GradientChunk],
    class_names: Iterable[str] = (),
    class_mask: np.ndarray | Tensor | None = None,
    store: GradientStoreWriter | None = None,
    meta: dict[str, Any] | None = None,
    on_chunk: Callable[[GradientChunk], None] | None = None,
) -> StateGradientStats:
    """Consume gradient chunks into :class:`StateGradientStats` (optionally also writing them to ``store``)."""
    acc: StateGradientAccumulator | None = None
    names = list(class_names)
    for chunk in chunks:
        if acc is None:
            _, dp1, h, e = chunk.grads.shape
            acc = StateGradientAccumulator(dp1 - 1, h, e, names, class_mask)
        acc.update(chunk)
        if store is not None:
            store.write(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    if store is not None:
        store.close()
    if acc is None:
        raise InputError("no positions to analyse: the token stream is empty or too short")
    return acc.stats(meta)


# ---------------------------------------------------------------------------------------------------------------
# raw storage


class GradientStoreWriter:
    """Write gradient chunks to ``<directory>/chunk_NNNNN.npz`` (compressed) + ``manifest.json``.

    Positions are buffered and flushed every ``chunk_positions`` positions; ``dtype`` ``float16`` halves the size.
    Each file and the manifest are written atomically; the manifest is rewritten after every chunk.
    """

    def __init__(self, directory: Path | str, chunk_positions: int = 256, dtype: str = "float32") -> None:
        if dtype not in ("float32", "float16"):
            raise InputError(f"dtype must be float32 or float16, got {dtype!r}")
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk_positions = chunk_positions
        self.dtype = dtype
        self._buf: list[GradientChunk] = []
        self._buffered = 0
        self.files: list[str] = []
        self.positions = 0

    def write(self, chunk: GradientChunk) -> None:
        self._buf.append(chunk)
        self._buffered += int(chunk.grads.shape[0])
        if self._buffered >= self.chunk_positions:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        arrays = {
            "grads": torch.cat([c.grads for c in self._buf]).cpu().numpy().astype(self.dtype),
            "valid": torch.cat([c.valid for c in self._buf]).cpu().numpy(),
            "source_positions": torch.cat([c.source_positions for c in self._buf]).cpu().numpy(),
            "positions": torch.cat([c.positions for c in self._buf]).cpu().numpy(),
        }
        name = f"chunk_{len(self.files):05d}.npz"
        with atomic_path(self.dir / name) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        self.files.append(name)
        self.positions += self._buffered
        self._buf, self._buffered = [], 0
        atomic_write_text(self.dir / "manifest.json", json.dumps(
            {"format": "seqexplain-state-gradients-npz", "version": 1, "dtype": self.dtype,
             "positions": self.positions, "files": self.files}, indent=2))

    def close(self) -> None:
        self._flush()


class GradientStoreReader:
    """Stream the chunks written by :class:`GradientStoreWriter` back as :class:`GradientChunk` (float32)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)
        manifest = self.dir / "manifest.json"
        if not manifest.is_file():
            raise DataError(f"{self.dir} is not a gradient store (no manifest.json)")
        self.manifest = json.loads(manifest.read_text(encoding="utf-8"))

    @property
    def positions(self) -> int:
        return int(self.manifest["positions"])

    def __iter__(self) -> Iterator[GradientChunk]:
        for name in self.manifest["files"]:
            with np.load(self.dir / name, allow_pickle=False) as z:
                yield GradientChunk(
                    grads=torch.from_numpy(z["grads"].astype(np.float32)),
                    valid=torch.from_numpy(z["valid"]),
                    source_positions=torch.from_numpy(z["source_positions"]),
                    positions=torch.from_numpy(z["positions"]),
                )
