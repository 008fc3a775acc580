"""Two small native models over word tokens and their adapters: an LSTM classifier with attention pooling
(:class:`AttentionPoolingLSTM`, :class:`PoolingClassifierAdapter`) and a BiLSTM token labeller
(:class:`BiLSTMTagger` in :mod:`seqexplain.models.native_tagger`).

**Pooling classifier.** ``x_t`` (embeddings) → (Bi)LSTM ``h_t`` → additive attention logits
``e_t = w₂ᵀ act(W₁ h_t + b₁)`` (``act`` = tanh, or ReLU as Snell et al.) → ``α = softmax(e)`` over the kept
positions only → ``c = Σ_t α_t h_t`` → ``z = W_c c + b_c`` (class logits). Input axis: the tokens; the single target
is the label (``target_positions = [None]``) and sees every position.

Keep-masks (rule 1 of :mod:`seqexplain.models.keep`, drop j = delete token j): each row's kept tokens are compacted
to the left in their original order and run through the LSTM as a packed sequence of their count, so a dropped
token is neither an LSTM input nor a pooling candidate, exactly as if it had been deleted from the text. **A row
with nothing kept** reads the label from position 0 made visible (rule 4 for a classifier, position 0 standing for
the head position): "nothing kept" equals "only the first token kept". A rationale starts with the special tokens
(``<bos>`` / ``<eos>``), as every classifier's, or with position 0 when there are none.
Rows of several examples (of any lengths) share one padded, packed forward. Attention: one
:class:`~seqexplain.models.example.AttentionSegment` whose single map is the pooling ``α`` as ``[1, L]`` (row 0), with
rollout undefined (a single pooling attention is not a stack of self-attentions).

Precomputed inputs: an :class:`~seqexplain.models.example.Example` with ``input_ids=None`` and
``input_vectors[L, D]`` skips the embedding layer (the vectors are the LSTM's inputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqexplain.errors import InputError, UnreadableTextError
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.keep import head_visible_when_empty
from seqexplain.models.labels import ClassifierLabels, label_index
from seqexplain.models.module_state import eval_mode
from seqexplain.models.tokenization import tokenize


# --------------------------------------------------------------------------- shared pieces
def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor | None) -> Tensor:
    """``[N, n, H]`` LSTM outputs of ``x[N, n, D]`` whose row ``r`` holds ``lengths[r]`` real steps followed by
    padding (None: every step real). Rows run as a packed sequence, so padding never reaches the (backward)
    recurrence; outputs at padded steps are zero."""
    if lengths is None:
        return lstm(x)[0]
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def length_mask(lengths: Tensor, n: int) -> Tensor:
    """``[N, n]`` True at the real (non-padding) steps of each row."""
    return torch.arange(n, device=lengths.device).view(1, -1) < lengths.view(-1, 1)


def compact(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's kept positions moved to the left in their original order: ``(x' [N, L, D], lengths [N],
    order [N, L])`` with ``x'[r, k] = x[r, order[r, k]]``; steps ``k ≥ lengths[r]`` are padding."""
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    moved = x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return moved, keep.sum(1), order


def pad_steps(x: Tensor, n: int) -> Tensor:
    """``x[N, m, ...]`` zero-padded to ``n`` steps."""
    if x.shape[1] == n:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1], *x.shape[2:])], dim=1)


class NativeWordAdapter(SequenceModel):
    """Shared parts of the native adapters: tokenising with offsets, labels, the embedding layer and row inputs.

    ``tokenizer`` offers ``tokenize_with_offsets`` (e.g. :class:`seqexplain.models.rnn.WordTokenizer`); the
    model has an ``embedding`` layer (``nn.Embedding``, or a module mapping ids to vectors) with at least as many
    rows as the tokenizer has tokens (:class:`InputError` otherwise, rather than an ``IndexError`` mid-method)."""

    kind = "classifier"

    def __init__(self, model: nn.Module, tokenizer: Any, labels: Sequence[str], model_id: str | None = None
                 ) -> None:
        if not hasattr(tokenizer, "tokenize_with_offsets"):
            raise InputError(f"{type(tokenizer).__name__} has no tokenize_with_offsets; give a word tokenizer such "
                             "as seqexplain.models.rnn.WordTokenizer")
        table = getattr(getattr(model, "embedding", None), "num_embeddings", None)
        if table is not None and hasattr(tokenizer, "__len__") and len(tokenizer) > int(table):
            raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the model's embedding table "
                             f"{int(table)}: the tokenizer does not belong to this model; give the vocabulary it was "
                             "trained with")
        self.model = model
        self.tokenizer = tokenizer
        self.labels = [str(n) for n in labels]
        self.model_id = model_id or type(model).__name__

    def label_names(self) -> list[str]:
        return list(self.labels)

    def input_width(self) -> int | None:
        """The width of the embedding layer's vectors (``embedding_dim``), which precomputed vectors must have."""
        width = getattr(getattr(self.model, "embedding", None), "embedding_dim", None)
        return int(width) if isinstance(width, int) else None

    def target_name(self, example: Example, token_id: int) -> str:
        return self.labels[token_id] if 0 <= token_id < len(self.labels) else str(token_id)

    def label_index(self, label: Any) -> int:
        """A label given as an index or a name (:func:`seqexplain.models.labels.label_index`)."""
        return label_index(self.labels, label)

    def base_example(self, text: Any) -> Example:
        """The tokens of ``text`` with a placeholder target (the subclass sets the targets)."""
        if not isinstance(text, str):
            raise InputError(f"the input must be a text, not {type(text).__name__}")
        if not text.strip():
            raise UnreadableTextError("the text is empty; give the input to explain")
        src = tokenize(self.tokenizer, text, add_special_tokens=True)
        if not src.ids:
            raise UnreadableTextError("the text tokenizes to no tokens")
        return Example(kind="classifier", input_ids=torch.tensor(src.ids, dtype=torch.long),
                       tokens=list(src.tokens), offsets=list(src.offsets),
                       segments=["special" if o is None else "source" for o in src.offsets],
                       target_ids=torch.zeros(1, dtype=torch.long), target_tokens=[""], target_positions=[None],
                       n_source=len(src.ids), text=text)

    def embed(self, example: Example) -> Tensor:
        """``[1, L, D]``: ``example.input_vectors`` when given (precomputed inputs), else the embedding layer."""
        if example.input_vectors is not None:
            return self.vectors_of(example)
        assert example.input_ids is not None
        return self.model.embedding(example.input_ids.to(self.device).unsqueeze(0))

    def row_inputs(self, part: Part) -> Tensor:
        """``[b, L, D]`` inputs of a normalised part's rows (its ``embeds``, or the example's embeddings)."""
        assert part.keep is not None
        if part.embeds is not None:
            return part.embeds.to(self.device)
        return self.embed(part.example).expand(int(part.keep.shape[0]), -1, -1)


