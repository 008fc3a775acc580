"""A native BiLSTM token labeller and its adapter: a label score at every position.

Model: ``x_t`` (embeddings) → BiLSTM ``h_t = [→h_t; ←h_t]`` → ``z_t = W h_t + b`` (per-position label logits).

Input axis: the tokens. **Every position is a target**: target ``i`` is read at ``p_i = i``,
``target_ids[i]`` is the label of token ``i`` (given, or the model's argmax when ``target=None``), and — the LSTM
being bidirectional — every target sees every position (``visibility`` all True).

Keep-masks. Rule 1 of :mod:`seqexplain.models.keep` (drop j = delete token j: the kept tokens are compacted to the
left and run as a packed sequence) and rule 2 (*every position sees itself*): **target i is always read at its own
token**, from the sequence of the kept tokens plus token ``i`` — when position ``i`` is dropped, target ``i``
still sees itself and the kept tokens, though no other target sees token ``i``. Consequences: occluding ``j = i``
leaves target ``i`` unchanged (its occlusion score is 0); a row with nothing kept reads target ``i`` from token
``i`` alone; a rationale of target ``i`` starts with ``[i]``. Rules 3–4 (reading from ``p_i − 1``, the predicting
token of a left-to-right model) do not describe a labeller, which reads at ``p_i``; this adapter therefore applies
its own rule in :meth:`TokenLabellerAdapter.logits_many` (rows in which a target's own token is dropped run as
one extra sequence per such target) and leaves the base class's rule-4 fallback out.

No attention: the attention methods raise :class:`~seqexplain.errors.UnsupportedError`. Precomputed inputs
(``input_ids=None``, ``input_vectors[L, D]``) skip the embedding layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqexplain.errors import InputError
from seqexplain.models.example import Example, Part
from seqexplain.models.keep import labeller_sequences
from seqexplain.models.module_state import eval_mode
from seqexplain.models.native_heads import NativeWordAdapter, compact, pad_steps, run_lstm


class BiLSTMTagger(nn.Module):
    """Embeddings → BiLSTM → linear per-position label logits (module docstring)."""

    def __init__(self, vocab_size: int, n_labels: int = 2, emb_dim: int = 16, hidden: int = 16) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim)
        self.lstm = nn.LSTM(emb_dim, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, n_labels)

    def forward_embeds(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``[N, n, C]`` label logits at every step of ``x[N, n, D]`` (``lengths[N]`` real steps, None: all)."""
        return self.out(run_lstm(self.lstm, x, lengths))

    def forward(self, input_ids: Tensor, lengths: Tensor | None = None) -> Tensor:
        """:meth:`forward_embeds` of the ids' embeddings."""
        return self.forward_embeds(self.embedding(input_ids), lengths)


class TokenLabellerAdapter(NativeWordAdapter):
    """Adapter of :class:`BiLSTMTagger` (rules in the module docstring)."""

    kind = "labeller"

    # ------------------------------------------------------------------ encode
    def encode(self, text: Any, target: Any = None, **_: Any) -> Example:
        """Tokenise ``text``; ``target`` gives one label per token (a list of indices or names, or a text of
        whitespace-separated names); ``None``: the predicted label of every token."""
        ex = self.base_example(text)
        n_l = ex.length
        ex = ex.replace(target_ids=torch.zeros(n_l, dtype=torch.long), target_tokens=[""] * n_l,
                        target_positions=list(range(n_l)), visibility=torch.ones(n_l, n_l, dtype=torch.bool))
        if target is None:
            with torch.no_grad(), eval_mode(self.model):
                labels = self.logits(ex)[0].argmax(-1).tolist()
        else:
            labels = self._labels_per_token(target, n_l)
        names = [self.labels[k] for k in labels]
        return ex.replace(target_ids=torch.tensor(labels, dtype=torch.long), target_tokens=names,
                          target_text=" ".join(names))

    def _labels_per_token(self, given: Any, n_l: int) -> list[int]:
        items = given.split() if isinstance(given, str) else list(given)
        if len(items) != n_l:
            raise InputError(f"the target gives {len(items)} labels but the input has {n_l} tokens; give one "
                             "label per token")
        return [self.label_index(k) for k in items]

    def foil_ids(self, example: Example, foil: Any) -> tuple[Tensor, list[str]]:
        """One foil label per token (a list, or a text of whitespace-separated names)."""
        labels = self._labels_per_token(foil, example.n_targets)
        return torch.tensor(labels, dtype=torch.long), [self.labels[k] for k in labels]

    # --------------------------------------------------------------- questions
    def start_positions(self, example: Example, target: int) -> list[int]:
        """``[p_i]``: target ``i`` always sees its own token."""
        p = example.target_positions[target]
        assert p is not None
        return [int(p)]

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """A row runs its kept tokens plus, at most, its target's own token, padded to the longest."""
        return max_kept + 1

    def apply_keep_rule(self, part: Part) -> Part:
        """No rule-4 rewrite of ``keep``: the labeller's own reading rule (module docstring) is applied in
        :meth:`logits_many`."""
        return part

    # ------------------------------------------------------------------ logits
    def logits_many(self, parts: Sequence[Part]) -> list[Tensor]:
        """``[b, T, C]`` (``[b, 1, C]`` with ``rows_target``) per part, all parts in one packed forward.

        For row ``r`` and target ``t`` at ``p``: the sequence is ``keep[r]`` when ``keep[r, p]`` (shared by all
        such targets of the row), else ``keep[r] ∪ {p}`` (its own sequence); the target is read at the index of
        ``p`` among the sequence's kept positions."""
        xs, lens, reads = [], [], []  # per part: compacted inputs, lengths, and (sequence, step) per output cell
        offset = 0
        for part in parts:
            keep = part.keep
            assert keep is not None
            ex = part.example
            targets = None if part.rows_target is None else part.rows_target.tolist()
            sequences, rows = labeller_sequences(keep.cpu().numpy(), ex.target_positions,  # type: ignore[arg-type]
                                                 targets)
            own_rows = [r for r, _ in sequences]
            cells = [[(offset + s, k) for s, k in row] for row in rows]
            seq_keep = [m for _, m in sequences]
            seq = torch.as_tensor(np.stack(seq_keep), device=self.device)
            x, n, _ = compact(self.row_inputs(part)[torch.tensor(own_rows, device=self.device)], seq)
            xs.append(x)
            lens.append(n)
            reads.append(cells)
            offset += len(seq_keep)
        n_max = max(int(n.max()) for n in lens)
        z = self.model.forward_embeds(torch.cat([pad_steps(x[:, :n_max], n_max) for x in xs]), torch.cat(lens))
        out = []
        for cells in reads:
            s_idx = torch.tensor([[s for s, _ in row] for row in cells], device=z.device)
            k_idx = torch.tensor([[k for _, k in row] for row in cells], device=z.device)
            out.append(z[s_idx, k_idx])  # [b, T, C]
        return out
