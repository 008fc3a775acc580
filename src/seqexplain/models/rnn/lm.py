"""Word-level recurrent language model (LSTM / GRU / vanilla RNN) with a full softmax.

Architecture (Zaremba et al. 2014, the TensorFlow PTB tutorial the original state-gradient code builds on)::

    x_t = E[w_t]                                   (embedding, [V, E])
    h^0_t = dropout(x_t)
    h^l_t, state^l_t = cell_l(h^{l-1}_t, state^l_{t-1})          l = 1..num_layers
    logits_t = W_out dropout(h^L_t) + b_out        (full softmax over V words)

``dropout`` is a **drop** probability (``nn.Dropout``'s convention). The original code uses TensorFlow's
``keep_prob``: its ``keep_prob = 0.5`` is ``dropout = 1 - keep_prob = 0.5`` here (see :func:`dropout_from_keep_prob`).
Dropout is applied to the embeddings, between layers and before the softmax, never on recurrent connections.

Cells follow PyTorch's equations (gate order i, f, g, o for the LSTM; r, z, n for the GRU). For analysis, :meth:`step`
reruns one time step with plain tensor operations on the same weights, which exposes the LSTM cell state at every
time step (``nn.LSTM`` only returns the final one); the two agree to float precision (tested).

Keep-masks: ``forward(attention_mask=...)`` with ``attention_mask[b, p] = 0`` removes token ``p`` from row ``b``'s
input: the recurrent state is carried unchanged across a dropped step, and the output (logits) at a dropped position
equals the output at the last kept position before it, or the output of the initial state (zeros unless ``state`` is
given) when no earlier position is kept. Implementation: kept tokens are compacted to the left of each row, run as
packed sequences, and the outputs are gathered back with each position's "last kept index".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqexplain.atomic import atomic_path, atomic_write_text
from seqexplain.errors import InputError, ModelLoadError, UnsupportedError
from seqexplain.models.native import ConfigMixin, build_from_config, load_safetensors_weights, read_config_json
from seqexplain.models.rnn.vocab import Vocab

CellType = Literal["lstm", "gru", "rnn_tanh", "rnn_relu"]
#: per layer: (h, c) for an LSTM, (h,) otherwise; each tensor [B, H]
LayerState = tuple[Tensor, ...]
State = tuple[LayerState, ...]

MODEL_TYPE = "seqexplain-rnn-lm"
CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME = "config.json", "model.safetensors", "vocab.json"


def dropout_from_keep_prob(keep_prob: float) -> float:
    """Convert TensorFlow's keep probability to the drop probability used here: ``dropout = 1 - keep_prob``."""
    if not 0.0 < keep_prob <= 1.0:
        raise InputError(f"keep_prob must be in (0, 1], got {keep_prob}")
    return 1.0 - keep_prob


@dataclass
class RNNLMConfig(ConfigMixin):
    """Hyper-parameters of :class:`RNNLanguageModel`.

    ``dropout`` is the probability of **dropping** a unit (0.5 = the original's ``keep_prob`` 0.5).
    ``init_scale``: all weights are drawn from ``U(-init_scale, init_scale)`` (TF PTB tutorial).
    ``freeze_embeddings``: the embedding matrix gets no gradient (for pretrained embeddings).
    """

    vocab_size: int
    cell: CellType = "lstm"
    embedding_size: int = 64
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    init_scale: float = 0.1
    freeze_embeddings: bool = False
    model_type: str = field(default=MODEL_TYPE)

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
            raise InputError(f"unknown cell {self.cell!r}; choose lstm, gru, rnn_tanh or rnn_relu")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout is a drop probability in [0, 1), got {self.dropout}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1")



@dataclass
class RNNLMOutput:
    """What :meth:`RNNLanguageModel.forward` returns.

    ``logits[B, L, V]``; ``state``: the recurrent state after the last kept token of each row (detach it before
    carrying it to the next segment); ``hidden_states``: with ``output_hidden_states=True``, the embeddings (as given)
    and each layer's output ``[B, L, H]`` (at dropped positions: the output of the last kept position).
    """

    logits: Tensor
    state: State
    hidden_states: tuple[Tensor, ...] | None = None
    loss: Tensor | None = None


def _cell_step(cell: str, x: Tensor, state: LayerState, mod: nn.RNNBase) -> LayerState:
    """One time step of a single-layer cell with the weights of ``mod`` (PyTorch's equations).

    LSTM: ``[i,f,g,o] = W_ih x + b_ih + W_hh h + b_hh``; ``c' = σ(f) c + σ(i) tanh(g)``; ``h' = σ(o) tanh(c')``.
    GRU: ``r = σ(.)``, ``z = σ(.)``, ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``.
    RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.
    """
    w_ih, w_hh, b_ih, b_hh = mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0
    h = state[0]
    if cell == "lstm":
        gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        gi, gh = F.linear(x, w_ih, b_ih), F.linear(h, w_hh, b_hh)
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return ((1 - z) * n + z * h,)
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return (torch.tanh(pre) if cell == "rnn_tanh" else torch.relu(pre),)


