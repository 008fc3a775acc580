"""What seqexplain reads off a Hugging Face-convention module, before and while an adapter wraps it: its kind
(:func:`detect_kind`, :func:`kind_of_class_name`; :func:`unsupported_head` for a kind it does not explain), the
keywords its ``forward`` takes (:func:`accepts`, :func:`accepts_exact`), its position limit
(:func:`config_positions`), the position id it gives the first token (:func:`probe_position_offset`), its
input-embedding layers and the factor a stack applies to token embeddings only when it
reads ids (:func:`input_embeddings`, :func:`ids_only_scale`), the rules of its generation config that greedy decoding
applies (:func:`decoding_rules`), how it places tokens (:func:`attention_window`, :func:`steps_through_masks`,
:func:`positions_follow_mask`), and a switch to eager attention (:func:`eager_attention`, the only implementation that
returns weights)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from seqexplain.errors import UnsupportedError
from seqexplain.models.base import ModelKind
from seqexplain.models.greedy import DecodingRules
from seqexplain.models.module_state import eval_mode, first_parameter


def detect_kind(model: torch.nn.Module) -> ModelKind | None:
    """The kind of a module from ``seqexplain_kind`` or the ``transformers`` Auto mappings (None: unknown)."""
    explicit = getattr(model, "seqexplain_kind", None)
    if explicit in ("causal", "seq2seq", "classifier"):
        return explicit  # type: ignore[no-any-return]
    found = kind_of_class_name(type(model).__name__)
    if found is not None:
        return found
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    return None


def _mapped_classes(table: str) -> set[str]:
    """The class names of one ``transformers`` Auto mapping (``MODEL_FOR_..._MAPPING_NAMES``; empty when absent)."""
    from transformers.models.auto import modeling_auto as ma

    names = getattr(ma, table, {})
    return {v for vals in names.values() for v in ((vals,) if isinstance(vals, str) else vals)}


def probe_ids(vocab: int, avoid: set[int | None], n: int = 4) -> list[int]:
    """``n`` small token ids below ``vocab``, none of ``avoid`` (pad and other special ids): the input of the
    adapters' behaviour checks."""
    return [i for i in range(1, 16 + n) if i not in avoid and i < vocab][:n]


def probe_position_offset(model: torch.nn.Module, pad_ids: set[int | None], vocab: int, device: torch.device
                          ) -> tuple[int | None, bool]:
    """``(offset, ignored)``: the position id ``model`` gives an input's first token, found by running a few tokens
    without position ids and with ids starting at each candidate (0, and one past each padding index: the pad ids
    given or one its embeddings hold, MPNet's 1), taking the closest start; None when none matches to ``1e-4``
    (``1e-2`` for half-precision weights) or the forward fails. ``ignored``: gapped ids give exactly the logits of
    contiguous ones (Falcon with ALiBi, DeBERTa-v3's relative attention), so the offset is None too."""
    # a padding index must not be among the probe's tokens (it would be counted as padding)
    indices = set(pad_ids) | {m.padding_idx for m in model.modules()
                              if isinstance(getattr(m, "padding_idx", None), int)}
    candidates = [0] + sorted({i + 1 for i in indices if i is not None and i + 1 > 0})
    ids = probe_ids(vocab, indices)
    x = torch.tensor([ids], device=device)
    mask = torch.ones_like(x)
    param = first_parameter(model)
    dtype = torch.float32 if param is None else param.dtype
    tol = 1e-4 if dtype in (torch.float32, torch.float64) else 1e-2  # half-precision weights: rounding
    with torch.no_grad(), eval_mode(model):
        try:
            own = model(input_ids=x, attention_mask=mask).logits
            best: tuple[float, int, torch.Tensor] | None = None  # the closest start, not the first one close
            for offset in candidates:
                pos = torch.arange(len(ids), device=device).unsqueeze(0) + offset
                given = model(input_ids=x, attention_mask=mask, position_ids=pos).logits
                gap = float((own.float() - given.float()).abs().max())
                if best is None or gap < best[0]:
                    best = (gap, offset, given)
            if best is None or not torch.allclose(own.float(), best[2].float(), rtol=tol,
                                                  atol=tol * float(own.abs().max())):
                return None, False
            _, offset, given = best
            pos = torch.arange(len(ids), device=device).unsqueeze(0) + offset
            gapped = pos + torch.tensor([0, 0, 2, 4][: len(ids)], device=device)
            ignored = torch.equal(given, model(input_ids=x, attention_mask=mask, position_ids=gapped).logits)
            return (None if ignored else offset), ignored
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError):
            return None, False


