"""Attention RNN classifiers over precomputed token vectors (Ger, Klabjan & Utke, "Reproducibility of
attention-based explanations for RNNs"; code stephanieger/sequence-explainability).

**Encoder.** ``x_s`` (``[L, D]`` vectors) → optional Dense (``fc_dim``) → BatchNorm → stacked LSTMs of the sizes
``hidden`` (the original IMDB stack 128-64-16) with BatchNorm and dropout between layers. ``H_s`` are the last
layer's outputs, ``(h₀, c₀)`` its final state. BatchNorm statistics are taken over the real positions only (padding
never enters them).

**Decoders** (one LSTM step whose gates also read a context ``c``; the step's input is zero as in the original, so
the step is ``LSTMCell(c, (h₀, c₀))``; class logits ``z = W_o h₁ + b_o``):

* ``"avg"``: ``e_s = v_aᵀ tanh(W_a h₀ + U_a H_s + b_a)``, ``α = softmax(e)`` over the real positions,
  ``c = Σ_s α_s H_s``.
* ``"hier"`` (hierarchical): with ``F[s, k] = 1`` when position ``s`` has event type ``k`` (one type per position),
  word attention within each type ``α_{s,k} = exp(r_s) F_{s,k} / Σ_{s'} exp(r_{s'}) F_{s',k}`` (``r_s`` as ``e_s``
  above), event contexts ``c_k = Σ_s α_{s,k} H_s``, ``e_k = v_bᵀ tanh(W_b h₀ + U_b c_k + b_b)``,
  ``β = softmax(e)`` over the event types present (``E_k = 1``), ``c = Σ_k β_k c_k``. The position weights of the
  final context are ``a_s = β_{k(s)} α_{s,k(s)}``: they sum to 1 and their sum over type ``k``'s positions is ``β_k``.

**Numerics** (``numerics``): ``"stable"`` (default) computes every softmax with the maximum subtracted and masked
entries set to ``-inf`` (an event type with no position gets ``c_k = 0`` and ``β_k = 0``); ``"original"`` reproduces
the original's ``exp(e) · mask / (Σ exp(e) · mask + 1e-7)`` without max-subtraction (overflows for logits above
~88 in float32, and the ``1e-7`` makes the weights sum to slightly less than 1).

**Dropout at evaluation** (``dropout_at_eval``): the original computed gradients and integrated gradients with
Keras' learning phase 1 (dropout on). Off by default; when True, the dropout between LSTM layers stays active even
in eval mode (explanations then vary from call to call). BatchNorm keeps its running statistics either way (Keras'
learning phase 1 also switched BatchNorm to batch statistics, which would make one sequence's explanation depend on
the others in its batch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.functional import dropout
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqexplain.atomic import atomic_path
from seqexplain.errors import InputError, ModelLoadError
from seqexplain.models.native import build_from_config, load_safetensors_weights
from seqexplain.models.native_heads import length_mask

Decoder = Literal["avg", "hier"]
Numerics = Literal["stable", "original"]
ORIGINAL_EPS = 1e-7  # Keras' K.epsilon() in the original's normalisation


@dataclass
class AttentionRNNConfig:
    """Architecture of an :class:`AttentionRNN` (saved beside its weights; two weight files are of the same
    architecture when their configs are equal)."""

    input_dim: int
    n_classes: int = 2
    hidden: list[int] = field(default_factory=lambda: [128, 64, 16])
    fc_dim: int | None = None
    decoder: Decoder = "avg"
    n_event_types: int = 0
    dropout: float = 0.2
    numerics: Numerics = "stable"

    def check(self) -> None:
        if self.input_dim < 1 or self.n_classes < 2 or not self.hidden or min(self.hidden) < 1:
            raise InputError("an attention RNN needs input_dim ≥ 1, n_classes ≥ 2 and at least one LSTM size ≥ 1")
        if self.decoder not in ("avg", "hier"):
            raise InputError(f"decoder is 'avg' or 'hier', not {self.decoder!r}")
        if self.decoder == "hier" and self.n_event_types < 1:
            raise InputError("a hierarchical decoder needs n_event_types ≥ 1 (an empty event set)")
        if self.numerics not in ("stable", "original"):
            raise InputError(f"numerics is 'stable' or 'original', not {self.numerics!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError("dropout must be in [0, 1)")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def masked_softmax(e: Tensor, mask: Tensor, dim: int, numerics: Numerics) -> Tensor:
    """Softmax of ``e`` over ``dim`` restricted to ``mask`` (zero elsewhere; all zero where nothing is masked in).
    ``"stable"``: max-subtracted; ``"original"``: ``exp(e)·mask / (Σ exp(e)·mask + 1e-7)``."""
    if numerics == "original":
        num = torch.exp(e) * mask.to(e.dtype)
        return num / (num.sum(dim, keepdim=True) + ORIGINAL_EPS)
    filled = e.masked_fill(~mask, float("-inf"))
    top = filled.amax(dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    num = torch.exp(filled - top)
    den = num.sum(dim, keepdim=True)
    return num / torch.where(den > 0, den, torch.ones_like(den))


def masked_batch_norm(bn: nn.BatchNorm1d, x: Tensor, mask: Tensor | None) -> Tensor:
    """BatchNorm over the feature axis of ``x[N, n, D]`` with statistics of the real positions (``mask[N, n]``)."""
    if mask is None:
        return bn(x.reshape(-1, x.shape[-1])).view_as(x)
    out = torch.zeros_like(x)
    out[mask] = bn(x[mask])
    return out


def lstm_states(lstm: nn.LSTM, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(H [N, n, h], h_last [N, h], c_last [N, h])`` of a one-layer LSTM over ``x[N, n, D]`` whose row ``r`` holds
    ``lengths[r]`` real steps (packed, so padding never enters the recurrence; ``H`` is zero at padding)."""
    if lengths is None:
        out, (h, c) = lstm(x)
        return out, h[-1], c[-1]
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, (h, c) = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], h[-1], c[-1]


