"""Adapter for encoder-decoders (Hugging Face convention, seqexplain's native translation transformer).

Input axis: ``S`` source tokens, the decoder start token (position ``S``), then the target tokens; target ``i``
sits at ``p_i = S + 1 + i`` and is predicted at decoder position ``i``. Target ``i`` sees every source position
and the decoder positions ``S ≤ j < p_i``. A rationale starts with the predicting decoder token ``p_i − 1``.

Rows of several examples share a forward with sources and decoder inputs right-padded separately (padding is a
dropped position). Rule 5 of :mod:`seqexplain.models.keep` (no source kept: cross-attention contributes nothing)
is honoured natively by seqexplain's transformer, and for Hugging Face models by zeroing, for those rows, the input
of each cross-attention's output projection (:data:`CROSS_OUTPUT_PROJECTIONS`: BART and T5 families, BERT-family and
GPT-2 decoders of an ``EncoderDecoderModel``); a model with none of them refuses such rows with a clear error.

A target left to the model is its greedy decoding; several sources decode together (:meth:`HFSeq2SeqLM.encode_many`,
:func:`seqexplain.models.greedy.greedy_many`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from seqexplain.errors import UnsupportedError
from seqexplain.models import keep as keep_rule
from seqexplain.models.batching import pad_rows, split_by_part, tie_margin
from seqexplain.models.example import AttentionSegment, Example, Part
from seqexplain.models.greedy import greedy_many
from seqexplain.models.hf import HFAdapter, head_mean, segments_of
from seqexplain.models.hf_module import accepts_exact, ids_only_scale, input_embeddings
from seqexplain.models.module_state import eval_mode
from seqexplain.models.tokenization import offsets_by_decoding

CROSS_OUTPUT_PROJECTIONS = ("encoder_attn.out_proj", "EncDecAttention.o", "crossattention.output.dense",
                            "crossattention.c_proj")
"""Module-name suffixes of cross-attention output projections (rule 5 for Hugging Face encoder-decoders): BART
family, T5 family, and the BERT-family and GPT-2 decoders of an ``EncoderDecoderModel`` (bert2bert, bert2gpt2)."""

TIME_MAJOR = ("fsmt",)
"""Model types whose attention modules take ``[T, B, D]`` inputs (batch second)."""


class HFSeq2SeqLM(HFAdapter):
    kind = "seq2seq"
    mask_names = ("attention_mask", "decoder_attention_mask")

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_id: str | None = None) -> None:
        super().__init__(model, tokenizer, model_id)
        self._scales: dict[str, float] = {}
        self._no_cache = accepts_exact(model.forward, "use_cache")

    def ids_only_scale(self, side: str) -> float:
        """The factor the encoder (``side="encoder"``) or decoder stack applies to its token embeddings only when it
        reads ids (:func:`~seqexplain.models.hf_module.ids_only_scale`; Marian, Pegasus, BlenderbotSmall, MVP), by which
        the vectors this adapter feeds are multiplied. Found once per side."""
        if side not in self._scales:
            stack = self.model.get_encoder() if side == "encoder" else self.model.get_decoder()
            kwargs: dict[str, Any] = {}
            if side == "decoder":  # a decoder stack attends to an encoder output: give it one
                width = int(getattr(getattr(self.model, "config", None), "d_model", 0) or self.input_width() or 0)
                kwargs["encoder_hidden_states"] = torch.zeros(1, 1, width, device=self.device)
            self._scales[side] = ids_only_scale(stack, input_embeddings(stack, self.model), self.vocab_size(),
                                                **kwargs)
        return self._scales[side]

    def run_model(self, **inputs: Any) -> Any:
        """The model's forward with ``use_cache=False`` where it names the keyword: nothing reuses a cache here, and
        FSMT builds its decoder's causal mask only without one (with the cache on, every decoder position saw the
        positions after it)."""
        if self._no_cache:
            inputs["use_cache"] = False
        return self.model(**inputs)

    @torch.no_grad()
    def check_causal_decoder(self, start: int) -> None:
        """:class:`UnsupportedError` for a decoder whose logits at a position change with the decoder positions
        after it (ProphetNet's n-gram streams place every position by the decoder's length): ``log p(target_i)``
        is then no function of what precedes target ``i``, and padded or cut rows would change it. Checked once, on
        a decoder of two tokens and the same with two more."""
        if getattr(self, "_causal_decoder", None) is None:
            x = torch.arange(1, 5, device=self.device).clamp(max=self.vocab_size() - 1).unsqueeze(0)
            d = torch.tensor([[start, 5, 6, 7]], device=self.device).clamp(max=self.vocab_size() - 1)
            with eval_mode(self.model):
                short = self.run_model(input_ids=x, decoder_input_ids=d[:, :2]).logits[0]
                long = self.run_model(input_ids=x, decoder_input_ids=d).logits[0, :2]
            scale = float(short.abs().max())
            self._causal_decoder = bool(torch.allclose(short.float(), long.float(), rtol=1e-4, atol=1e-4 * scale))
        if not self._causal_decoder:
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}): the decoder's logits at a position change with the "
                "decoder positions after it, so log p(target) is not a function of what precedes the target and "
                "no method can explain it; use an encoder-decoder with a causal decoder (BART, T5, Marian, …)")

    # --------------------------------------------------------------- encode
    def encode(self, text: Any, target: Any = None, *, max_new_tokens: int = 10, truncate: bool = False) -> Example:
        """Tokenise the source ``text`` and the target text (``None``: greedy decoding of up to
        ``max_new_tokens`` tokens)."""
        return self.encode_many([(text, target)], max_new_tokens=max_new_tokens, truncate=truncate)[0]

    def encode_many(self, requests: Sequence[tuple[Any, Any]], *, max_new_tokens: int = 10, truncate: bool = False
                    ) -> list[Example]:
        """:meth:`encode` of each ``(source, target)``; the targets of the sources without one are decoded
        together, each step one forward per group of similar length (:func:`~seqexplain.models.greedy.greedy_many`:
        a step too close to call there is taken again alone, so each target is the one :meth:`encode` decodes)."""
        start = self.special_id("decoder_start_token_id")
        if start is None:
            raise UnsupportedError(f"{self.model_id} has no decoder_start_token_id in its config; set it")
        self.check_causal_decoder(start)
        limit = self.max_positions()
        sources, todo, limits = [], [], []
        for k, (text, target) in enumerate(requests):
            text, n_new, tgt, target_warnings = self.check_generation(text, target, max_new_tokens, "translation")
            src, warnings = self.tokenize_input(text, "source", truncate)
            warnings = [*warnings, *target_warnings]
            if tgt is None:
                todo.append(k)
                limits.append(n_new if limit is None else min(n_new, limit - 1))
                if limits[-1] < n_new:
                    warnings = [*warnings, f"max_new_tokens: only {limits[-1]} of the {n_new} requested tokens fit the "
                                f"model's {limit} decoder positions after the start token"]
            else:
                self.check_length(len(tgt.ids) + 1, limit, "target", "give a shorter one (truncate cuts the source "
                                  "only)")
            sources.append((text, target, src, tgt, warnings))
        decoded = dict(zip(todo, self._generate_many([sources[k][2].ids for k in todo], start, limits), strict=True))
        limit_of = dict(zip(todo, limits, strict=True))
        out = []
        for k, (text, target, src, tgt, warnings) in enumerate(sources):
            if k in decoded:
                new_ids = decoded[k]
                target_text, t_off = offsets_by_decoding(self.tokenizer, new_ids)
                t_ids, t_tokens = new_ids, self.tokenizer.convert_ids_to_tokens(new_ids)
                warnings = [*warnings, *self.decoded_warnings(new_ids, limit_of[k])]
            else:
                target_text, t_ids, t_tokens, t_off = target, tgt.ids, tgt.tokens, tgt.offsets
            out.append(self._example(text, src.ids, src.tokens, src.offsets, start, target_text, t_ids, t_tokens,
                                     t_off, warnings))
        return out

    def _example(self, text: str, s_ids: list[int], s_tokens: list[str], s_off: list[Any], start: int,
                 target_text: str, t_ids: list[int], t_tokens: list[str], t_off: list[Any], warnings: list[str]
                 ) -> Example:
        n_s = len(s_ids)
        n_l = n_s + 1 + len(t_ids)
        positions = [n_s + 1 + i for i in range(len(t_ids))]
        idx = torch.arange(n_l).view(1, -1)
        vis = (idx < n_s) | (idx < torch.tensor(positions).view(-1, 1))
        start_tok = self.tokenizer.convert_ids_to_tokens([start])[0]
        return Example(
            kind="seq2seq", input_ids=torch.tensor(s_ids + [start] + t_ids, dtype=torch.long),
            tokens=list(s_tokens) + [start_tok] + list(t_tokens), offsets=list(s_off) + [None] + list(t_off),
            segments=segments_of(s_off, "source") + ["special"] + segments_of(t_off, "target"),
            target_ids=torch.tensor(t_ids, dtype=torch.long), target_tokens=list(t_tokens),
            target_positions=positions, n_source=n_s, text=text, target_text=target_text, visibility=vis,
            warnings=warnings)

    @torch.no_grad()
    def _generate_many(self, sources: list[list[int]], start: int, limits: list[int]) -> list[list[int]]:
        """Greedy targets of token-id sources (:func:`~seqexplain.models.greedy.greedy_many` over decoder prefixes,
        each source counted in its group's tokens), in float32."""
        if not sources:
            return []

        def alone(k: int, dec: list[int]) -> torch.Tensor:
            x = torch.tensor([sources[k]], device=self.device)
            d = torch.tensor([dec], device=self.device)
            return self.run_model(input_ids=x, attention_mask=torch.ones_like(x), decoder_input_ids=d).logits[0, -1]

        def shared(ks: list[int], decs: list[list[int]]) -> torch.Tensor:
            src = [sources[k] for k in ks]
            n_x, n_d = max(len(q) for q in src), max(len(q) for q in decs)
            x = torch.full((len(ks), n_x), self.pad_id(), dtype=torch.long)
            mask = torch.zeros((len(ks), n_x), dtype=torch.long)
            d = torch.full((len(ks), n_d), self.pad_id(), dtype=torch.long)
            for r, (q, dq) in enumerate(zip(src, decs, strict=True)):
                x[r, : len(q)], mask[r, : len(q)] = torch.tensor(q), 1
                d[r, : len(dq)] = torch.tensor(dq)  # right-padded: a causal decoder never reads the padding
            logits = self.run_model(input_ids=x.to(self.device), attention_mask=mask.to(self.device),
                                decoder_input_ids=d.to(self.device)).logits
            last = torch.tensor([len(dq) - 1 for dq in decs], device=self.device)
            return logits[torch.arange(len(ks), device=self.device), last]

        with eval_mode(self.model):
            return greedy_many([[start]] * len(sources), limits, self.special_id("eos_token_id"), shared, alone,
                               self.default_pack_tokens(), tie_margin(None), context=[len(q) for q in sources],
                               rules=self.decoding()[0])

    # ---------------------------------------------------------------- embed
    def embed(self, example: Example) -> torch.Tensor:
        if example.input_vectors is not None:
            return self.vectors_of(example)
        assert example.input_ids is not None
        ids = example.input_ids.to(self.device).unsqueeze(0)
        enc = input_embeddings(self.model.get_encoder(), self.model)
        dec = input_embeddings(self.model.get_decoder(), self.model)
        s = example.n_source
        return torch.cat([enc(ids[:, :s]), dec(ids[:, s:])], dim=1)

    # ------------------------------------------------------------ questions
    def read_floor(self, example: Example) -> int:
        return example.n_source

    def rows_example(self, example: Example, max_target: int) -> Example:
        """The example cut after target ``max_target`` (later decoder positions are never read)."""
        m = max_target + 1
        n = example.n_source + 1 + m
        if m >= example.n_targets:
            return example
        return example.replace(
            input_ids=None if example.input_ids is None else example.input_ids[:n],
            input_vectors=None if example.input_vectors is None else example.input_vectors[:n],
            tokens=example.tokens[:n], offsets=example.offsets[:n], segments=example.segments[:n],
            target_ids=example.target_ids[:m], target_tokens=example.target_tokens[:m],
            target_positions=list(example.target_positions[:m]),
            extra={k: v[:n] for k, v in example.extra.items()},
            visibility=example.visible()[:m, :n],
            foil_ids=None if example.foil_ids is None else example.foil_ids[:m],
            foil_tokens=None if example.foil_tokens is None else example.foil_tokens[:m])

    def row_cost(self, example: Example, max_target: int, max_kept: int) -> int:
        """Rows run on the example cut after their largest target (:meth:`rows_example`)."""
        return example.n_source + 1 + max_target

    # ---------------------------------------------------------------- logits
    def logits_many(self, parts: Sequence[Part]) -> list[torch.Tensor]:
        src_keep, dec_keep, src_ids, dec_ids, src_emb, dec_emb, reads = [], [], [], [], [], [], []
        with_embeds = any(p.embeds is not None or p.example.input_ids is None for p in parts)
        n_t = max(1 if p.rows_target is not None else p.example.n_targets for p in parts)
        for part in parts:
            ex, keep = part.example, part.keep
            assert keep is not None
            s, b, m = ex.n_source, keep.shape[0], ex.n_targets
            pos = ex.positions_tensor().to(self.device)
            r = keep_rule.reading_positions(keep, pos, s) - s  # decoder index of each reading position
            if part.rows_target is not None:
                r = r.gather(1, part.rows_target.view(-1, 1))
            reads.append(torch.cat([r, r[:, :1].expand(b, n_t - r.shape[1])], dim=1))
            src_keep.append(keep[:, :s])
            dec_keep.append(keep[:, s : s + m])
            if with_embeds:
                e = part.embeds if part.embeds is not None else self.embed(ex).expand(b, -1, -1)
                src_emb.append(e[:, :s])
                dec_emb.append(e[:, s : s + m])
            else:
                assert ex.input_ids is not None, "an example of precomputed vectors comes with embeds"
                ids = ex.input_ids.to(self.device).view(1, -1).expand(b, -1)
                src_ids.append(ids[:, :s])
                dec_ids.append(ids[:, s : s + m])
        n_s = max(int(k.shape[1]) for k in src_keep)
        n_d = max(int(k.shape[1]) for k in dec_keep)
        sk, dk = pad_rows(src_keep, n_s, False), pad_rows(dec_keep, n_d, False)
        empty = keep_rule.source_empty(sk)
        kwargs: dict[str, Any] = {"attention_mask": sk.long(),
                                  "decoder_attention_mask": dk.long()}
        if with_embeds:
            kwargs["inputs_embeds"] = pad_rows(src_emb, n_s, 0.0) * self.ids_only_scale("encoder")
            kwargs["decoder_inputs_embeds"] = pad_rows(dec_emb, n_d, 0.0) * self.ids_only_scale("decoder")
        else:
            kwargs["input_ids"] = pad_rows(src_ids, n_s, self.pad_id())
            kwargs["decoder_input_ids"] = pad_rows(dec_ids, n_d, self.pad_id())
        with empty_sources(self.model, empty, self.model_id):
            logits = self.run_model(**self.drop_missing_masks(kwargs)).logits
        r = torch.cat(reads)
        return split_by_part(torch.gather(logits, 1, r.unsqueeze(-1).expand(-1, -1, logits.shape[-1])), parts)

    # ------------------------------------------------------------ attention
    def attention_view(self, example: Example) -> list[AttentionSegment]:
        """Source part: the cross-attention row of decoder position ``i`` (rollout composes it with the encoder's
        self-attention rollout); decoder part: the decoder self-attention row of position ``i``."""
        s, m = example.n_source, example.n_targets
        inputs = {**self.span_inputs(example, 0, s), **self.span_inputs(example, s, s + m, prefix="decoder_")}
        for key, side in (("inputs_embeds", "encoder"), ("decoder_inputs_embeds", "decoder")):
            if key in inputs:
                inputs[key] = inputs[key] * self.ids_only_scale(side)
        if self._no_cache:
            inputs["use_cache"] = False
        out = self.output_attentions(**inputs)
        enc, dec, cross = (getattr(out, n, None) for n in ("encoder_attentions", "decoder_attentions",
                                                             "cross_attentions"))
        if not enc or not dec or not cross:
            self.no_attention()
        rows = list(range(m))
        enc_maps = head_mean(enc)
        # local/block encoder attention (LED, LongT5) returns maps over a window, not [S, S]: no rollout through it
        square = all(tuple(a.shape) == (s, s) for a in enc_maps)
        return [AttentionSegment(0, s, self.attention_maps(cross, m, s), rows,
                                 key_rollout=enc_maps if square else None, rollout=square),
                AttentionSegment(s, s + m, self.attention_maps(dec, m, m), rows)]


@contextlib.contextmanager
def empty_sources(model: torch.nn.Module, empty: torch.Tensor, name: str = "") -> Iterator[None]:
    """Rule 5 of :mod:`seqexplain.models.keep` for the rows ``empty[B]`` that keep no source position: zero the
    input of every cross-attention output projection on those rows (module docstring)."""
    if not bool(empty.any()) or getattr(model, "seqexplain_kind", None) == "seq2seq":
        yield  # nothing to do, or a native model that honours the rule itself
        return
    found = [m for n, m in model.named_modules() if n.endswith(CROSS_OUTPUT_PROJECTIONS)]
    if not found:
        raise UnsupportedError(
            f"{name or type(model).__name__}: a row keeps no source position, and seqexplain does not know where "
            f"this architecture's cross-attention is ({type(model).__name__}), so it cannot give the decoder an "
            "empty source; keep at least one source position")

    # fairseq-style attention (FSMT) runs time-major: [T, B, D]
    batch_dim = 1 if getattr(getattr(model, "config", None), "model_type", "") in TIME_MAJOR else 0

    def zero_rows(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        shape = [1] * x.dim()
        shape[batch_dim] = -1
        return (torch.where(empty.view(shape), torch.zeros_like(x), x), *args[1:])

    handles = [m.register_forward_pre_hook(zero_rows) for m in found]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
