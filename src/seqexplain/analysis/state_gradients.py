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

**Parts.** The gradients arrive as :class:`~seqexplain.analysis.state_gradient_chunks.GradientChunk` objects
(stored raw, optionally, by :mod:`seqexplain.analysis.state_gradient_chunks`);
:mod:`seqexplain.analysis.state_gradient_stats` keeps their online statistics per word class and delay
(:func:`accumulate`, re-exported here because the documentation imports it from this module, e.g.
``docs/reproductions/verwimp2018.md``); :mod:`seqexplain.analysis.state_gradient_reference` computes them by plain
autograd (one backward per ``(t, d)``) for tests and benchmarks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from seqexplain.analysis.state_gradient_chunks import GradientChunk
from seqexplain.analysis.state_gradient_stats import accumulate
from seqexplain.data.corpus import batchify
from seqexplain.errors import InputError
from seqexplain.models.module_state import eval_mode
from seqexplain.models.rnn.lm import RNNLanguageModel, State

StateKind = Literal["cell", "hidden"]


def state_index(model: RNNLanguageModel, layer: int, state: StateKind) -> tuple[int, int]:
    """``(layer, position of state in the model's per-layer state tuple)``; :class:`InputError` when either does not
    exist."""
    if not 0 <= layer < len(model.layers):
        raise InputError(f"layer {layer} does not exist; the model has {len(model.layers)} layer(s) (0-based)")
    names = model.state_names
    if state not in names:
        raise InputError(f"state {state!r} does not exist for a {model.config.cell} model; choose one of {names}")
    return layer, names.index(state)


def check_gradient_args(max_delay: int, segment_length: int) -> None:
    """:class:`InputError` unless ``max_delay >= 0`` and ``segment_length >= 1``."""
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
    The last ``len(ids) mod rows`` tokens fit no row and are not analysed; a run that reaches the end of the rows
    says so with a ``RuntimeWarning``. An id outside the vocabulary is an :class:`InputError`.
    """
    check_gradient_args(max_delay, segment_length)
    li, si = state_index(model, layer, state)
    data = batchify(ids, min(batch_size, max(1, len(ids) // 2)))
    rows, n = data.shape
    steps = n if max_positions is None else min(n, math.ceil(max_positions / rows))
    tail = int(torch.as_tensor(ids).numel()) - rows * n
    if tail and steps == n:
        warnings.warn(f"the last {tail} of {rows * n + tail} tokens are not analysed: the stream is cut into {rows} "
                      f"rows of {n} tokens", RuntimeWarning, stacklevel=2)
    emb = model.get_input_embeddings().weight.detach()
    bad = data[(data < 0) | (data >= emb.shape[0])]
    if bad.numel():
        raise InputError(f"token id {int(bad[0])} is outside the model's vocabulary (0..{emb.shape[0] - 1})")
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
    one batched backward. A segment longer than the model's context (``n_positions`` / ``max_position_embeddings`` of
    its config), ``positions_per_pass < 1`` or a ``layer`` outside ``hidden_states`` is an :class:`InputError`.
    """
    check_gradient_args(max_delay, segment_length)
    if positions_per_pass < 1:
        raise InputError(f"positions_per_pass must be >= 1, got {positions_per_pass}")
    config = getattr(model, "config", None)
    context = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    if isinstance(context, int) and segment_length > context:
        raise InputError(f"segment_length {segment_length} is longer than the model's context of {context} "
                         f"positions; give segment_length <= {context}")
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
            if not -len(hidden_states) <= layer < len(hidden_states):
                raise InputError(f"layer {layer} does not exist; the model has {len(hidden_states)} hidden states "
                                 f"(0 = embeddings, -1 = last; {-len(hidden_states)}..{len(hidden_states) - 1})")
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


__all__ = ["StateKind", "accumulate", "check_gradient_args", "iter_rnn_state_gradients",
           "iter_transformer_state_gradients", "state_index"]
