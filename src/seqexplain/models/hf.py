"""Wrapper for Hugging Face models and any module with their calling convention.

A module qualifies when ``forward`` takes ``input_ids`` or ``inputs_embeds``, ``attention_mask`` (and, for
causal models, ``position_ids``) and returns an object with ``.logits``; encoder-decoders also take
``decoder_input_ids`` / ``decoder_inputs_embeds`` / ``decoder_attention_mask``. The kind is read from the
Auto-class mappings of ``transformers`` (so every architecture they load works), from a ``seqexplain_kind``
attribute, or given explicitly.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from seqexplain.errors import InputError, UnsupportedError
from seqexplain.models.base import Example, ModelKind, SequenceModel, eval_mode, reading_positions
from seqexplain.models.prefix_cache import shared_prefix_states
from seqexplain.models.tokenization import offsets_by_decoding, tokenize


def detect_kind(model: torch.nn.Module) -> ModelKind | None:
    """The kind of a module from ``seqexplain_kind`` or the ``transformers`` Auto mappings (None: unknown)."""
    explicit = getattr(model, "seqexplain_kind", None)
    if explicit in ("causal", "seq2seq", "classifier"):
        return explicit  # type: ignore[no-any-return]
    from transformers.models.auto import modeling_auto as ma

    name = type(model).__name__
    tables: list[tuple[ModelKind, str]] = [
        ("seq2seq", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
        ("classifier", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
        ("causal", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ]
    for kind, table in tables:
        names = getattr(ma, table, {})
        flat = {v for vals in names.values() for v in ((vals,) if isinstance(vals, str) else vals)}
        if name in flat:
            return kind
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    if name.endswith("ForSequenceClassification"):
        return "classifier"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal"
    return None


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Switch a Hugging Face model to eager attention (the only one that returns weights) for the block,
    and restore the previous implementation afterwards, even on exceptions."""
    config = getattr(model, "config", None)
    prev = getattr(config, "_attn_implementation", None) if config is not None else None
    switch = prev is not None and prev != "eager" and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(prev)


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _accepts_exact(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class HFModel(SequenceModel):
    """A causal LM, encoder-decoder or sequence classifier with the Hugging Face calling convention."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, kind: ModelKind, model_id: str | None = None,
                 head_position: str | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.kind = kind
        self.model_id = model_id or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        self._logits_to_keep = _accepts_exact(model.forward, "logits_to_keep")
        self._position_ids = _accepts(model.forward, "position_ids")
        self._head_ok: bool | None = None  # output layer applicable at reading positions only (see _causal_logits)
        needed = ["attention_mask"] + (["decoder_attention_mask"] if kind == "seq2seq" else [])
        self._missing_masks = [n for n in needed if not _accepts(model.forward, n)]
        self.head_position = head_position or self._default_head_position()

    # ----------------------------------------------------------------- meta
    def _default_head_position(self) -> str:
        """Where a classifier's head reads: "first" for BERT-style poolers, "last" for decoder-style heads."""
        if self.kind != "classifier":
            return "last"
        if hasattr(self.model, "score") and not hasattr(self.model, "classifier"):
            return "last"
        return "first"

    def keep_mask_problem(self) -> str | None:
        if not self._missing_masks:
            return None
        return (f"{type(self.model).__name__}.forward() has no {' / '.join(self._missing_masks)} parameter, so "
                "dropped positions cannot be removed from attention")

    def max_positions(self) -> int | None:
        config = getattr(self.model, "config", None)
        if config is None:
            return getattr(self.model, "max_positions", None)
        if getattr(config, "model_type", "") in ("t5", "mt5", "umt5", "longt5"):
            return None  # relative position buckets: no hard limit
        for key in ("n_positions", "max_position_embeddings"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def label_names(self) -> list[str]:
        id2label = getattr(getattr(self.model, "config", None), "id2label", None) or {}
        n = self._num_labels()
        return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(n)]

    def _num_labels(self) -> int:
        config = getattr(self.model, "config", None)
        return int(getattr(config, "num_labels", 0) or getattr(self.model, "num_labels", 0) or 0)

    def _special_id(self, *names: str) -> int | None:
        for name in names:
            for src in (getattr(self.model, "config", None), getattr(getattr(self.model, "generation_config", None),
                                                                       "__dict__", None), self.tokenizer):
                if src is None:
                    continue
                value = src.get(name) if isinstance(src, dict) else getattr(src, name, None)
                if isinstance(value, list):
                    value = value[0] if value else None
                if isinstance(value, int):
                    return value
        return None

    # --------------------------------------------------------------- encode
    def encode(self, text: str, target: str | int | None = None, *, max_new_tokens: int = 10,
               truncate: bool = False) -> Example:
        """Tokenise ``text`` and ``target`` onto the input axis; ``target=None`` predicts it (greedy
        decoding up to ``max_new_tokens`` and before end-of-sequence, or the argmax label).

        Raises :class:`InputError` for empty text, a target that tokenises to nothing, an unknown label, or
        an input longer than the model's positions (unless ``truncate``: then the oldest prompt tokens, or the
        end of a source/classifier input, are cut)."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("the text is empty; give the prompt, source sentence or input to explain")
        limit = self.max_positions()
        if self.kind == "classifier":
            return self._encode_classifier(text, target, limit, truncate)
        if isinstance(target, int) and not isinstance(target, bool):
            raise InputError("a target for a language or translation model is text, not a label index")
        tgt = None if target is None else self._tokenize_target(target)
        if self.kind == "causal":
            return self._encode_causal(text, tgt, target, limit, truncate, max_new_tokens)
        return self._encode_seq2seq(text, tgt, target, limit, truncate, max_new_tokens)

    def _tokenize_target(self, target: str) -> Any:
        tok = tokenize(self.tokenizer, target, add_special_tokens=False)
        if not tok.ids:
            raise InputError(f"the target {target!r} tokenizes to no tokens; give a non-empty continuation")
        return tok

    def _check_length(self, n: int, limit: int | None, what: str) -> None:
        if limit is not None and n > limit:
            raise InputError(
                f"the {what} is {n} tokens but the model takes at most {limit} positions; shorten it or pass "
                "truncate=True (CLI: --truncate) to cut the oldest context tokens"
            )

    def _encode_causal(self, text: str, tgt: Any, target: Any, limit: int | None, truncate: bool,
                       max_new_tokens: int) -> Example:
        n_new = len(tgt.ids) if tgt is not None else max_new_tokens
        room = None if limit is None else limit - n_new
        if room is not None and room < 1:
            raise InputError(f"the target alone needs {n_new} of the model's {limit} positions; shorten it")
        src = tokenize(self.tokenizer, text, add_special_tokens=True,
                       max_length=room if truncate else None, truncation_side="left")
        if not src.ids:
            raise InputError("the text tokenizes to no tokens")
        if tgt is None:
            self._check_length(len(src.ids) + 1, limit, "prompt plus one generated token")
            new_ids = self._generate_causal(src.ids, max_new_tokens if room is None else min(max_new_tokens,
                                                                                           limit - len(src.ids)))
            target_text, t_off = offsets_by_decoding(self.tokenizer, new_ids)
            t_ids, t_tokens = new_ids, self.tokenizer.convert_ids_to_tokens(new_ids)
        else:
            self._check_length(len(src.ids) + len(tgt.ids), limit, "prompt plus target")
            target_text, t_ids, t_tokens, t_off = target, tgt.ids, tgt.tokens, tgt.offsets
        n_p = len(src.ids)
        return Example(
            kind="causal",
            input_ids=torch.tensor(src.ids + t_ids, dtype=torch.long),
            tokens=list(src.tokens) + list(t_tokens),
            offsets=list(src.offsets) + list(t_off),
            segments=_segments(src.offsets, "source") + _segments(t_off, "target"),
            target_ids=torch.tensor(t_ids, dtype=torch.long),
            target_tokens=list(t_tokens),
            target_positions=[n_p + i for i in range(len(t_ids))],
            n_source=n_p,
            text=text,
            target_text=target_text,
        )

    def _encode_seq2seq(self, text: str, tgt: Any, target: Any, limit: int | None, truncate: bool,
                        max_new_tokens: int) -> Example:
        src = tokenize(self.tokenizer, text, add_special_tokens=True, max_length=limit if truncate else None)
        self._check_length(len(src.ids), limit, "source")
        start = self._special_id("decoder_start_token_id")
        if start is None:
            raise UnsupportedError(f"{self.model_id} has no decoder_start_token_id in its config; set it")
        if tgt is None:
            n_new = max_new_tokens if limit is None else min(max_new_tokens, limit - 1)
            new_ids = self._generate_seq2seq(src.ids, start, n_new)
            target_text, t_off = offsets_by_decoding(self.tokenizer, new_ids)
            t_ids, t_tokens = new_ids, self.tokenizer.convert_ids_to_tokens(new_ids)
        else:
            self._check_length(len(tgt.ids) + 1, limit, "target")
            target_text, t_ids, t_tokens, t_off = target, tgt.ids, tgt.tokens, tgt.offsets
        n_s = len(src.ids)
        start_tok = self.tokenizer.convert_ids_to_tokens([start])[0]
        return Example(
            kind="seq2seq",
            input_ids=torch.tensor(src.ids + [start] + t_ids, dtype=torch.long),
            tokens=list(src.tokens) + [start_tok] + list(t_tokens),
            offsets=list(src.offsets) + [None] + list(t_off),
            segments=_segments(src.offsets, "source") + ["special"] + _segments(t_off, "target"),
            target_ids=torch.tensor(t_ids, dtype=torch.long),
            target_tokens=list(t_tokens),
            target_positions=[n_s + 1 + i for i in range(len(t_ids))],
            n_source=n_s,
            text=text,
            target_text=target_text,
        )

    def _encode_classifier(self, text: str, target: str | int | None, limit: int | None, truncate: bool) -> Example:
        src = tokenize(self.tokenizer, text, add_special_tokens=True, max_length=limit if truncate else None)
        if not src.ids:
            raise InputError("the text tokenizes to no tokens")
        self._check_length(len(src.ids), limit, "input")
        ex = Example(
            kind="classifier",
            input_ids=torch.tensor(src.ids, dtype=torch.long),
            tokens=list(src.tokens),
            offsets=list(src.offsets),
            segments=_segments(src.offsets, "source"),
            target_ids=torch.zeros(1, dtype=torch.long),
            target_tokens=[""],
            target_positions=[None],
            n_source=len(src.ids),
            text=text,
        )
        names = self.label_names()
        if target is None:
            with torch.no_grad(), eval_mode(self.model):
                logits = self._forward(ex, torch.ones(1, ex.length, dtype=torch.bool, device=self.device), None)
            label = int(logits[0].argmax())
        elif isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < len(names):
                raise InputError(f"label index {target} is out of range; the model has labels 0..{len(names) - 1}: "
                                 f"{', '.join(names)}")
            label = target
        else:
            lowered = {n.lower(): i for i, n in enumerate(names)}
            key = str(target).strip().lower()
            if key.isdigit() and key not in lowered:
                return self._encode_classifier(text, int(key), limit, truncate)
            if key not in lowered:
                raise InputError(f"unknown label {target!r}; the model's labels are: {', '.join(names)}")
            label = lowered[key]
        ex.target_ids = torch.tensor([label], dtype=torch.long)
        ex.target_tokens = [names[label]]
        ex.target_text = names[label]
        return ex

    # ------------------------------------------------------------- generate
    @torch.no_grad()
    def _generate_causal(self, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
        eos = self._special_id("eos_token_id")
        ids = list(prompt_ids)
        new: list[int] = []
        with eval_mode(self.model):
            for _ in range(max(1, max_new_tokens)):
                x = torch.tensor([ids], device=self.device)
                kwargs: dict[str, Any] = {"input_ids": x, "attention_mask": torch.ones_like(x)}
                if self._logits_to_keep:
                    kwargs["logits_to_keep"] = 1
                nxt = int(self.model(**kwargs).logits[0, -1].argmax())
                if nxt == eos and new:
                    break
                new.append(nxt)
                ids.append(nxt)
                if nxt == eos:
                    break
        return new

    @torch.no_grad()
    def _generate_seq2seq(self, src_ids: list[int], start: int, max_new_tokens: int) -> list[int]:
        eos = self._special_id("eos_token_id")
        x = torch.tensor([src_ids], device=self.device)
        dec = [start]
        with eval_mode(self.model):
            for _ in range(max(1, max_new_tokens)):
                d = torch.tensor([dec], device=self.device)
                logits = self.model(input_ids=x, attention_mask=torch.ones_like(x), decoder_input_ids=d).logits
                nxt = int(logits[0, -1].argmax())
                if nxt == eos and len(dec) > 1:
                    break
                dec.append(nxt)  # an immediate end-of-sequence is itself the prediction to explain
                if nxt == eos:
                    break
        return dec[1:]

    # ---------------------------------------------------------------- embed
    def _embedding_layers(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        if self.kind != "seq2seq":
            layer = self.model.get_input_embeddings()
            return layer, layer
        enc, dec = self.model.get_encoder(), self.model.get_decoder()
        return _input_embeddings(enc, self.model), _input_embeddings(dec, self.model)

    def embed(self, example: Example) -> torch.Tensor:
        ids = example.input_ids.to(self.device).unsqueeze(0)
        enc_layer, dec_layer = self._embedding_layers()
        if self.kind != "seq2seq":
            return enc_layer(ids)
        s = example.n_source
        return torch.cat([enc_layer(ids[:, :s]), dec_layer(ids[:, s:])], dim=1)

    # ---------------------------------------------------------------- score
    def _inputs(self, example: Example, keep: torch.Tensor, embeds: torch.Tensor | None) -> dict[str, Any]:
        """Keyword inputs of an encoder-decoder or classifier forward for the rows of ``keep`` (causal LMs: see
        :meth:`_causal_logits`)."""
        n_b = keep.shape[0]
        ids = example.input_ids.to(self.device).unsqueeze(0).expand(n_b, -1)
        if self.kind == "seq2seq":
            s, n_t = example.n_source, example.n_targets
            kwargs: dict[str, Any] = {"attention_mask": keep[:, :s].long(),
                                      "decoder_attention_mask": keep[:, s : s + n_t].long()}
            if embeds is None:
                kwargs["input_ids"], kwargs["decoder_input_ids"] = ids[:, :s], ids[:, s : s + n_t]
            else:
                kwargs["inputs_embeds"] = embeds[:, :s]
                kwargs["decoder_inputs_embeds"] = embeds[:, s : s + n_t]
        else:
            kwargs = {"attention_mask": keep.long()}
            if embeds is None:
                kwargs["input_ids"] = ids
            else:
                kwargs["inputs_embeds"] = embeds
            for key, value in example.extra.items():
                kwargs[key] = value.to(self.device).unsqueeze(0).expand(n_b, -1)
        for name in self._missing_masks:  # all positions are kept here (checked in distributions)
            kwargs.pop(name)
        return kwargs

    def _forward(self, example: Example, keep: torch.Tensor, embeds: torch.Tensor | None) -> torch.Tensor:
        """Raw logits of an encoder-decoder ``[B, T, V]`` or a classifier ``[B, C]``."""
        return self.model(**self._inputs(example, keep, embeds)).logits

    def distributions(self, example: Example, keep: torch.Tensor | None = None,
                      embeds: torch.Tensor | None = None, rows_target: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V]`` log-distribution over the vocabulary (classifier: over labels, ``T = 1``) at each
        target's reading position, under ``keep`` / ``embeds``; with ``rows_target[B]`` only that target of
        each row, ``[B, 1, V]``."""
        keep = self.batch_keep(example, keep, embeds)
        if self._missing_masks and not bool(keep.all()):
            self.require_keep_mask()
        if embeds is not None and embeds.shape[0] != keep.shape[0]:
            raise InputError(f"embeds batch {embeds.shape[0]} does not match keep batch {keep.shape[0]}")
        if self.kind == "classifier":
            return torch.log_softmax(self._forward(example, keep, embeds).float(), dim=-1).unsqueeze(1)
        positions = [int(p) for p in example.target_positions]  # type: ignore[arg-type]
        if self.kind == "seq2seq":
            s = example.n_source
            r = reading_positions(keep, positions, floor=s) - s  # decoder index of the reading position
            if rows_target is not None:
                r = r.gather(1, rows_target.to(r.device).view(-1, 1))
            logits = self._forward(example, keep, embeds)
            picked = torch.gather(logits, 1, r.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
        else:
            picked = self._causal_logits(example, keep, embeds, positions, rows_target)
        return torch.log_softmax(picked.float(), dim=-1)

    def _causal_logits(self, example: Example, keep: torch.Tensor, embeds: torch.Tensor | None,
                       positions: list[int], rows_target: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, V]`` logits at each row's reading positions for a causal LM.

        Positions ``≥ max(p_i)`` are never read and are cut. When the keep-mask is sparse (at most half the
        positions kept in every row, and every reading position kept), each row is *packed*: its kept tokens are
        moved to the left and run with their original position ids and a padding mask — the same computation
        as the masked full-length row, on fewer tokens. The output layer is applied only at the reading
        positions when the model's head can be applied to its base model's last hidden state (checked once
        against the model's own logits), else through ``logits_to_keep`` or full logits."""
        r = reading_positions(keep, positions, floor=0)  # [B, T]
        if rows_target is not None:
            r = r.gather(1, rows_target.to(r.device).view(-1, 1))  # [B, 1]
        end = int(r.max()) + 1  # later positions are never read
        keep_c = keep[:, :end]
        n_b = keep_c.shape[0]
        counts = keep_c.sum(1)
        n_max = int(counts.max()) if n_b else 0
        reads_kept = bool(keep_c.gather(1, r).all())
        ids = example.input_ids.to(self.device)[:end].unsqueeze(0).expand(n_b, -1)
        kwargs: dict[str, Any] = {}
        if embeds is None and self._position_ids and reads_kept and 0 < n_max <= end // 2:
            order = torch.argsort((~keep_c).to(torch.int8), dim=1, stable=True)[:, :n_max]  # kept first, in order
            valid = torch.arange(n_max, device=self.device).unsqueeze(0) < counts.unsqueeze(1)
            kwargs["input_ids"] = torch.where(valid, ids.gather(1, order), ids[:, :1])
            kwargs["attention_mask"] = valid.long()
            kwargs["position_ids"] = order
            read = torch.cumsum(keep_c.long(), 1).gather(1, r) - 1  # index of r among the kept positions
        else:
            kwargs["attention_mask"] = keep_c.long()
            if embeds is None:
                kwargs["input_ids"] = ids
            else:
                kwargs["inputs_embeds"] = embeds[:, :end]
            if self._position_ids:
                kwargs["position_ids"] = torch.arange(end, device=self.device).unsqueeze(0).expand(n_b, -1)
            read = r
        for key, value in example.extra.items():
            kwargs.setdefault(key, value.to(self.device)[:end].unsqueeze(0).expand(n_b, -1))
        for name in self._missing_masks:  # all positions are kept here (checked in distributions)
            kwargs.pop(name, None)
        if self._head_at_reads(kwargs, read):
            picked = None
            if n_b > 1 and reads_kept and set(kwargs) == {"input_ids", "attention_mask", "position_ids"}:
                picked = shared_prefix_states(self.model.base_model, kwargs["input_ids"], kwargs["attention_mask"],
                                              kwargs["position_ids"], read)
            if picked is None:
                hidden = self.model.base_model(**kwargs).last_hidden_state
                picked = hidden.gather(1, read.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
            return self.model.get_output_embeddings()(picked)
        needed, index = torch.unique(read, sorted=True, return_inverse=True)
        if self._logits_to_keep:
            logits = self.model(**kwargs, logits_to_keep=needed).logits
        else:
            logits = self.model(**kwargs).logits[:, needed]
        return torch.gather(logits, 1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))

    def _head_at_reads(self, kwargs: dict[str, Any], read: torch.Tensor) -> bool:
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
                        full = self.model(**one).logits[0]
                        mine = head(base(**one).last_hidden_state)[0]
                        self._head_ok = bool(torch.allclose(full, mine, rtol=1e-4, atol=1e-5))
                    except (TypeError, AttributeError, RuntimeError):
                        self._head_ok = False
        return self._head_ok

    # ------------------------------------------------------------ attention
    def attentions(self, example: Example) -> dict[str, list[torch.Tensor]]:
        if not _accepts(self.model.forward, "output_attentions") or getattr(self.model, "config", None) is None:
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) cannot return attention weights; "
                "use a gradient or perturbation method instead"
            )
        keep = torch.ones(1, example.length, dtype=torch.bool, device=self.device)
        with torch.no_grad(), eval_mode(self.model), eager_attention(self.model):
            out = self.model(**self._inputs(example, keep, None), output_attentions=True)
        names = ("encoder_attentions", "decoder_attentions", "cross_attentions") if self.kind == "seq2seq" \
            else ("attentions",)
        stacks = {name.removesuffix("_attentions").replace("attentions", "self"): getattr(out, name, None)
                  for name in names}
        if any(not v for v in stacks.values()):
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) returned no attention weights; "
                "use a gradient or perturbation method instead"
            )
        return {k: [a.float() for a in v] for k, v in stacks.items()}


def _input_embeddings(stack: torch.nn.Module, model: torch.nn.Module) -> torch.nn.Module:
    layer = getattr(stack, "embed_tokens", None)
    if isinstance(layer, torch.nn.Module):
        return layer
    with contextlib.suppress(NotImplementedError, AttributeError):
        got = stack.get_input_embeddings()
        if isinstance(got, torch.nn.Module):
            return got
    return model.get_input_embeddings()


def _segments(offsets: list[tuple[int, int] | None], name: str) -> list[str]:
    return [name if o is not None else "special" for o in offsets]