class AttentionRNN(nn.Module):
    """Encoder and single-step attention decoder of the module docstring."""

    def __init__(self, config: AttentionRNNConfig, dropout_at_eval: bool = False) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.dropout_at_eval = dropout_at_eval
        width = config.fc_dim or config.input_dim
        self.fc = nn.Linear(config.input_dim, config.fc_dim) if config.fc_dim else None
        self.norms = nn.ModuleList()
        self.lstms = nn.ModuleList()
        for size in config.hidden:
            self.norms.append(nn.BatchNorm1d(width))
            self.lstms.append(nn.LSTM(width, size, batch_first=True))
            width = size
        u = width
        self.W_a = nn.Linear(u, u, bias=False)
        self.U_a = nn.Linear(u, u)  # U_a H_s + b_a
        self.v_a = nn.Linear(u, 1, bias=False)
        if config.decoder == "hier":
            self.W_b = nn.Linear(u, u, bias=False)
            self.U_b = nn.Linear(u, u)
            self.v_b = nn.Linear(u, 1, bias=False)
        self.cell = nn.LSTMCell(u, u)
        self.out = nn.Linear(u, config.n_classes)

    @property
    def input_dim(self) -> int:
        return self.config.input_dim

    def encode(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(H [N, n, u], h₀ [N, u], c₀ [N, u], mask [N, n] or None)``."""
        n = x.shape[1]
        mask = None if lengths is None else length_mask(lengths.to(x.device), n)
        h = self.fc(x) if self.fc is not None else x
        h_last = c_last = h.new_zeros(0)
        for k, (bn, lstm) in enumerate(zip(self.norms, self.lstms, strict=True)):
            h = masked_batch_norm(bn, h, mask)
            if k > 0 and self.config.dropout > 0:
                h = dropout(h, self.config.dropout, training=self.training or self.dropout_at_eval)
            h, h_last, c_last = lstm_states(lstm, h, lengths)
        return h, h_last, c_last, mask

    def forward(self, x: Tensor, lengths: Tensor | None = None, types: Tensor | None = None
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(z [N, C], attention)`` for ``x[N, n, D]`` with ``lengths[N]`` real steps (None: all) and, for
        ``"hier"``, ``types[N, n]`` (event type of each position). ``attention["alpha"] [N, n]`` holds the position
        weights of the final context (zero at padding); ``"hier"`` adds ``"beta" [N, K]`` and ``"word" [N, n, K]``
        (``α_{s,k}``)."""
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise InputError(f"input vectors of shape {tuple(x.shape)}; the model takes [batch, positions, "
                             f"{self.config.input_dim}]")
        hs, h0, c0, mask = self.encode(x, lengths)
        real = torch.ones(hs.shape[:2], dtype=torch.bool, device=hs.device) if mask is None else mask
        r = self.v_a(torch.tanh(self.W_a(h0).unsqueeze(1) + self.U_a(hs))).squeeze(-1)  # [N, n]
        numerics = self.config.numerics
        att: dict[str, Tensor] = {}
        if self.config.decoder == "avg":
            alpha = masked_softmax(r, real, 1, numerics)
            context = (alpha.unsqueeze(-1) * hs).sum(1)
            att["alpha"] = alpha
        else:
            if types is None:
                raise InputError("a hierarchical decoder needs the event type of every position")
            n_k = self.config.n_event_types
            if types.shape != real.shape:
                raise InputError(f"event types of shape {tuple(types.shape)} for inputs of {tuple(real.shape)}")
            if bool(((types < 0) | (types >= n_k))[real].any()):
                raise InputError(f"an event type lies outside 0..{n_k - 1}")
            f = nn.functional.one_hot(types.clamp(0, n_k - 1), n_k).bool() & real.unsqueeze(-1)  # [N, n, K]
            word = masked_softmax(r.unsqueeze(-1).expand(-1, -1, n_k), f, 1, numerics)  # α_{s,k}
            event_ctx = torch.einsum("nsk,nsu->nku", word, hs)  # c_k
            e = self.v_b(torch.tanh(self.W_b(h0).unsqueeze(1) + self.U_b(event_ctx))).squeeze(-1)  # [N, K]
            beta = masked_softmax(e, f.any(1), 1, numerics)
            context = (beta.unsqueeze(-1) * event_ctx).sum(1)
            att.update(alpha=(word * beta.unsqueeze(1)).sum(-1), beta=beta, word=word)
        h1, _ = self.cell(context, (h0, c0))
        return self.out(h1), att


def same_architecture(a: AttentionRNNConfig, b: AttentionRNNConfig) -> bool:
    """Whether weights of ``a`` and ``b`` can be interpolated (equal configs up to the numerics option)."""
    da, db = a.to_dict(), b.to_dict()
    da.pop("numerics")
    db.pop("numerics")
    return da == db



def save_attention_rnn(model: AttentionRNN, path: str | Path) -> Path:
    """Weights (and BatchNorm statistics) of ``model`` in safetensors, its config in the file's metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(model.config.to_dict())})
    return Path(path)


def read_config(path: str | Path) -> AttentionRNNConfig:
    """The :class:`AttentionRNNConfig` stored in a weight file of :func:`save_attention_rnn`."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"no weight file at {p}")
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
        return AttentionRNNConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError, OSError, SafetensorError) as exc:
        raise ModelLoadError(f"{p} is not an attention-RNN weight file (safetensors with a config): {exc}") from exc


def load_attention_rnn(path: str | Path, **overrides: object) -> AttentionRNN:
    """The model saved at ``path``; ``overrides`` change config fields that leave the weights' shapes alone
    (``numerics``, ``dropout``). A stored config with settings of wrong types or values is a
    :class:`ModelLoadError`. The weights come back in the dtype they were saved in."""
    cfg = read_config(path)
    bad = set(overrides) - {"numerics", "dropout"}
    if bad:
        raise InputError(f"only numerics and dropout can be overridden when loading, not {sorted(bad)}")
    model = build_from_config(lambda: AttentionRNN(cfg), Path(path))  # the stored config, checked
    if overrides:
        model = AttentionRNN(AttentionRNNConfig(**{**cfg.to_dict(), **overrides}))  # type: ignore[arg-type]
    load_safetensors_weights(model, Path(path))
    return model.eval()