class RNNLanguageModel(nn.Module):
    """Word-level recurrent LM following the Hugging Face causal-LM calling convention (see module docstring)."""

    seqexplain_kind = "causal"

    def __init__(self, config: RNNLMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_size)
        layers: list[nn.RNNBase] = []
        for layer in range(c.num_layers):
            in_size = c.embedding_size if layer == 0 else c.hidden_size
            if c.cell == "lstm":
                layers.append(nn.LSTM(in_size, c.hidden_size, batch_first=True))
            elif c.cell == "gru":
                layers.append(nn.GRU(in_size, c.hidden_size, batch_first=True))
            else:
                layers.append(nn.RNN(in_size, c.hidden_size, nonlinearity=c.cell[4:], batch_first=True))
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        for p in self.parameters():
            nn.init.uniform_(p, -c.init_scale, c.init_scale)
        self.embedding.weight.requires_grad_(not c.freeze_embeddings)

    # -- HF-style accessors -------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.embedding

    def set_input_embeddings(self, weight: Tensor, freeze: bool | None = None) -> None:
        """Copy ``weight[V, E]`` into the embedding matrix; ``freeze`` (if given) sets whether it is trained."""
        if tuple(weight.shape) != tuple(self.embedding.weight.shape):
            raise InputError(f"embedding matrix of shape {tuple(weight.shape)} does not fit "
                             f"{tuple(self.embedding.weight.shape)}")
        with torch.no_grad():
            self.embedding.weight.copy_(weight)
        if freeze is not None:
            self.config.freeze_embeddings = freeze
            self.embedding.weight.requires_grad_(not freeze)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the tensors of one layer's state: ``("hidden", "cell")`` for an LSTM, ``("hidden",)`` else."""
        return ("hidden", "cell") if self.config.cell == "lstm" else ("hidden",)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The zero state: per layer ``(h, c)`` or ``(h,)``, each ``[batch_size, hidden_size]``."""
        dev = device if device is not None else self.decoder.weight.device
        z = torch.zeros(batch_size, self.config.hidden_size, device=dev, dtype=self.decoder.weight.dtype)
        return tuple(tuple(z.clone() for _ in self.state_names) for _ in self.layers)

    # -- functional single step (analysis) ----------------------------------------------------------------------
    def step(self, x: Tensor, state: State, num_layers: int | None = None) -> State:
        """One time step without dropout: input embedding ``x[B, E]``, state → new state of the first ``num_layers``.

        A pure function of its arguments and the weights (usable under ``torch.func.jvp`` / ``vmap``).
        """
        n = len(self.layers) if num_layers is None else num_layers
        out: list[LayerState] = []
        inp = x
        for layer in range(n):
            new = _cell_step(self.config.cell, inp, state[layer], self.layers[layer])
            out.append(new)
            inp = new[0]
        return tuple(out)

    # -- forward ------------------------------------------------------------------------------------------------
    @staticmethod
    def _to_hx(layer_state: LayerState) -> Tensor | tuple[Tensor, Tensor]:
        if len(layer_state) == 2:
            return layer_state[0].unsqueeze(0).contiguous(), layer_state[1].unsqueeze(0).contiguous()
        return layer_state[0].unsqueeze(0).contiguous()

    @staticmethod
    def _from_hx(hx: Tensor | tuple[Tensor, Tensor]) -> LayerState:
        if isinstance(hx, tuple):
            return hx[0].squeeze(0), hx[1].squeeze(0)
        return (hx.squeeze(0),)

    def forward(
        self,
        input_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        state: State | None = None,
        output_hidden_states: bool = False,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> RNNLMOutput:
        """Logits for ``input_ids[B, L]`` or ``inputs_embeds[B, L, E]`` (exactly one of them).

        ``attention_mask[B, L]`` (1 keep, 0 drop): dropped tokens are removed from the RNN's input (module docstring).
        ``position_ids`` is accepted and ignored (an RNN has no positions). ``state``: initial state (default zeros).
        ``labels[B, L]``: if given, ``loss`` = mean cross-entropy of ``logits[:, t]`` against ``labels[:, t]``
        (labels are **not** shifted; -100 is ignored).
        """
        del position_ids, kwargs
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids and inputs_embeds")
        x = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        if x.dim() != 3:
            raise InputError(f"expected inputs of shape [B, L(, E)], got {tuple(x.shape)}")
        bsz, length = x.shape[:2]
        if state is None:
            state = self.initial_state(bsz, x.device)
        keep: Tensor | None = None
        if attention_mask is not None:
            if attention_mask.dim() == 4:
                raise UnsupportedError(f"an RNN LM reads its tokens in order and takes a [batch, length] mask, not a "
                                       f"4-D attention mask {tuple(attention_mask.shape)} (word-dropout training and "
                                       "evaluation of seqexplain.training.compatible need an attention model); train "
                                       "it with seqexplain.training.lm.train_lm")
            if tuple(attention_mask.shape) != (bsz, length):
                raise InputError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(bsz, length)}")
            keep = attention_mask.to(torch.bool)
            if bool(keep.all()):
                keep = None
        h = self.drop(x)
        hiddens: list[Tensor] = [x]
        new_state: list[LayerState] = []
        if keep is None:
            for layer, mod in enumerate(self.layers):
                if layer > 0:
                    h = self.drop(h)
                h, hx = mod(h, self._to_hx(state[layer]))
                new_state.append(self._from_hx(hx))
                hiddens.append(h)
        else:
            h, new_state, hiddens = self._masked_layers(h, x, keep, state)
        logits = self.decoder(self.drop(h))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return RNNLMOutput(logits=logits, state=tuple(new_state),
                           hidden_states=tuple(hiddens) if output_hidden_states else None, loss=loss)

    def _masked_layers(
        self, h: Tensor, x: Tensor, keep: Tensor, state: State
    ) -> tuple[Tensor, list[LayerState], list[Tensor]]:
        """Run the layers on the kept tokens only (packed), then scatter outputs back by last kept index."""
        bsz, length = keep.shape
        lengths = keep.sum(1)
        # stable sort puts kept positions first, in their original order
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        max_len = max(int(lengths.max()), 1)
        order = order[:, :max_len]
        h = h.gather(1, order.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
        run_lengths = lengths.clamp(min=1).cpu()
        empty = lengths == 0
        last = keep.long().cumsum(1) - 1  # [B, L] index into the compacted sequence, -1 = none kept yet
        gather_idx = last.clamp(min=0)
        new_state: list[LayerState] = []
        hiddens: list[Tensor] = [x]
        for layer, mod in enumerate(self.layers):
            if layer > 0:
                h = self.drop(h)
            packed = pack_padded_sequence(h, run_lengths, batch_first=True, enforce_sorted=False)
            out, hx = mod(packed, self._to_hx(state[layer]))
            h, _ = pad_packed_sequence(out, batch_first=True, total_length=max_len)
            ls = self._from_hx(hx)
            ls = tuple(torch.where(empty.unsqueeze(-1), s0, s1) for s0, s1 in zip(state[layer], ls, strict=True))
            new_state.append(ls)
            full = h.gather(1, gather_idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
            init_out = state[layer][0].unsqueeze(1).expand(-1, length, -1)
            hiddens.append(torch.where((last < 0).unsqueeze(-1), init_out, full))
        return hiddens[-1], new_state, hiddens

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: Path | str, vocab: Vocab | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` (+ ``vocab.json``) into ``directory``, each atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(d / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE})
        atomic_write_text(d / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2))
        if vocab is not None:
            if len(vocab) != self.config.vocab_size:
                raise InputError(f"vocabulary of {len(vocab)} words does not fit vocab_size {self.config.vocab_size}")
            vocab.save(d / VOCAB_NAME)
        return d


def load_rnn_lm(directory: Path | str, map_location: str = "cpu") -> tuple[RNNLanguageModel, Vocab | None]:
    """Load a model written by :meth:`RNNLanguageModel.save`; return it (in eval mode) and its vocabulary if saved.
    A corrupt or mismatched folder (weights, config or a vocabulary of another size) is a :class:`ModelLoadError`."""
    d = Path(directory)
    cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(f"{d} is not a saved RNN language model: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    cfg = read_config_json(cfg_path)
    if cfg.get("model_type") != MODEL_TYPE:
        raise ModelLoadError(f"{cfg_path} describes model_type {cfg.get('model_type')!r}, expected {MODEL_TYPE!r}")
    model = build_from_config(lambda: RNNLanguageModel(RNNLMConfig.from_dict(cfg)), cfg_path)
    load_safetensors_weights(model, w_path, map_location)
    model.eval()
    vocab = Vocab.load(d / VOCAB_NAME) if (d / VOCAB_NAME).is_file() else None
    if vocab is not None and len(vocab) != model.config.vocab_size:
        raise ModelLoadError(f"{d / VOCAB_NAME} holds {len(vocab)} words but the model {model.config.vocab_size}; "
                             "save the model with its own vocabulary")
    return model, vocab
