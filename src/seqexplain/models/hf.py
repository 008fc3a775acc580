"""Adapters for Hugging Face models and any module with their calling convention.

A module qualifies when ``forward`` takes ``input_ids`` or ``inputs_embeds`` and ``attention_mask`` (causal models
also ``position_ids``) and returns an object with ``.logits``; encoder-decoders also take ``decoder_input_ids`` /
``decoder_inputs_embeds`` / ``decoder_attention_mask``. The kind is read from the Auto-class mappings of
``transformers`` (so every architecture they load works), from a ``seqexplain_kind`` attribute, or given
explicitly (:func:`HFModel`), and picks the adapter: :class:`~seqexplain.models.hf_causal.HFCausalLM`,
:class:`~seqexplain.models.hf_seq2seq.HFSeq2SeqLM` or :class:`~seqexplain.models.hf_classifier.HFClassifier`.
This module holds what they share; what is read off the module itself (its kind, the keywords its forward takes, its
limits, its embedding layers) is in :mod:`seqexplain.models.hf_module`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from seqexplain.errors import InputError, UnreadableTextError, UnsupportedError
from seqexplain.models.base import ModelKind, SequenceModel
from seqexplain.models.behaviour import verify_vectors
from seqexplain.models.example import Example
from seqexplain.models.greedy import DecodingRules
from seqexplain.models.hf_module import (
    accepts,
    accepts_exact,
    config_positions,
    decoding_rules,
    eager_attention,
    forced_eos_warnings,
    probe_position_offset,
)
from seqexplain.models.kind_check import check_kind
from seqexplain.models.tokenization import (
    Tokenized,
    foil_space_warnings,
    tokenize,
    tokenize_many,
    typed_special_warnings,
)


def HFModel(model: torch.nn.Module, tokenizer: Any, kind: ModelKind, model_id: str | None = None,
            head_position: str | None = None) -> HFAdapter:
    """The adapter for a Hugging Face-convention module of ``kind``."""
    from seqexplain.models.hf_causal import HFCausalLM
    from seqexplain.models.hf_classifier import HFClassifier
    from seqexplain.models.hf_labeller import HFTokenLabeller
    from seqexplain.models.hf_seq2seq import HFSeq2SeqLM

    if kind == "causal":
        return HFCausalLM(model, tokenizer, model_id)
    if kind == "seq2seq":
        return HFSeq2SeqLM(model, tokenizer, model_id)
    if kind == "classifier":
        return HFClassifier(model, tokenizer, model_id, head_position=head_position)
    if kind == "labeller":
        return HFTokenLabeller(model, tokenizer, model_id)
    raise InputError(f"unknown model kind {kind!r}; use causal, seq2seq, classifier or labeller")


def segments_of(offsets: list[tuple[int, int] | None], name: str) -> list[str]:
    return [name if o is not None else "special" for o in offsets]


class TokenEmbedding:
    """``embed`` of an adapter whose input axis is its token ids (or an example's precomputed vectors): the
    model's input-embedding layer over the ids; many examples' ids go through the layer in one call (a lookup per
    id, so each example's rows are those of a call of its own)."""

    device: torch.device
    input_layer: Any  # HFAdapter.input_layer
    vectors_of: Any  # SequenceModel.vectors_of

    def embed(self, example: Example) -> torch.Tensor:
        if example.input_vectors is not None:
            return self.vectors_of(example)
        assert example.input_ids is not None
        return self.input_layer()(example.input_ids.to(self.device).unsqueeze(0))

    def embed_many(self, examples: Sequence[Example]) -> list[torch.Tensor]:
        if len(examples) < 2 or any(ex.input_vectors is not None or ex.input_ids is None for ex in examples):
            return [self.embed(ex) for ex in examples]
        ids = torch.cat([ex.input_ids for ex in examples if ex.input_ids is not None]).to(self.device)
        rows = self.input_layer()(ids.unsqueeze(0))[0]
        return [part.unsqueeze(0) for part in rows.split([ex.length for ex in examples])]


class HFAdapter(SequenceModel):
    """What the Hugging Face adapters share: identity, limits, special ids, target tokenisation, masks."""

    kind: ModelKind
    mask_names: tuple[str, ...] = ("attention_mask",)

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_id: str | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        self._missing_masks = [n for n in self.mask_names if not accepts(model.forward, n)]
        check_kind(self)  # a module of another kind (a masked LM, a token classifier, ...): UnsupportedError

    def position_offset(self) -> int | None:
        """The position id the model itself gives an input's first token (for an input without padding): 0 for
        most, ``padding_idx + 1`` for the RoBERTa family (RoBERTa, XLM-R, Longformer, CamemBERT), whose position
        ids start after the padding index. Adapters pass ``index + offset`` as position ids, so that the model
        explained is the model itself. Found once by running a few tokens without and with position ids; None
        when the forward takes no ``position_ids``, neither start matches, or the model ignores the ids it is given
        (gapped ids give exactly what contiguous ones give: Falcon with ALiBi, DeBERTa-v3's relative attention), so
        that original position ids cannot be kept by passing them (none are then passed)."""
        if not hasattr(self, "_position_offset"):
            self._position_offset: int | None = None
            self._ids_ignored = False
            if accepts_exact(self.model.forward, "position_ids"):
                pads = {self.special_id("pad_token_id")}
                self._position_offset, self._ids_ignored = probe_position_offset(self.model, pads, self.vocab_size(),
                                                                                 self.device)
        return self._position_offset

    def ignores_position_ids(self) -> bool:
        """Whether the forward takes ``position_ids`` but ignores them (:meth:`position_offset`'s probe)."""
        self.position_offset()
        return self._ids_ignored

    def keep_mask_problem(self) -> str | None:
        if not self._missing_masks:
            return None
        return (f"{type(self.model).__name__}.forward() has no {' / '.join(self._missing_masks)} parameter, so "
                "dropped positions cannot be removed from attention")

    def max_positions(self) -> int | None:
        config = getattr(self.model, "config", None)
        if config is None:
            return getattr(self.model, "max_positions", None)
        return config_positions(config)

    def special_id(self, *names: str) -> int | None:
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

    def pad_id(self) -> int:
        value = self.special_id("pad_token_id")
        return 0 if value is None else int(value)

    def check_text(self, text: Any, what: str = "text") -> str:
        """``text`` if it is a non-blank string of valid Unicode, else :class:`InputError` saying which."""
        if not isinstance(text, str):
            raise InputError(f"the {what} must be a string, not {type(text).__name__}")
        check_unicode(text, what)
        if not text.strip():
            raise UnreadableTextError(f"the {what} is empty; give the prompt, source sentence or input to explain")
        return text

    def check_max_new_tokens(self, max_new_tokens: Any) -> int:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be a positive number of tokens, got {max_new_tokens!r}")
        return max_new_tokens

    def check_generation(self, text: Any, target: Any, max_new_tokens: Any, model: str
                         ) -> tuple[str, int, Tokenized | None, list[str]]:
        """The checked text, ``max_new_tokens``, tokenised target (None: to be generated) of a language or
        translation model (``model`` names it in the error for a label index), and the target's warnings (pieces
        the vocabulary lacks: :meth:`unknown_pieces`)."""
        text = self.check_text(text)
        max_new_tokens = self.check_max_new_tokens(max_new_tokens)
        if isinstance(target, int) and not isinstance(target, bool):
            raise InputError(f"a target for a {model} model is text, not a label index")
        if target is None:
            return text, max_new_tokens, None, []
        tgt = self.tokenize_target(target)
        n_unknown = self.unknown_pieces(target, tgt)
        unk = getattr(self.tokenizer, "unk_token", None)
        return text, max_new_tokens, tgt, [] if not n_unknown else [
            f"target {target!r}: {n_unknown} of its {len(tgt.ids)} token(s) are not in the vocabulary and are "
            f"explained as {unk!r}, the token the model reads and predicts there, not the text given"]

    def unknown_pieces(self, text: str, tok: Tokenized) -> int:
        """How many of ``tok``'s ids are the tokenizer's unknown token beyond the times ``text`` spells that token
        itself (words or characters the vocabulary lacks, read as ``<unk>``)."""
        unk_id, unk = getattr(self.tokenizer, "unk_token_id", None), getattr(self.tokenizer, "unk_token", None)
        if not isinstance(unk_id, int):
            return 0
        spelled = text.count(unk) if isinstance(unk, str) and unk else 0
        return max(0, tok.ids.count(unk_id) - spelled)

    def check_content(self, tok: Tokenized, what: str = "text") -> None:
        """A text must give at least one token that is not special (else it would be explained from the
        special tokens alone)."""
        if not tok.ids:
            raise UnreadableTextError(f"the {what} tokenizes to no tokens")
        if all(o is None for o in tok.offsets):
            raise UnreadableTextError(f"the {what} tokenizes to special tokens only ({' '.join(tok.tokens)}); give "
                                      "text the tokenizer can read")

    def check_length(self, n: int, limit: int | None, what: str,
                     remedy: str = "pass truncate=True (CLI: --truncate) to cut its end") -> None:
        """:class:`InputError` when ``n`` tokens exceed ``limit``; ``remedy`` says what ``truncate`` would cut (the
        end of a source or classifier input, the oldest tokens of a prompt), or that it cannot help."""
        if limit is not None and n > limit:
            raise InputError(f"the {what} is {n} tokens but the model takes at most {limit} positions; shorten it or "
                             f"{remedy}")

    def tokenize_input(self, text: str, what: str, truncate: bool) -> tuple[Tokenized, list[str]]:
        """A source or classifier input with special tokens, checked for content and length; with ``truncate``
        its end is cut to the model's positions and a warning says how much."""
        return self.tokenize_inputs([text], what, truncate)[0]

    def tokenize_inputs(self, texts: Sequence[str], what: str, truncate: bool) -> list[tuple[Tokenized, list[str]]]:
        """:meth:`tokenize_input` of each text, in order, the texts read by the tokenizer together
        (:func:`~seqexplain.models.tokenization.tokenize_many`)."""
        limit = self.max_positions()
        out = []
        for text, full in zip(texts, tokenize_many(self.tokenizer, texts, add_special_tokens=True), strict=True):
            self.check_content(full)
            src, warnings = full, typed_special_warnings(self.tokenizer, full, what)
            if truncate and limit is not None and len(full.ids) > limit:
                src = tokenize(self.tokenizer, text, add_special_tokens=True, max_length=limit)
                warnings += truncation_warning(len(full.ids), len(src.ids), what, "the end")
            self.check_length(len(src.ids), limit, what)
            out.append((src, warnings))
        return out

    def tokenize_target(self, target: Any) -> Tokenized:
        if not isinstance(target, str):
            raise InputError(f"the target must be a string, not {type(target).__name__}")
        check_unicode(target, "target")
        tok = tokenize(self.tokenizer, target, add_special_tokens=False)
        if not tok.ids:
            raise InputError(f"the target {target!r} tokenizes to no tokens; give a non-empty continuation")
        return tok

    def foil_ids(self, example: Example, foil: Any) -> tuple[torch.Tensor, list[str]]:
        """Foil tokens of a language or translation model: a text (tokenised like the target), or a list of one
        token string or id per target."""
        if isinstance(foil, str):
            check_unicode(foil, "foil")
            tok = tokenize(self.tokenizer, foil, add_special_tokens=False)
            if not tok.ids:
                raise InputError(f"the foil {foil!r} tokenizes to no tokens; give a token to contrast the target with")
            if self.unknown_pieces(foil, tok):
                raise InputError(f"the foil {foil!r} is not in the vocabulary (it tokenizes to "
                                 f"{' '.join(tok.tokens)}); give a foil the model can predict")
            return torch.tensor(tok.ids, dtype=torch.long), list(tok.tokens)
        if isinstance(foil, (list, tuple)) and foil:
            ids: list[int] = []
            for f in foil:
                if isinstance(f, int) and not isinstance(f, bool):
                    ids.append(f)
                    continue
                got = self.tokenizer.convert_tokens_to_ids([str(f)]) if hasattr(self.tokenizer,
                                                                                "convert_tokens_to_ids") else [None]
                if got[0] is None or got[0] == getattr(self.tokenizer, "unk_token_id", None):
                    raise InputError(f"foil {f!r} is not one token of this tokenizer; give a text or token ids")
                ids.append(int(got[0]))
            vocab = self.vocab_size()
            bad = [i for i in ids if not 0 <= i < vocab]
            if bad:
                raise InputError(f"foil id(s) {bad} are outside the vocabulary (0..{vocab - 1})")
            return torch.tensor(ids, dtype=torch.long), [self.target_name(example, i) for i in ids]
        raise InputError("the foil must be a text or a list with one token per target")

    def foil_warnings(self, example: Example, foil: Any, names: list[str]) -> list[str]:
        """:func:`~seqexplain.models.tokenization.foil_space_warnings` against the first target."""
        return foil_space_warnings(self.tokenizer, foil, example.target_tokens[:1], names)

    def input_layer(self) -> torch.nn.Module:
        """The input-embedding layer (gradient methods differentiate its output)."""
        getter = getattr(self.model, "get_input_embeddings", None)
        layer = None
        if callable(getter):
            with contextlib.suppress(NotImplementedError, AttributeError):
                layer = getter()
        if not isinstance(layer, torch.nn.Module):
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) has no get_input_embeddings(), so its input "
                "embeddings cannot be differentiated or replaced; gradient methods and replacement baselines need "
                "it (occlusion by dropping and rationales do not)")
        return layer

    def input_width(self) -> int | None:
        layer = self.model.get_input_embeddings() if hasattr(self.model, "get_input_embeddings") else None
        return int(layer.embedding_dim) if isinstance(layer, torch.nn.Embedding) else None

    def vocab_size(self) -> int:
        out = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        if isinstance(out, torch.nn.Linear):
            return int(out.out_features)
        return int(getattr(getattr(self.model, "config", None), "vocab_size", 0) or len(self.tokenizer))

    def drop_missing_masks(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Leave out masks the module does not take (only reached when nothing is dropped)."""
        for name in self._missing_masks:
            kwargs.pop(name, None)
        return kwargs

    def ids_probe(self, example: Example) -> Example | None:
        """For an example over precomputed vectors: the same positions over token ids ``1, 2, …`` (cycled through
        the vocabulary), so that the vectors-against-ids check runs before vectors are fed."""
        if example.input_ids is not None:
            return example
        ids = torch.arange(example.length) % max(1, self.vocab_size() - 1) + 1
        return example.replace(input_ids=ids, input_vectors=None)

    def span_inputs(self, example: Example, start: int = 0, stop: int | None = None, prefix: str = ""
                    ) -> dict[str, torch.Tensor]:
        """The module's inputs for positions ``[start, stop)`` of ``example`` as a batch of one:
        ``{prefix}input_ids``, or ``{prefix}inputs_embeds`` for an example over precomputed vectors (which stand
        for the input layer's output, as in ``embed``), and ``{prefix}attention_mask`` of ones."""
        stop = example.length if stop is None else stop
        if example.input_ids is not None:
            key, x = "input_ids", example.input_ids[start:stop]
        else:
            assert example.input_vectors is not None
            verify_vectors(self, example)
            key, x = "inputs_embeds", self.vectors_of(example)[0, start:stop]  # checked, in the weights' dtype
        return {f"{prefix}{key}": x.to(self.device).unsqueeze(0),
                f"{prefix}attention_mask": torch.ones(1, stop - start, dtype=torch.long, device=self.device)}

    def decoding(self) -> tuple[DecodingRules, list[str]]:
        """The rules of the model's generation config that greedy decoding applies, and the warning a decoded
        target carries when the config asks for more (:func:`~seqexplain.models.hf_module.decoding_rules`; read
        once)."""
        if not hasattr(self, "_decoding"):
            self._decoding = decoding_rules(self.model, self.kind == "seq2seq")
        return self._decoding

    def decoded_warnings(self, new_ids: list[int], limit: int) -> list[str]:
        """The warnings of a target decoded greedily in up to ``limit`` tokens: :meth:`decoding`'s and
        :func:`~seqexplain.models.hf_module.forced_eos_warnings`'."""
        return [*self.decoding()[1], *forced_eos_warnings(self.model, self.tokenizer, new_ids, limit)]

    def output_attentions(self, **inputs: Any) -> Any:
        """One forward with ``output_attentions=True`` in eval mode with eager attention."""
        from seqexplain.models.module_state import eval_mode

        if not accepts(self.model.forward, "output_attentions") or getattr(self.model, "config", None) is None:
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) cannot return attention weights; "
                "use a gradient or perturbation method instead")
        with torch.no_grad(), eval_mode(self.model), eager_attention(self.model), self._autocast():
            return self.model(**inputs, output_attentions=True)

    def attention_maps(self, layers: Sequence[torch.Tensor], n_q: int, n_k: int) -> list[torch.Tensor]:
        """:func:`head_mean` of ``layers``, each checked to be ``[n_q, n_k]``: a model with local or block-sparse
        attention (Longformer) returns weights over a window, not over positions, which read as positions would
        be silently wrong (:class:`UnsupportedError`)."""
        maps = head_mean(layers)
        bad = next((tuple(a.shape) for a in maps if tuple(a.shape) != (n_q, n_k)), None)
        if bad is not None:
            raise UnsupportedError(
                f"{self.model_id} ({type(self.model).__name__}) returned attention weights of shape {list(bad)}, not "
                f"[{n_q}, {n_k}] over the input's positions (local or block-sparse attention); use a gradient or "
                "perturbation method instead")
        return maps

    def no_attention(self) -> None:
        raise UnsupportedError(f"{self.model_id} ({type(self.model).__name__}) returned no attention weights; "
                               "use a gradient or perturbation method instead")


def check_unicode(text: str, what: str) -> None:
    """:class:`InputError` for strings that are not valid Unicode (lone surrogates: undecodable bytes on the
    command line, or broken surrogate pairs), which tokenizers reject with a traceback."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"the {what} is not valid Unicode (character {exc.start} is a lone surrogate, e.g. from "
                         "bytes that are not UTF-8); pass UTF-8 text") from None


def truncation_warning(n_total: int, n_kept: int, what: str, side: str) -> list[str]:
    """The warning an example carries when ``truncate`` cut tokens."""
    if n_kept >= n_total:
        return []
    return [f"truncated: {n_total - n_kept} of {n_total} {what} tokens were cut ({side}) to fit the model's "
            "positions; the explanation is of the shortened input"]


def head_mean(layers: Sequence[torch.Tensor], row: int = 0) -> list[torch.Tensor]:
    """Per layer, the head-averaged attention of batch row ``row`` as float64 ``[Lq, Lk]``."""
    return [a[row].double().mean(0) for a in layers]
