"""Adapter for Hugging Face token classifiers (``…ForTokenClassification``: named entities, parts of speech, …):
a label at every token.

Input axis: the input tokens. **Targets: every token of the text** (the special tokens the tokenizer adds,
``[CLS]``/``[SEP]``, are inputs, not targets): target ``i`` at position ``p_i`` is its token's label, given (one per
token: a list of label indices or names, or a text of whitespace-separated names) or the model's argmax. Labels
given **one per word** instead (a CoNLL-style line, whose words the tokenizer splits into more tokens) put the
targets at each whitespace-delimited word's first token, as token-classification training labels them. An
encoder reads in both directions: every target sees every position (``visibility`` all True); a left-to-right token
classifier (GPT-2's, Llama's; found by the kind check, which changes the last token) sees the positions up to its
own. A rationale of target ``i`` starts with the special tokens it sees and ``p_i``. Attention: the rows of the
targets' own positions.

Keep-masks: drop j = delete token j, the kept tokens packed to the left with their original position ids and
right-padded, as for :class:`~seqexplain.models.hf_classifier.HFClassifier`. **Target i is always read at its own
token** (rule 2 of :mod:`seqexplain.models.keep`, its labeller case): in a row that drops ``p_i``, target ``i`` is
read from the row's kept tokens plus ``p_i`` (a sequence of its own), so occluding a target's own token leaves that
target unchanged (score 0) and a row with nothing kept reads target ``i`` from its token (and nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqexplain.attribution_groups import word_groups
from seqexplain.errors import InputError
from seqexplain.models.base import SequenceModel
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.hf_classifier import HFClassifier
from seqexplain.models.keep import labeller_sequences
from seqexplain.models.labels import ambiguous_label, label_index, predicted_labels


class HFTokenLabeller(HFClassifier):
    """A label per token (module docstring)."""

    kind = "labeller"
    bidirectional = True  # set by the kind check: False for a left-to-right token classifier (GPT-2's, Llama's)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_id: str | None = None) -> None:
        super().__init__(model, tokenizer, model_id, head_position="first")
        self._eos_head = False  # T5's token classifier runs its encoder only: no </s> to find

    # --------------------------------------------------------------- encode
    def encode(self, text: Any, target: Any = None, **options: Any) -> Example:
        """Encode ``text``; ``target`` gives one label per token of the text (``None``: the predicted labels)."""
        return self.encode_many([(text, target)], **options)[0]

    def encode_many(self, requests: Sequence[tuple[Any, Any]], **options: Any) -> list[Example]:
        """:meth:`encode` of each ``(text, target)``; the labels of those without a target predicted in shared
        forwards (:func:`~seqexplain.models.labels.predicted_labels`), each equal to one :meth:`encode`'s."""
        out = []
        for ex, (_, target) in zip(self.encode_inputs([text for text, _ in requests], **options), requests,
                                   strict=True):
            tokens = [j for j, seg in enumerate(ex.segments) if seg != "special"]
            if not tokens:
                raise InputError("the text has no tokens of its own to label (only special tokens)")
            positions = tokens if target is None else self._target_positions(ex, tokens, target)
            labels = [0] * len(positions) if target is None else self._labels_per_token(target, len(positions),
                                                                                        "target")
            warned = ex.warnings + ([] if target is None else self._ambiguous(target, "target"))
            out.append(self._with_labels(ex.replace(kind="labeller", target_positions=positions, warnings=warned,
                                                    visibility=self._visibility(positions, ex.length)), labels))
        todo = [k for k, (_, target) in enumerate(requests) if target is None]
        for k, labels in zip(todo, predicted_labels(self, [out[k] for k in todo]), strict=True):
            out[k] = self._with_labels(out[k], labels)
        return out

    def _with_labels(self, example: Example, labels: list[int]) -> Example:
        names = [self.label_names()[k] for k in labels]
        return example.replace(target_ids=torch.tensor(labels, dtype=torch.long), target_tokens=names,
                               target_text=" ".join(names))

    def _target_positions(self, example: Example, tokens: list[int], target: Any) -> list[int]:
        """``tokens`` (the text's tokens), or each word's first token when ``target`` gives one label per word and
        the words are fewer than the tokens."""
        n = len(target.split()) if isinstance(target, str) else len(target) if isinstance(target, (list, tuple)) else -1
        if n == len(tokens):
            return tokens
        groups = word_groups(example.offsets, example.segments, {"source": example.text or ""})
        firsts = [g[0] for g in groups if example.segments[g[0]] != "special"]
        if n == len(firsts):
            return firsts
        if n >= 0:
            raise InputError(f"the target gives {n} label(s) but the text has {len(tokens)} token(s) in "
                             f"{len(firsts)} word(s) to label; give one label per token or one per word")
        return tokens

    def _visibility(self, positions: list[int], n_l: int) -> torch.Tensor:
        """``[T, L]``: every position, or (left-to-right model) the positions up to the target's own."""
        if self.bidirectional:
            return torch.ones(len(positions), n_l, dtype=torch.bool)
        return torch.arange(n_l).view(1, -1) <= torch.tensor(positions).view(-1, 1)

    def _labels_per_token(self, given: Any, n: int, what: str) -> list[int]:
        items = given.split() if isinstance(given, str) else list(given) if isinstance(given, (list, tuple)) else None
        if items is None:
            raise InputError(f"a token labeller's {what} is one label per token: a list of label indices or names, "
                             f"or a text of whitespace-separated names, not {type(given).__name__}")
        if len(items) != n:
            raise InputError(f"the {what} gives {len(items)} label(s) but the text has {n} token(s) to label; give "
                             "one label per token")
        return [label_index(self.label_names(), k) for k in items]

    def _ambiguous(self, given: Any, what: str) -> list[str]:
        """The two-readings warning (:func:`~seqexplain.models.labels.ambiguous_label`) of each distinct label in
        ``given`` that reads both as an index and as another label's name."""
        items = given.split() if isinstance(given, str) else list(given)
        names = self.label_names()
        return list(dict.fromkeys(w for k in items if (w := ambiguous_label(names, k, what)) is not None))

    def foil_warnings(self, example: Example, foil: Any, names: list[str]) -> list[str]:
        return self._ambiguous(foil, "foil")

    def with_objective(self, example: Example, objective: str = "logprob", foil: Any = None) -> Example:
        """:meth:`SequenceModel.with_objective` with a foil label per token (:meth:`foil_ids`), not the sequence
        classifier's single foil label."""
        return SequenceModel.with_objective(self, example, objective, foil)

    def foil_ids(self, example: Example, foil: Any) -> tuple[torch.Tensor, list[str]]:
        """One foil label per token (a list, or a text of whitespace-separated names)."""
        labels = self._labels_per_token(foil, example.n_targets, "foil")
        return torch.tensor(labels, dtype=torch.long), [self.label_names()[k] for k in labels]

    # ------------------------------------------------------------ questions
    def start_positions(self, example: Example, target: int) -> list[int]:
        """The special tokens the target sees (a left-to-right model does not see a trailing ``[SEP]``) and the
        target's own token."""
        p = int(example.target_positions[target])  # type: ignore[arg-type]
        seen = example.visibility[target] if example.visibility is not None else None
        return sorted({j for j, seg in enumerate(example.segments)
                       if seg == "special" and (seen is None or bool(seen[j]))} | {p})

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """A row runs its kept tokens plus, at most, its target's own token, padded to the longest."""
        return max_kept + 1

    def apply_keep_rule(self, part: Part) -> Part:
        """No rule-4 rewrite: the labeller's reading rule (module docstring) is applied in :meth:`logits_many`."""
        return part

    def can_pad(self) -> bool:
        return not self._reads_padding()

    # ---------------------------------------------------------------- logits
    def logits_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """``[b, T, C]`` (``[b, 1, C]`` with ``rows_target``) per part: for row ``r`` and target ``t`` at ``p``, the
        sequence is the row's kept tokens when it keeps ``p`` (shared by the row's targets), else those plus ``p``;
        the target is read at ``p``'s index among them."""
        with_embeds = any(p.embeds is not None or p.example.input_ids is None for p in parts)
        rows_x: list[torch.Tensor] = []
        rows_pos: list[torch.Tensor] = []
        rows_extra: list[dict[str, torch.Tensor]] = []
        reads = []  # per part, per row, per target: (sequence, index of the target's token in it)
        for part in parts:
            ex = part.example
            assert part.keep is not None
            x = self.part_inputs(part, with_embeds)
            extra = {k: v.to(self.device) for k, v in ex.extra.items()}
            targets = None if part.rows_target is None else part.rows_target.tolist()
            sequences, rows = labeller_sequences(part.keep.cpu().numpy(), ex.target_positions,  # type: ignore[arg-type]
                                                 targets)
            first = len(rows_pos)
            for r, mask in sequences:
                kept = torch.as_tensor(np.flatnonzero(mask), device=self.device)
                rows_x.append(x[r, kept])
                rows_pos.append(kept)
                rows_extra.append({k: v[kept] for k, v in extra.items()})
            cells = [[(first + s, k) for s, k in row] for row in rows]
            reads.append(cells)
        self._check_row_lengths([int(p.numel()) for p in rows_pos])
        if len({int(p.numel()) for p in rows_pos}) > 1 and self._reads_padding():  # padding would leak: one by one
            per_seq = [self._run([x], [p], [e], with_embeds)[0]
                       for x, p, e in zip(rows_x, rows_pos, rows_extra, strict=True)]
            return [torch.stack([torch.stack([per_seq[s][k] for s, k in row]) for row in cells]) for cells in reads]
        logits = self._run(rows_x, rows_pos, rows_extra, with_embeds)  # [N, n, C]
        out = []
        for cells in reads:
            s_idx = torch.tensor([[s for s, _ in row] for row in cells], device=logits.device)
            k_idx = torch.tensor([[k for _, k in row] for row in cells], device=logits.device)
            out.append(logits[s_idx, k_idx])
        return out

    # ------------------------------------------------------------ attention
    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """Target ``i`` is explained by the attention row of its own token."""
        (segment,) = super().attention_view(example)
        return [AttentionSegment(segment.start, segment.stop, segment.maps,
                                 [int(p) for p in example.target_positions])]  # type: ignore[arg-type]