# --------------------------------------------------------------------------- pooling classifier
class AttentionPoolingLSTM(nn.Module):
    """Embeddings → (Bi)LSTM → additive attention pooling → linear class logits (module docstring)."""

    def __init__(self, vocab_size: int, n_labels: int, emb_dim: int = 16, hidden: int = 16, attn_dim: int = 16,
                 bidirectional: bool = True, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise InputError(f"activation is 'tanh' or 'relu', not {activation!r}")
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden, batch_first=True, bidirectional=bidirectional)
        width = hidden * (2 if bidirectional else 1)
        self.attn_in = nn.Linear(width, attn_dim)  # W₁, b₁
        self.attn_out = nn.Linear(attn_dim, 1, bias=False)  # w₂
        self.act = torch.tanh if activation == "tanh" else torch.relu
        self.classifier = nn.Linear(width, n_labels)

    def forward_embeds(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z [N, C], α [N, n])`` for inputs ``x[N, n, D]`` with ``lengths[N]`` real steps per row (None: all);
        ``α`` is zero at padded steps."""
        h = run_lstm(self.lstm, x, lengths)
        e = self.attn_out(self.act(self.attn_in(h))).squeeze(-1)  # [N, n]
        if lengths is not None:
            e = e.masked_fill(~length_mask(lengths.to(e.device), x.shape[1]), float("-inf"))
        alpha = torch.softmax(e, dim=-1)
        return self.classifier((alpha.unsqueeze(-1) * h).sum(1)), alpha

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`forward_embeds` of the ids' embeddings."""
        return self.forward_embeds(self.embedding(input_ids), lengths)


class PoolingClassifierAdapter(ClassifierLabels, NativeWordAdapter):
    """Adapter of :class:`AttentionPoolingLSTM` (rules in the module docstring)."""

    kind = "classifier"

    # ------------------------------------------------------------------ encode
    def encode_input(self, text: Any, **_: Any) -> Example:
        """The tokens of ``text`` with a placeholder label (labels: :class:`ClassifierLabels`)."""
        return self.base_example(text)

    # --------------------------------------------------------------- questions
    def start_positions(self, example: Example, target: int) -> list[int]:
        """The special tokens (``<bos>`` / ``<eos>``), as for every classifier; without any, ``[0]``: with nothing
        kept the label is read with position 0 visible (module docstring)."""
        specials = [j for j, seg in enumerate(example.segments) if seg == "special"]
        return specials or [0]

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """Rows are packed to their kept tokens and padded to the longest: ``max(1, most kept)`` per row."""
        return max(1, max_kept)

    # ------------------------------------------------------------------ logits
    def logits_many(self, parts: Sequence[Part]) -> list[Tensor]:
        """One packed forward of every row of every part: ``[b, 1, C]`` per part."""
        xs, lens = [], []
        for part in parts:
            keep = part.keep
            assert keep is not None
            x, n, _ = compact(self.row_inputs(part), head_visible_when_empty(keep, 0))  # rule 4: position 0
            xs.append(x)
            lens.append(n)
        n_max = max(int(n.max()) for n in lens)
        z, _ = self.model.forward_embeds(torch.cat([pad_steps(x[:, :n_max], n_max) for x in xs]), torch.cat(lens))
        out, start = [], 0
        for part in parts:
            out.append(z[start : start + part.n_rows].unsqueeze(1))
            start += part.n_rows
        return out

    # --------------------------------------------------------------- attention
    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """The pooling weights ``α`` over the whole input as one float64 ``[1, L]`` map (row 0), rollout undefined;
        computed in eval mode (no dropout sample), the module's modes restored afterwards."""
        with torch.no_grad(), eval_mode(self.model), self._autocast():
            _, alpha = self.model.forward_embeds(self.embed(example))
        return [AttentionSegment(0, example.length, [alpha.detach().double()], [0], rollout=False)]
