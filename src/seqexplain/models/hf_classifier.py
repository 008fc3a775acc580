"""Adapter for sequence classifiers (Hugging Face convention).

Input axis: the input tokens; the single target is the label (no position) and sees every position. The head
reads the first token (BERT-style poolers, ``head_position="first"``) or the last token (decoder-style heads,
``"last"``). A rationale starts with the special tokens (``[CLS]``/``[SEP]``), or the head's position when there
are none. Attention: the row of the head's position.

Keep-masks: drop j = delete token j. Each row's kept tokens are packed to the left with their original position
ids and right-padded (pad token, attention mask 0), so the head reads the first / last *kept* token: dropping
``[CLS]`` or the last token moves the head to the next kept one, as deleting it would. A row with nothing kept keeps
the head's position (rule 4 of :mod:`seqexplain.models.keep`). Rows of several examples share a forward padded the
same way (a decoder-style head finds the last token through the pad id: without one, or when masked padding
changes the logits, as ConvBERT's convolutions let it, rows of different lengths run one at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from seqexplain.errors import InputError, UnsupportedError
from seqexplain.models.batching import pad_rows, split_by_part
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.hf import HFAdapter, TokenEmbedding, segments_of
from seqexplain.models.hf_module import accepts_exact, probe_ids, shortest_input
from seqexplain.models.keep import head_visible_when_empty
from seqexplain.models.labels import ClassifierLabels
from seqexplain.models.module_state import eval_mode
from seqexplain.models.tokenization import Tokenized


class HFClassifier(ClassifierLabels, TokenEmbedding, HFAdapter):
    kind = "classifier"
    mask_names = ("attention_mask",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_id: str | None = None,
                 head_position: str | None = None) -> None:
        super().__init__(model, tokenizer, model_id)
        if head_position not in (None, "first", "last"):
            raise InputError(f"head_position is 'first' or 'last', not {head_position!r}")
        self._summary = self._sequence_summary()
        # an encoder-decoder classifier (BART, mBART, T5) reads its decoder at the </s> tokens it finds in input_ids
        self._eos_head = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        self.head_position = head_position or self._default_head_position()
        # Longformer's classifier puts global attention on the first token, found through input_ids
        self._global_first = accepts_exact(model.forward, "global_attention_mask") and not self._eos_head
        self._padding_leaks = self._summary in (None, "first") and self._probe_padding()
        self._shortest: int | None = None  # the fewest tokens the forward runs (found when first needed)
        self._pads_inert = False  # trailing pad ids shown not to change the logits (_without_trailing_pads)

    def _sequence_summary(self) -> str | None:
        """The ``summary_type`` of a head that pools the hidden states through a ``sequence_summary`` (XLNet:
        "last", the last position of the padded batch; XLM: "first"), None for other heads."""
        if not hasattr(self.model, "sequence_summary"):
            return None
        return str(getattr(getattr(self.model, "config", None), "summary_type", "last"))

    def _default_head_position(self) -> str:
        """"first" for BERT-style poolers, "last" for decoder-style heads (a ``score`` layer, no ``classifier``)
        and for summaries of the last position (XLNet)."""
        if self._summary in ("last", "cls_index") or self._eos_head:
            return "last"
        if hasattr(self.model, "score") and not hasattr(self.model, "classifier"):
            return "last"
        return "first"

    def _reads_padding(self) -> bool:
        """Whether right-padding would change a row's logits: a head that summarises the batch's last position or
        every position (XLNet), which finds no token through the pad id as decoder-style ``score`` heads do, or a
        stack through which masked padding leaks (ConvBERT's convolutions over the sequence; checked once, when the
        adapter is made, by running a few tokens without and with padding). Rows of different lengths then run one
        length at a time."""
        return self._summary not in (None, "first") or self._padding_leaks

    @torch.no_grad()
    def _probe_padding(self) -> bool:
        pad = self.pad_id()
        ids = probe_ids(self.vocab_size(), {pad})
        x = torch.tensor([ids], device=self.device)
        padded = torch.cat([x, torch.full((1, 5), pad, device=self.device)], dim=1)
        mask = (torch.arange(padded.shape[1], device=self.device) < x.shape[1]).long().unsqueeze(0)
        with eval_mode(self.model):
            try:
                alone = self.model(**self.drop_missing_masks({"input_ids": x, "attention_mask": torch.ones_like(x)}))
                with_pad = self.model(**self.drop_missing_masks({"input_ids": padded, "attention_mask": mask}))
            except (TypeError, ValueError, RuntimeError, AttributeError, IndexError):
                return False
        a, b = alone.logits.float(), with_pad.logits.float()
        b = b[:, : a.shape[1]] if b.dim() == 3 else b  # logits per token (a token classifier): the real ones
        return not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))

    def label_names(self) -> list[str]:
        id2label = getattr(getattr(self.model, "config", None), "id2label", None) or {}
        config = getattr(self.model, "config", None)
        n = int(getattr(config, "num_labels", 0) or getattr(self.model, "num_labels", 0) or 0)
        return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]

    # --------------------------------------------------------------- encode
    def encode_input(self, text: Any, **options: Any) -> Example:
        """The tokens of ``text`` with a placeholder label (labels: :class:`ClassifierLabels`)."""
        return self.encode_inputs([text], **options)[0]

    def encode_inputs(self, texts: Sequence[Any], *, truncate: bool = False, **_: Any) -> list[Example]:
        """:meth:`encode_input` of each text, the texts tokenised together (:meth:`HFAdapter.tokenize_inputs`)."""
        checked = [self.check_text(text) for text in texts]
        tokenized = self.tokenize_inputs(checked, "input", truncate)
        return [self.input_example(text, src, warn) for text, (src, warn) in zip(checked, tokenized, strict=True)]

    def input_example(self, text: str, src: Tokenized, warnings: list[str]) -> Example:
        """The :class:`Example` of a tokenised input with a placeholder label (warned when the model takes no
        position ids, or none the adapter can give, or places tokens by index in a relative attention (DeBERTa's
        ``relative_attention``): a dropped token is then deleted with the positions of the tokens after it)."""
        eos = self.special_id("eos_token_id")
        if self._eos_head and eos not in src.ids:
            raise InputError(f"{self.model_id} ({type(self.model).__name__}) reads its </s> token (id {eos}), but the "
                             "tokenizer put none in the input; use the tokenizer the model was trained with, which "
                             "appends it")
        src, warnings = self._without_trailing_pads(src, warnings)
        keep_warnings = []
        if self.position_offset() is None:
            keep_warnings = [f"{type(self.model).__name__}.forward() takes no position_ids seqexplain can give: "
                             "where a method drops tokens (occlusion, rationales), the kept tokens move left to close "
                             "the gaps and are read at other positions than in the full input"]
        elif getattr(getattr(self.model, "config", None), "relative_attention", False) is True:
            keep_warnings = [f"{type(self.model).__name__}'s relative attention places tokens by their index, "
                             "not by their position ids: where a method drops tokens (occlusion, rationales), the "
                             "kept tokens move left to close the gaps and are read at other relative positions than "
                             "in the full input"]
        return Example(kind="classifier", input_ids=torch.tensor(src.ids, dtype=torch.long), tokens=list(src.tokens),
                       offsets=list(src.offsets), segments=segments_of(src.offsets, "source"),
                       target_ids=torch.zeros(1, dtype=torch.long), target_tokens=[""], target_positions=[None],
                       n_source=len(src.ids), text=text, warnings=warnings, keep_warnings=keep_warnings)

    @torch.no_grad()
    def _without_trailing_pads(self, src: Tokenized, warnings: list[str]) -> tuple[Tokenized, list[str]]:
        """A decoder-style head finds the token it reads as the last one that is not the config's pad id; given
        ``inputs_embeds`` (the gradient methods) it reads the last position instead. An input whose tokens end with
        the pad id (pad = eos, and the text or the tokenizer ends with it) is therefore explained without those
        trailing tokens, with a warning, when the model gives the same logits without them (a causal stack: they
        cannot reach the token read; checked by two forwards for the first such input, then known); otherwise
        :class:`InputError`. An input of pad ids only is read at position 0:
        it keeps its first token (one token alone is left as it is)."""
        pad = getattr(getattr(self.model, "config", None), "pad_token_id", None)
        if (self.head_position != "last" or self._summary is not None or self._eos_head or not isinstance(pad, int)
                or not src.ids or src.ids[-1] != pad):
            return src, warnings
        n = len(src.ids)
        kept = n - next(k for k in range(n + 1) if k == n or src.ids[n - 1 - k] != pad)
        name, what = type(self.model).__name__, f"{src.tokens[-1]!r} (id {pad})"
        if kept == 0:  # only pad ids: the head reads position 0, which a 1-token input is read at anyway
            if n == 1:
                return src, warnings
            kept = 1
        if not self._pads_inert:  # shown once per adapter: a stack whose later tokens cannot reach earlier ones
            full, short = (torch.tensor([ids], device=self.device) for ids in (src.ids, src.ids[:kept]))
            with eval_mode(self.model):
                a, b = (self.model(**self.drop_missing_masks({"input_ids": x, "attention_mask": torch.ones_like(x)})
                                   ).logits.float() for x in (full, short))
            self._pads_inert = torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
        if not self._pads_inert:
            raise InputError(f"the input ends with the pad token {what}, which {name}'s head skips to read the token "
                             "before it, while those tokens still change its output, so the gradient methods cannot "
                             "explain what it computes; remove them from the text")
        src = Tokenized(src.ids[:kept], src.tokens[:kept], src.offsets[:kept])
        return src, [*warnings, f"the input ends with {n - kept} pad token(s) {what}: {name}'s head reads the last "
                     "token that is not the pad token and its output does not depend on the ones after it, so they "
                     "are left out of the explanation"]

    # ------------------------------------------------------------ questions
    def head_index(self, example: Example) -> int:
        return 0 if self.head_position == "first" else example.length - 1

    def start_positions(self, example: Example, target: int) -> list[int]:
        specials = [j for j, seg in enumerate(example.segments) if seg == "special"]
        return specials or [self.head_index(example)]

    def can_pad(self) -> bool:
        if self._reads_padding():
            return False
        return self.head_position == "first" or self.special_id("pad_token_id") is not None

    # ---------------------------------------------------------------- logits
    def logits_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        """Each row's kept tokens packed to the left with their original position ids (module docstring)."""
        with_embeds = any(p.embeds is not None or p.example.input_ids is None for p in parts)
        if self._eos_head:
            self._check_eos_rows(parts, with_embeds)
        lengths = {p.example.length for p in parts}
        if all(bool(p.keep.all()) for p in parts if p.keep is not None) and (
                len(lengths) == 1 or (self.head_position == "first" and not self._reads_padding())):
            return self._logits_full(parts, with_embeds)  # nothing dropped: whole rows, right-padded
        rows_x, rows_pos, rows_extra, counts = [], [], [], []
        for part in parts:
            keep = part.keep
            assert keep is not None
            ex = part.example
            b = keep.shape[0]
            x = self.part_inputs(part, with_embeds)
            keep = head_visible_when_empty(keep, self.head_index(ex))  # rule 4: nothing kept -> the head's position
            for r in range(b):
                kept = torch.nonzero(keep[r]).flatten()
                rows_x.append(x[r, kept])
                rows_pos.append(kept)
                rows_extra.append({k: v.to(self.device)[kept] for k, v in ex.extra.items()})
                counts.append(int(kept.numel()))
        self._check_row_lengths(counts)
        if len(set(counts)) > 1 and (self._reads_padding() or self.head_position == "last" and (
                with_embeds or self.special_id("pad_token_id") is None)):
            # the head finds the last token through pad ids (or reads padding): rows of other lengths run one at a
            # time
            outs = [self._run([x], [p], [e], with_embeds) for x, p, e in zip(rows_x, rows_pos, rows_extra,
                                                                              strict=True)]
            return split_by_part(torch.cat(outs).unsqueeze(1), parts)
        return split_by_part(self._run(rows_x, rows_pos, rows_extra, with_embeds).unsqueeze(1), parts)

    def part_inputs(self, part: Part, with_embeds: bool) -> torch.Tensor:
        """A part's rows as the forward takes them: ``[b, L, D]`` vectors (the part's own, or the input layer's
        output) when ``with_embeds``, else ``[b, L]`` token ids."""
        b = part.n_rows
        if with_embeds:
            return part.embeds if part.embeds is not None else self.embed(part.example).expand(b, -1, -1)
        assert part.example.input_ids is not None
        return part.example.input_ids.to(self.device).view(1, -1).expand(b, -1)

    def _check_row_lengths(self, counts: list[int]) -> None:
        """:class:`UnsupportedError` when a row holds fewer tokens than the model's forward runs (Funnel's pooling
        blocks: :func:`~seqexplain.models.hf_module.shortest_input`), instead of a traceback from inside it."""
        if self._shortest is None:
            self._shortest = shortest_input(self.model, self.device)
        if min(counts) < self._shortest:
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) cannot run fewer than {self._shortest} tokens (its "
                f"pooling blocks shorten the sequence) and a row of this call keeps {min(counts)}; use a longer "
                "input, and for occlusion or rationales (their rows keep fewer tokens) a gradient or attention method")

    def _check_eos_rows(self, parts: Sequence[Part], with_embeds: bool) -> None:
        """An encoder-decoder classifier finds its </s> tokens in ``input_ids``: it takes no input vectors, and a
        row cannot drop one (:class:`UnsupportedError` naming what does work)."""
        name = f"{self.model_id} ({type(self.model).__name__})"
        if with_embeds:
            raise UnsupportedError(f"{name} finds its </s> token in the token ids and takes no input vectors, so "
                                   "gradient methods, integrated gradients, replacement baselines and precomputed "
                                   "vectors cannot run on it; use the greedy or exhaustive rationale")
        eos = self.special_id("eos_token_id")
        for part in parts:
            assert part.keep is not None and part.example.input_ids is not None
            at_eos = part.example.input_ids.to(part.keep.device) == eos
            if bool((at_eos.unsqueeze(0) & ~part.keep).any()):
                raise UnsupportedError(f"{name} reads its </s> token, so a row cannot drop it (occlusion drops every "
                                       "position); use the greedy or exhaustive rationale, which keep the special "
                                       "tokens")

    def _logits_full(self, parts: Sequence[Part], with_embeds: bool) -> list[torch.Tensor]:
        """Rows that keep every position: each part's rows as they are, right-padded to the longest part (the
        padding masked), one forward — the same as packing, without a per-row copy."""
        n_l = max(p.example.length for p in parts)
        self._check_row_lengths([p.example.length for p in parts])
        device = self.device
        xs, extras = [], []
        for part in parts:
            ex, b = part.example, part.n_rows
            xs.append(self.part_inputs(part, with_embeds))
            extras.append({k: v.to(device).view(1, -1).expand(b, -1) for k, v in ex.extra.items()})
        lengths = torch.tensor([p.example.length for p in parts for _ in range(p.n_rows)], device=device)
        positions = torch.arange(n_l, device=device).view(1, -1)
        kwargs: dict[str, Any] = {"attention_mask": (positions < lengths.view(-1, 1)).long()}
        kwargs["inputs_embeds" if with_embeds else "input_ids"] = pad_rows(xs, n_l, 0.0 if with_embeds
                                                                           else self.pad_id())
        offset = self.position_offset()
        if offset is not None:
            kwargs["position_ids"] = positions.expand(int(lengths.shape[0]), -1) + offset
        for key in extras[0]:
            kwargs[key] = pad_rows([e[key] for e in extras], n_l, 0)
        self._global_attention(kwargs, with_embeds)
        return split_by_part(self.model(**self.drop_missing_masks(kwargs)).logits.unsqueeze(1), parts)

    def _global_attention(self, kwargs: dict[str, Any], with_embeds: bool) -> None:
        """Over input vectors, the global attention on each row's first token that a Longformer classifier sets
        itself from ``input_ids`` (and cannot without them)."""
        if with_embeds and self._global_first:
            mask = torch.zeros_like(kwargs["attention_mask"])
            mask[:, 0] = 1
            kwargs["global_attention_mask"] = mask

    def _run(self, rows_x: list[torch.Tensor], rows_pos: list[torch.Tensor], rows_extra: list[dict[str, torch.Tensor]],
             with_embeds: bool) -> torch.Tensor:
        """One forward of packed rows, right-padded (pad id, attention mask 0, the last position id repeated)."""
        n = max(int(p.numel()) for p in rows_pos)
        pad = self.pad_id()
        xs, ps, ms = [], [], []
        extra: dict[str, list[torch.Tensor]] = {k: [] for k in rows_extra[0]}
        for x, p, e in zip(rows_x, rows_pos, rows_extra, strict=True):
            more = n - int(p.numel())
            ms.append(torch.cat([torch.ones_like(p), torch.zeros(more, dtype=p.dtype, device=p.device)]))
            ps.append(torch.cat([p, p[-1:].expand(more)]))
            if with_embeds:
                xs.append(torch.cat([x, x.new_zeros(more, *x.shape[1:])]))
            else:
                xs.append(torch.cat([x, torch.full((more,), pad, dtype=x.dtype, device=x.device)]))
            for k, v in e.items():
                extra[k].append(torch.cat([v, v.new_zeros(more)]))
        kwargs: dict[str, Any] = {"attention_mask": torch.stack(ms).long()}
        kwargs["inputs_embeds" if with_embeds else "input_ids"] = torch.stack(xs)
        offset = self.position_offset()
        if offset is not None:
            kwargs["position_ids"] = torch.stack(ps) + offset
        for k, v in extra.items():
            kwargs[k] = torch.stack(v)
        self._global_attention(kwargs, with_embeds)
        return self.model(**self.drop_missing_masks(kwargs)).logits

    # ------------------------------------------------------------ attention
    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """The label is explained by the attention row of the head's position."""
        kwargs: dict[str, Any] = self.span_inputs(example)
        for key, value in example.extra.items():
            kwargs[key] = value.to(self.device).unsqueeze(0)
        out = self.output_attentions(**self.drop_missing_masks(kwargs))
        layers = getattr(out, "attentions", None)
        if not layers:
            self.no_attention()
        maps = self.attention_maps(layers, example.length, example.length)
        return [AttentionSegment(0, example.length, maps, [self.head_index(example)])]