def kind_of_class_name(name: str) -> ModelKind | None:
    """The kind of a model class named ``name`` (e.g. a config's ``architectures`` entry): from the ``transformers``
    Auto mappings, else from the name's ending (``...ForSequenceClassification``, ``...ForCausalLM``,
    ``...LMHeadModel``); None when neither tells. The class decides before
    ``is_encoder_decoder``: a BART or T5 *classifier* is an encoder-decoder too."""
    tables: list[tuple[ModelKind, str]] = [
        ("seq2seq", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
        ("classifier", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES"),
        ("labeller", "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES"),
        ("causal", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ]
    for kind, table in tables:
        if name in _mapped_classes(table):
            return kind
    if name.endswith("ForSequenceClassification"):
        return "classifier"
    if name.endswith("ForTokenClassification"):
        return "labeller"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal"
    return None


BARE_MODEL = "a bare model without a head"
_UNSUPPORTED_HEADS = (("a masked LM", "MODEL_FOR_MASKED_LM_MAPPING_NAMES", ("ForMaskedLM",)),
                      ("a question-answering model", "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
                       ("ForQuestionAnswering",)),
                      ("a multiple-choice model", "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES", ("ForMultipleChoice",)),
                      (BARE_MODEL, "MODEL_MAPPING_NAMES", ()))
"""(what such a class is, its ``transformers`` Auto mapping, the class-name endings that tell it)"""
UNSUPPORTED_KINDS = ("seqexplain explains causal LMs, encoder-decoders, sequence classifiers and token classifiers, "
                     "not masked LMs, question-answering models or bare encoders; load the model with such a head "
                     "(AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, "
                     "AutoModelForTokenClassification)")


def unsupported_head(name: str, bare: bool = True) -> str | None:
    """What a model class named ``name`` is when it is of a kind seqexplain does not explain ("a masked LM",
    "a token classifier", …; from the ``transformers`` Auto mappings or the name's ending), None otherwise (one of
    the three kinds, or a class neither tells). ``bare=False`` leaves bare models (``BertModel``, ``GPT2Model``) out:
    a saved one may load as a causal LM whose head is tied to its input embeddings."""
    if kind_of_class_name(name) is not None:
        return None
    for what, table, endings in _UNSUPPORTED_HEADS[: None if bare else -1]:
        if name.endswith(endings) or name in _mapped_classes(table):
            return what
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


def accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (explicitly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def accepts_exact(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def config_positions(config: Any) -> int | None:
    """The most positions a model of ``config`` takes (None: no hard limit, e.g. T5's relative buckets); for an
    ``EncoderDecoderModel`` (its limits live in the ``encoder`` / ``decoder`` sub-configs) the smaller of the two."""
    subs = [getattr(config, n, None) for n in ("encoder", "decoder")]
    if all(sub is not None and hasattr(sub, "model_type") for sub in subs):
        limits = [v for v in (config_positions(sub) for sub in subs) if v is not None]
        return min(limits) if limits else None
    if getattr(config, "model_type", "") in ("t5", "mt5", "umt5", "longt5"):
        return None  # relative position buckets: no hard limit
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def input_embeddings(stack: torch.nn.Module, model: torch.nn.Module) -> torch.nn.Module:
    """The token-embedding layer of an encoder or decoder stack."""
    layer = getattr(stack, "embed_tokens", None)
    if isinstance(layer, torch.nn.Module):
        return layer
    with contextlib.suppress(NotImplementedError, AttributeError):
        got = stack.get_input_embeddings()
        if isinstance(got, torch.nn.Module):
            return got
    got = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(got, torch.nn.Module):
        raise UnsupportedError(f"{type(model).__name__} has no input-embedding layer for its encoder or decoder; "
                               "gradient methods need one")
    return got


def attention_window(config: Any) -> int | None:
    """The smallest local-attention window of a config (GPT-Neo's ``window_size``, a ``sliding_window`` in use),
    None for none."""
    sizes = [getattr(config, "window_size", None)]
    if getattr(config, "use_sliding_window", True) is not False:
        sizes.append(getattr(config, "sliding_window", None))
    found = [int(v) for v in sizes if isinstance(v, int) and not isinstance(v, bool) and v > 0]
    return min(found) if found else None


def steps_through_masks(model: torch.nn.Module) -> bool:
    """Whether a ``transformers`` model (one with a config) has a recurrent or state-space layer (Mamba, Jamba's
    Mamba mixers, RecurrentGemma's RG-LRU) or no attention module at all, found by its modules' class names: a
    token masked in place would still step such a layer's state. Other modules: False."""
    if getattr(getattr(model, "config", None), "model_type", None) is None:
        return False
    names = [type(m).__name__.lower() for m in model.modules()]
    recurrent = any(k in n for n in names for k in ("mamba", "mixer", "ssm", "rglru", "recurrent"))
    return recurrent or not any("attention" in n for n in names)


def mixing_warning(name: str) -> str:
    """The attention methods' warning for a hybrid model (:func:`steps_through_masks` with attention layers too)."""
    return (f"{name} mixes tokens in recurrent or state-space layers as well as in attention: the attention maps (and "
            "their rollout) show only its attention layers' share; a gradient or perturbation method sees all of it")


@torch.no_grad()
def positions_follow_mask(logits_of: Any, ids: list[int], device: torch.device) -> bool:
    """Whether masking a token in place gives what deleting it and closing the gap gives, on five tokens ``ids``
    with the middle one dropped, read at the last token (``logits_of(kwargs)`` runs the model): the model counts
    positions over its attention mask (Bloom's and Falcon's ALiBi)."""
    x = torch.tensor([ids], device=device)
    mask = torch.ones_like(x)
    mask[0, 2] = 0
    kept = x[:, [0, 1, 3, 4]]
    a = logits_of({"input_ids": x, "attention_mask": mask})[0, -1].float()
    b = logits_of({"input_ids": kept, "attention_mask": torch.ones_like(kept)})[0, -1].float()
    return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max())))


SCALE_ATTRIBUTES = ("embed_scale", "embedding_multiplier")
"""Attributes under which a stack keeps the factor it may apply to its token embeddings (Marian, Pegasus:
``embed_scale``; Falcon-H1: ``embedding_multiplier``)."""


def ids_only_scale(stack: torch.nn.Module, layer: torch.nn.Module, vocab: int, **kwargs: Any) -> float:
    """The factor ``stack`` multiplies its token embeddings by when it reads ``input_ids`` but not when it is given
    ``inputs_embeds`` (the multiplication inside ``if inputs_embeds is None``), 1 for a stack that applies it to
    both or has none: found by running the stack on a few token ids both ways (``kwargs``: its other inputs). An
    adapter feeds the vectors of ``embed`` (the input layer's output) as ``vectors × scale``."""
    from seqexplain.models.module_state import eval_mode

    scale = next((v for v in (getattr(stack, n, None) for n in SCALE_ATTRIBUTES)
                  if isinstance(v, (int, float)) and not isinstance(v, bool)), None)
    if scale is None or float(scale) == 1.0:
        return 1.0
    device = next((p.device for p in stack.parameters()), torch.device("cpu"))
    ids = torch.arange(1, 5, device=device).clamp(max=vocab - 1).unsqueeze(0)
    with torch.no_grad(), eval_mode(stack):
        try:
            by_ids = stack(input_ids=ids, **kwargs).last_hidden_state
            plain = layer(ids)
            if torch.allclose(by_ids, stack(inputs_embeds=plain, **kwargs).last_hidden_state, rtol=1e-4, atol=1e-5):
                return 1.0
            scaled = stack(inputs_embeds=plain * float(scale), **kwargs).last_hidden_state
        except (TypeError, ValueError, AttributeError, RuntimeError):
            return 1.0  # a stack that cannot run alone so: SequenceModel.verify_vectors still checks the whole model
        return float(scale) if torch.allclose(by_ids, scaled, rtol=1e-4, atol=1e-5) else 1.0


#: generation-config settings under which ``model.generate`` may continue otherwise than greedy decoding with
#: :class:`~seqexplain.models.greedy.DecodingRules`, with the value that changes nothing
_UNAPPLIED = {"num_beams": 1, "do_sample": False, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0,
              "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0,
              "sequence_bias": None, "forced_decoder_ids": None}


def decoding_rules(model: torch.nn.Module, encoder_decoder: bool) -> tuple[DecodingRules, list[str]]:
    """The token rules of ``model.generation_config`` that greedy decoding applies, as ``model.generate``'s logits
    processors do: the forced first token (an encoder-decoder's ``forced_bos_token_id``; ignored for a decoder-only
    model, whose first new token is not the sequence's first), suppressed tokens, one-token bad words (never
    end-of-sequence); and a warning naming the settings it does not apply (beams, sampling, repetition penalties,
    minimum lengths, longer bad words, …), under which ``model.generate`` may give another target than the
    greedy one explained."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return DecodingRules(), []

    def ids(name: str) -> tuple[int, ...]:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        return tuple(int(t) for t in value) if isinstance(value, (list, tuple)) else ()

    bad = getattr(config, "bad_words_ids", None) or []
    eos = set(ids("eos_token_id"))
    single = tuple(int(w[0]) for w in bad if isinstance(w, (list, tuple)) and len(w) == 1 and int(w[0]) not in eos)
    forced = getattr(config, "forced_bos_token_id", None) if encoder_decoder else None
    rules = DecodingRules(forced_first=int(forced) if isinstance(forced, int) else None,
                          banned=ids("suppress_tokens") + single, banned_first=ids("begin_suppress_tokens"))
    unapplied = [f"{name}={getattr(config, name)!r}" for name, neutral in _UNAPPLIED.items()
                 if getattr(config, name, None) not in (None, neutral)]
    if any(isinstance(w, (list, tuple)) and len(w) > 1 for w in bad):
        unapplied.append("bad_words_ids of several tokens")
    if not unapplied:
        return rules, []
    return rules, [f"decoded target: the target was decoded greedily, but the model's generation config sets "
                   f"{', '.join(unapplied)}, so model.generate may continue otherwise; give the target you mean "
                   "to explain it"]


def forced_eos_warnings(model: torch.nn.Module, tokenizer: Any, new_ids: list[int], limit: int) -> list[str]:
    """When a greedily decoded target takes all ``limit`` new tokens and the generation config sets
    ``forced_eos_token_id``, ``model.generate(max_new_tokens=limit)`` puts end-of-sequence in place of the last
    token explained: the warning says so (greedy decoding explains the model's own choice there)."""
    forced = getattr(getattr(model, "generation_config", None), "forced_eos_token_id", None)
    if forced is None or not new_ids or len(new_ids) < limit:
        return []
    first = forced[0] if isinstance(forced, (list, tuple)) and forced else forced
    name = tokenizer.convert_ids_to_tokens([int(first)])[0] if isinstance(first, int) else repr(first)
    last = tokenizer.convert_ids_to_tokens(new_ids[-1:])[0]
    return [f"decoded target: the model's generation config sets forced_eos_token_id={forced!r}, so "
            f"model.generate(max_new_tokens={limit}) ends with {name} where the token explained last ({last!r}) is "
            "the model's own choice; give the target you mean to explain it"]


def shortest_input(model: torch.nn.Module, device: torch.device) -> int:
    """The fewest tokens a forward of ``model`` runs: 1, except for a stack that pools its sequence (Funnel's blocks
    shorten it, keeping ``[CLS]`` apart, and fail on a shorter input inside the forward), found by trying 1, 2, …
    tokens of id 0 once."""
    if getattr(getattr(model, "config", None), "model_type", "") != "funnel":
        return 1
    for n in range(1, 65):
        x = torch.zeros(1, n, dtype=torch.long, device=device)
        try:
            with torch.no_grad():
                model(input_ids=x, attention_mask=torch.ones_like(x))
        except (RuntimeError, IndexError):
            continue
        return n
    return 65
