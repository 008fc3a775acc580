"""Adapter for causal language models (Hugging Face convention, seqexplain's native LMs).

Input axis: prompt tokens, then target tokens; target ``i`` sits at ``p_i`` and is predicted at ``p_i − 1``
(rule 3 of :mod:`seqexplain.models.keep`: under a keep-mask, from the last kept position before ``p_i``). Target
``i`` sees the positions ``j < p_i``. A rationale starts with the predicting token ``p_i − 1``.

Rows of several examples share a forward right-padded (padding is a dropped position). Rows that drop positions
are *packed* when the model takes position ids: their kept tokens are moved left and run with their original
position ids, which is deleting the dropped tokens (rule 1) for every architecture, including those where masking
a token in place is not (a sliding attention window counts the tokens read; a state-space layer of a hybrid model
steps through a masked token). A model without attention (Mamba) is packed without position ids (an RNN's dropped
token is removed from its input); any other model without position ids it honours masks dropped tokens in place
(MPT; Bloom and Falcon with ALiBi count positions over the mask, and their examples warn so). Rows
that share leading tokens run them once (unless the model has a local attention window that their padded cache
slots would enter; :mod:`seqexplain.models.prefix_cache`), and the output layer runs only at
the reading positions when the model's head is a plain projection of its base model's last hidden state (checked
once against the model's own logits).

A target left to the model is its greedy continuation; several prompts decode together (:meth:`HFCausalLM.encode_many`,
:mod:`seqexplain.models.greedy`), with the model's key/value cache when its forward takes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from seqexplain.errors import InputError
from seqexplain.models import keep as keep_rule
from seqexplain.models.batching import pad_rows, split_by_part, tie_margin
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.greedy import greedy_cached, greedy_many
from seqexplain.models.hf import HFAdapter, TokenEmbedding, segments_of, truncation_warning
from seqexplain.models.hf_module import (
    accepts_exact,
    attention_window,
    ids_only_scale,
    mixing_warning,
    positions_follow_mask,
    probe_ids,
    steps_through_masks,
)
from seqexplain.models.module_state import eval_mode
from seqexplain.models.prefix_cache import shared_prefix_states
from seqexplain.models.tokenization import (
    Tokenized,
    joining_warnings,
    offsets_by_decoding,
    tokenize,
    typed_special_warnings,
    without_trailing_specials,
)

_CUT_PROMPT = "pass truncate=True (CLI: --truncate) to cut the prompt's oldest tokens"


@dataclass
class _Prompt:
    """A checked prompt before decoding: its text, the target as given (None: decode), their tokens, how many
    tokens to decode or the target holds, and the warnings so far."""

    text: str
    target: str | None
    src: Tokenized
    tgt: Tokenized | None
    n_new: int
    warnings: list[str]


class HFCausalLM(TokenEmbedding, HFAdapter):
    kind = "causal"
    truncation_side = "left"
    mask_names = ("attention_mask",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_id: str | None = None) -> None:
        super().__init__(model, tokenizer, model_id)
        self._logits_to_keep = accepts_exact(model.forward, "logits_to_keep")
        self._position_ids = accepts_exact(model.forward, "position_ids")  # not **kwargs: they may swallow it
        # several prompts decode with the model's key/value cache when its forward names one (``cache``; before
        # transformers 5, ``past_key_values``), ``use_cache``, position ids and an attention mask (left padding)
        names = [n for n in ("cache", "past_key_values") if accepts_exact(model.forward, n)]
        plain = all(accepts_exact(model.forward, n) for n in ("position_ids", "use_cache", "attention_mask"))
        self._cache_name: str | None = names[0] if names and plain else None
        self._head_ok: bool | None = None
        self._scale: float | None = None
        self._renumbers: bool | None = None
        # a recurrent or state-space layer steps through a token masked in place: rows that drop positions run their
        # kept tokens packed (rule 1 for an RNN: the dropped token leaves the input), with position ids if honoured
        self._recurrent = steps_through_masks(model)
        # forwards that score run without a key/value cache (none is reused; RWKV updates its state in place
        # with the cache on, which breaks the backward of gradient methods)
        base = getattr(model, "base_model", None)
        self._no_cache = {"use_cache": False} if accepts_exact(model.forward, "use_cache") else {}
        self._base_no_cache = ({"use_cache": False} if isinstance(base, torch.nn.Module)
                               and accepts_exact(base.forward, "use_cache") else {})

    def ids_only_scale(self) -> float:
        """The factor the base model applies to its token embeddings only when it reads ids
        (:func:`~seqexplain.models.hf_module.ids_only_scale`; Falcon-H1's ``embedding_multiplier``), by which the
        vectors this adapter feeds are multiplied. Found once."""
        if self._scale is None:
            base = getattr(self.model, "base_model", None)
            self._scale = 1.0
            if isinstance(base, torch.nn.Module) and base is not self.model:
                self._scale = ids_only_scale(base, self.input_layer(), self.vocab_size())
        return self._scale

    # --------------------------------------------------------------- encode
    def encode(self, text: Any, target: Any = None, *, max_new_tokens: int = 10, truncate: bool = False) -> Example:
        """Tokenise the prompt ``text`` and the continuation ``target`` (``None``: greedy decoding of up to
        ``max_new_tokens`` tokens, stopping before end-of-sequence)."""
        return self.encode_many([(text, target)], max_new_tokens=max_new_tokens, truncate=truncate)[0]

    def encode_many(self, requests: Sequence[tuple[Any, Any]], *, max_new_tokens: int = 10, truncate: bool = False
                    ) -> list[Example]:
        """:meth:`encode` of each ``(prompt, target)``; the continuations of the prompts without a target are
        decoded together, groups of prompts sharing forwards and the model's key/value cache where its forward takes
        one (:mod:`seqexplain.models.greedy`: a step too close to call there is taken again alone, so each
        continuation is the one :meth:`encode` decodes)."""
        prompts = [self._prompt(text, target, max_new_tokens, truncate) for text, target in requests]
        todo = [k for k, p in enumerate(prompts) if p.target is None]
        decoded = self._generate_many([prompts[k].src.ids for k in todo], [prompts[k].n_new for k in todo])
        new_ids: dict[int, list[int]] = dict(zip(todo, decoded, strict=True))
        return [self._example(p, new_ids.get(k)) for k, p in enumerate(prompts)]

    def _prompt(self, text: Any, target: Any, max_new_tokens: int, truncate: bool) -> _Prompt:
        """The checked, tokenised (and with ``truncate`` cut) prompt and target, before any decoding."""
        text, max_new_tokens, tgt, target_warnings = self.check_generation(text, target, max_new_tokens, "language")
        limit = self.max_positions()
        n_new = len(tgt.ids) if tgt is not None else max_new_tokens
        room = None if limit is None else limit - n_new
        if room is not None and room < 1 and tgt is not None:
            raise InputError(f"the target alone needs {n_new} of the model's {limit} positions; shorten it")
        if room is not None and room < 1 and truncate:
            raise InputError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's {limit} "
                             "positions; lower max_new_tokens (CLI: --max-new-tokens)")
        full, appended = without_trailing_specials(tokenize(self.tokenizer, text, add_special_tokens=True))
        self.check_content(full)
        warnings = typed_special_warnings(self.tokenizer, full, "prompt")
        if appended:
            warnings.append(f"the tokenizer puts {' '.join(appended)} after a text; the continuation follows the "
                            "prompt's last token, so the prompt is read without it")
        src = full
        if truncate and room is not None and len(full.ids) > room:
            src = without_trailing_specials(tokenize(self.tokenizer, text, add_special_tokens=True,
                                                     max_length=room + len(appended),
                                                     truncation_side=self.truncation_side))[0]
            warnings += truncation_warning(len(full.ids), len(src.ids), "prompt", "the oldest")
        if tgt is None:
            self.check_length(len(src.ids) + 1, limit, "prompt plus one generated token", _CUT_PROMPT)
            n_new = max_new_tokens if limit is None else min(max_new_tokens, limit - len(src.ids))
            if n_new < max_new_tokens:
                warnings.append(f"max_new_tokens: only {n_new} of the {max_new_tokens} requested tokens fit the "
                                f"model's {limit} positions after the prompt")
        else:
            self.check_length(len(src.ids) + len(tgt.ids), limit, "prompt plus target", _CUT_PROMPT)
            warnings += [*target_warnings, *joining_warnings(self.tokenizer, text, target, full.ids, tgt.ids)]
        return _Prompt(text, None if tgt is None else target, src, tgt, n_new, warnings)

    def _example(self, prompt: _Prompt, new_ids: list[int] | None) -> Example:
        """The :class:`Example` of a prepared prompt and its target (given, or the decoded ``new_ids``)."""
        src = prompt.src
        warnings = list(prompt.warnings)
        if new_ids is not None:
            target_text, t_off = offsets_by_decoding(self.tokenizer, new_ids)
            t_ids, t_tokens = new_ids, self.tokenizer.convert_ids_to_tokens(new_ids)
            warnings += self.decoded_warnings(new_ids, prompt.n_new)
        else:
            assert prompt.tgt is not None and prompt.target is not None
            target_text, t_ids, t_tokens, t_off = prompt.target, prompt.tgt.ids, prompt.tgt.tokens, prompt.tgt.offsets
        keep_warnings = []
        no_ids = not self._position_ids or self.ignores_position_ids()
        if no_ids and not self._recurrent and self.positions_follow_mask():
            keep_warnings.append(f"{type(self.model).__name__} takes no position ids it honours and counts positions "
                                 "over its attention mask (ALiBi in Bloom and Falcon): where a method drops tokens "
                                 "(occlusion, rationales), the kept tokens after a dropped one are read one position "
                                 "closer, as if the gap were closed, not at their original positions")
        n_p, n_l = len(src.ids), len(src.ids) + len(t_ids)
        positions = [n_p + i for i in range(len(t_ids))]
        vis = torch.arange(n_l).view(1, -1) < torch.tensor(positions).view(-1, 1)
        return Example(
            kind="causal", input_ids=torch.tensor(src.ids + t_ids, dtype=torch.long),
            tokens=list(src.tokens) + list(t_tokens), offsets=list(src.offsets) + list(t_off),
            segments=segments_of(src.offsets, "source") + segments_of(t_off, "target"),
            target_ids=torch.tensor(t_ids, dtype=torch.long), target_tokens=list(t_tokens),
            target_positions=list(positions), n_source=n_p, text=prompt.text, target_text=target_text,
            visibility=vis, warnings=warnings, keep_warnings=keep_warnings)

    @torch.no_grad()
    def _generate_many(self, prompts: list[list[int]], limits: list[int]) -> list[list[int]]:
        """Greedy continuations of token-id prompts (:func:`~seqexplain.models.greedy.greedy_cached` with the
        model's cache, else :func:`~seqexplain.models.greedy.greedy_many`), decoded in float32 (autocast applies to
        the explanations' forwards, not to choosing the target)."""
        if not prompts:
            return []
        eos, margin, tokens = self.special_id("eos_token_id"), tie_margin(None), self.default_pack_tokens()
        rules = self.decoding()[0]
        with eval_mode(self.model):
            def alone(_: int, seq: list[int]) -> torch.Tensor:
                return self._next_logits_alone(seq)

            if self._cache_name is not None and self.position_offset() is not None:
                return greedy_cached(prompts, limits, eos, lambda _, seqs: self._cache_start(seqs), self._cache_step,
                                     alone, tokens, margin, rules=rules)
            return greedy_many(prompts, limits, eos, lambda _, seqs: self._next_logits_many(seqs), alone, tokens,
                               margin, rules=rules)

    def _cache_start(self, seqs: list[list[int]]) -> tuple[Any, torch.Tensor]:
        """One forward of left-padded prompts (position ids counted from each prompt's first token) keeping the
        key/value cache: the state of :func:`~seqexplain.models.greedy.greedy_cached` and ``[B, V]`` logits."""
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), self.pad_id(), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, q in enumerate(seqs):
            ids[r, width - len(q):] = torch.tensor(q)
            mask[r, width - len(q):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(1) - 1).clamp(min=0) + (self.position_offset() or 0)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return (out[self._cache_name], mask, pos[:, -1]), out.logits[:, -1]

    def _cache_step(self, state: Any, tokens: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """Feed one token per sequence after the cached ones: the next state and ``[B, V]`` logits."""
        past, mask, last = state
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = (last + 1).view(-1, 1)
        assert self._cache_name is not None
        out = self.model(input_ids=tokens.to(self.device).view(-1, 1), attention_mask=mask, position_ids=pos,
                         use_cache=True, **{self._cache_name: past})
        return (out[self._cache_name], mask, pos[:, 0]), out.logits[:, -1]

    def _next_logits_alone(self, ids: list[int]) -> torch.Tensor:
        """``[V]`` next-token logits of one sequence, in a forward of its own."""
        x = torch.tensor([ids], device=self.device)
        kwargs: dict[str, Any] = {"input_ids": x, "attention_mask": torch.ones_like(x)}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return self.model(**self.drop_missing_masks(kwargs), **self._no_cache).logits[0, -1]

    def _next_logits_many(self, seqs: list[list[int]]) -> torch.Tensor:
        """``[B, V]`` next-token logits of several sequences in one right-padded forward: each is read at its last
        token, as a target placed after it would be (:meth:`_causal_logits`)."""
        n_l = max(len(q) for q in seqs) + 1
        ids = torch.full((len(seqs), n_l), self.pad_id(), dtype=torch.long)
        keep = torch.zeros((len(seqs), n_l), dtype=torch.bool)
        for r, q in enumerate(seqs):
            ids[r, : len(q)] = torch.tensor(q)
            keep[r, : len(q)] = True
        positions = torch.tensor([[len(q)] for q in seqs], device=self.device)
        return self._causal_logits(ids.to(self.device), keep.to(self.device), None, positions, {})[:, 0]

    def positions_follow_mask(self) -> bool:
        """:func:`~seqexplain.models.hf_module.positions_follow_mask` of the model (found once): a keep-mask run in
        place then cannot keep the kept tokens' original positions (rule 1)."""
        if self._renumbers is None:
            ids = probe_ids(self.vocab_size(), {self.special_id("pad_token_id")}, 5)
            with eval_mode(self.model):
                self._renumbers = positions_follow_mask(
                    lambda kwargs: self.model(**self.drop_missing_masks(kwargs)).logits, ids, self.device)
        return self._renumbers

    # ---------------------------------------------------------------- logits
    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """A causal row runs only its kept tokens (rows that drop positions are packed)."""
        return max(1, max_kept)

    def logits_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        ends, ids, keeps, embeds, positions, extras = [], [], [], [], [], []
        n_t = max(1 if p.rows_target is not None else p.example.n_targets for p in parts)
        for part in parts:
            ex, keep = part.example, part.keep
            assert keep is not None
            b = keep.shape[0]
            pos = ex.positions_tensor().to(self.device).view(1, -1).expand(b, -1)
            if part.rows_target is not None:
                pos = pos.gather(1, part.rows_target.view(-1, 1))
            pos = torch.cat([pos, pos[:, :1].expand(b, n_t - pos.shape[1])], dim=1)  # padded targets: repeat
            positions.append(pos)
            keeps.append(keep)
            ends.append(ex.length)
            if part.embeds is not None:
                embeds.append(part.embeds)
            if ex.input_ids is not None:
                ids.append(ex.input_ids.to(self.device).view(1, -1).expand(b, -1))
            extras.append(ex.extra)
        if embeds and len(embeds) != len(parts):
            embeds = [p.embeds if p.embeds is not None else self.embed(p.example).expand(p.n_rows, -1, -1)
                      for p in parts]
        n_l = max(ends)
        keep_all = pad_rows(keeps, n_l, False)
        ids_all = pad_rows(ids, n_l, self.pad_id()) if len(ids) == len(parts) else None
        emb_all = pad_rows(embeds, n_l, 0.0) if embeds else None
        if ids_all is None and emb_all is None:
            emb_all = pad_rows([self.embed(p.example).expand(p.n_rows, -1, -1) for p in parts], n_l, 0.0)
        extra = {}
        for key in extras[0]:
            extra[key] = pad_rows([e[key].to(self.device).view(1, -1).expand(p.n_rows, -1)
                                   for e, p in zip(extras, parts, strict=True)], n_l, 0)
        return split_by_part(self._causal_logits(ids_all, keep_all, emb_all, torch.cat(positions), extra), parts)

    def _causal_logits(self, ids: torch.Tensor | None, keep: torch.Tensor, embeds: torch.Tensor | None,
                       positions: torch.Tensor, extra: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, T, V]`` logits at each row's reading positions (module docstring)."""
        r = keep_rule.reading_positions(keep, positions, 0)  # [B, T]
        end = int(r.max()) + 1  # later positions are never read
        keep_c = keep[:, :end]
        n_b = keep_c.shape[0]
        counts = keep_c.sum(1)
        n_max = int(counts.max()) if n_b else 0
        reads_kept = bool(keep_c.gather(1, r).all())
        kwargs: dict[str, Any] = {}
        offset = self.position_offset() if self._position_ids else None
        if (offset is not None or self._recurrent) and reads_kept and n_max > 0 and not bool(keep_c.all()):
            order = torch.argsort((~keep_c).to(torch.int8), dim=1, stable=True)[:, :n_max]  # kept first, in order
            valid = torch.arange(n_max, device=self.device).unsqueeze(0) < counts.unsqueeze(1)
            if embeds is None:
                assert ids is not None
                ids_c = ids[:, :end]
                kwargs["input_ids"] = torch.where(valid, ids_c.gather(1, order), ids_c[:, :1])
            else:
                index = order.unsqueeze(-1).expand(-1, -1, embeds.shape[-1])
                kwargs["inputs_embeds"] = embeds[:, :end].gather(1, index) * self.ids_only_scale()
            kwargs["attention_mask"] = valid.long()
            if offset is not None:
                kwargs["position_ids"] = order + offset
            read = torch.cumsum(keep_c.long(), 1).gather(1, r) - 1  # index of r among the kept positions
            for key, value in extra.items():
                kwargs[key] = value[:, :end].gather(1, order)
        else:
            kwargs["attention_mask"] = keep_c.long()
            if embeds is None:
                assert ids is not None
                kwargs["input_ids"] = ids[:, :end]
            else:
                kwargs["inputs_embeds"] = embeds[:, :end] * self.ids_only_scale()
            if offset is not None:
                kwargs["position_ids"] = torch.arange(end, device=self.device).unsqueeze(0).expand(n_b, -1) + offset
            read = r
            for key, value in extra.items():
                kwargs[key] = value[:, :end]
        self.drop_missing_masks(kwargs)
        if self._head_at_reads(kwargs):
            picked = None
            window = attention_window(getattr(self.model, "config", None))
            # shared prefixes run suffixes after padded cache slots, which a local window would count as positions
            if n_b > 1 and reads_kept and set(kwargs) == {"input_ids", "attention_mask", "position_ids"} and (
                    window is None or 2 * end < window):
                picked = shared_prefix_states(self.model.base_model, kwargs["input_ids"], kwargs["attention_mask"],
                                              kwargs["position_ids"], read)
            if picked is None:
                hidden = self.model.base_model(**kwargs, **self._base_no_cache).last_hidden_state
                picked = hidden.gather(1, read.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
            return self.model.get_output_embeddings()(picked)
        needed, index = torch.unique(read, sorted=True, return_inverse=True)
        if self._logits_to_keep:
            logits = self.model(**kwargs, logits_to_keep=needed, **self._no_cache).logits
        else:
            logits = self.model(**kwargs, **self._no_cache).logits[:, needed]
        return torch.gather(logits, 1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

    def _head_at_reads(self, kwargs: dict[str, Any]) -> bool:
        """Whether ``output_embeddings(base_model(...).last_hidden_state)`` equals the model's logits (no
        logit scaling or soft-capping in between). Checked once, on the first call's first row."""
        if self._head_ok is None:
            self._head_ok = False
            base = getattr(self.model, "base_model", None)
            head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
            if isinstance(base, torch.nn.Module) and base is not self.model and isinstance(head, torch.nn.Module):
                one = {k: v[:1] for k, v in kwargs.items()}
                with torch.no_grad():
                    try:
                        full = self.model(**one, **self._no_cache).logits[0]
                        mine = head(base(**one, **self._base_no_cache).last_hidden_state)[0]
                        self._head_ok = bool(torch.allclose(full, mine, rtol=1e-4, atol=1e-5))
                    except (TypeError, AttributeError, RuntimeError):
                        self._head_ok = False
        return self._head_ok

    # ------------------------------------------------------------ attention
    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """Target ``i`` is explained by the attention row of its predicting position ``p_i − 1``."""
        inputs = self.span_inputs(example)
        if "inputs_embeds" in inputs:
            inputs["inputs_embeds"] = inputs["inputs_embeds"] * self.ids_only_scale()
        out = self.output_attentions(**self.drop_missing_masks(inputs), **self._no_cache)
        layers = getattr(out, "attentions", None)
        if not layers:
            self.no_attention()
        rows = [int(p) - 1 for p in example.target_positions]  # type: ignore[arg-type]
        return [AttentionSegment(0, example.length, self.attention_maps(layers, example.length, example.length), rows,
                                 warnings=[mixing_warning(type(self.model).__name__)] if self._recurrent else [])]
