"""Tokenisation with character offsets, for any tokenizer.

Hugging Face fast tokenizers give offsets directly. Anything else must offer
``tokenize_with_offsets(text, add_special_tokens) -> (ids, tokens, offsets)`` (offsets ``None`` for special
tokens), which seqexplain's own word-level vocabularies do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seqexplain.errors import InputError


@dataclass
class Tokenized:
    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int] | None]


def tokenize(tokenizer: Any, text: str, add_special_tokens: bool, max_length: int | None = None,
             truncation_side: str = "right") -> Tokenized:
    """Token ids, token strings and character offsets of ``text`` (``None`` for special tokens).

    With ``max_length`` the tokenizer's own truncation is used on ``truncation_side``."""
    if hasattr(tokenizer, "tokenize_with_offsets"):
        ids, toks, offs = tokenizer.tokenize_with_offsets(text, add_special_tokens=add_special_tokens)
        if max_length is not None and len(ids) > max_length:
            cut = slice(len(ids) - max_length, None) if truncation_side == "left" else slice(0, max_length)
            ids, toks, offs = ids[cut], toks[cut], offs[cut]
        return Tokenized(list(ids), list(toks), list(offs))
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"{type(tokenizer).__name__} gives no character offsets; load the model's fast tokenizer "
            "(AutoTokenizer.from_pretrained(..., use_fast=True)) or pass one that defines tokenize_with_offsets"
        )
    kwargs: dict[str, Any] = {}
    if max_length is not None:
        kwargs = {"truncation": True, "max_length": max_length}
    old_side = tokenizer.truncation_side
    tokenizer.truncation_side = truncation_side
    try:
        enc = tokenizer(
            text,
            add_special_tokens=add_special_tokens,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            verbose=False,  # no "sequence length is longer than" notice: lengths are checked with clear errors
            **kwargs,
        )
    finally:
        tokenizer.truncation_side = old_side
    return _from_encoding(tokenizer, enc["input_ids"], enc["offset_mapping"], enc.get("special_tokens_mask"))


def tokenize_many(tokenizer: Any, texts: Sequence[str], add_special_tokens: bool) -> list[Tokenized]:
    """:func:`tokenize` of each text (no truncation), in order; a Hugging Face fast tokenizer reads them all in one
    call (its Rust batch encoder gives each text the tokens a call of its own gives)."""
    if len(texts) < 2 or hasattr(tokenizer, "tokenize_with_offsets") or not getattr(tokenizer, "is_fast", False):
        return [tokenize(tokenizer, text, add_special_tokens) for text in texts]
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_special_tokens_mask=True, verbose=False)
    special = enc.get("special_tokens_mask") or [None] * len(texts)
    return [_from_encoding(tokenizer, ids, offs, sp)
            for ids, offs, sp in zip(enc["input_ids"], enc["offset_mapping"], special, strict=True)]


def _from_encoding(tokenizer: Any, ids: Sequence[int], offset_mapping: Sequence[tuple[int, int]],
                   special: Sequence[int] | None) -> Tokenized:
    """A fast tokenizer's encoding of one text as :class:`Tokenized` (special tokens get offset ``None``)."""
    ids = list(ids)
    flags = special or [0] * len(ids)
    offsets: list[tuple[int, int] | None] = [None if sp else (int(start), int(end))
                                             for (start, end), sp in zip(offset_mapping, flags, strict=True)]
    return Tokenized(ids, tokenizer.convert_ids_to_tokens(ids), offsets)


def typed_special_warnings(tokenizer: Any, tok: Tokenized, what: str = "text") -> list[str]:
    """A warning when the text spells special tokens (``[SEP]``, ``<|endoftext|>``): the tokenizer reads them as
    the model's own special tokens, not as their characters, and they are explained as tokens of the text (they
    have character offsets), unlike the special tokens the tokenizer adds. The unknown token is left out: typed
    (``<unk>`` in WikiText), it means what the token means."""
    special = set(getattr(tokenizer, "all_special_ids", None) or []) - {getattr(tokenizer, "unk_token_id", None)}
    typed = [t for i, t, o in zip(tok.ids, tok.tokens, tok.offsets, strict=True) if o is not None and i in special]
    if not typed:
        return []
    return [f"the {what} spells the special token(s) {', '.join(dict.fromkeys(typed))}: the tokenizer reads them as "
            f"the model's own special tokens, not as characters, and they are explained as tokens of the {what}"]


def offsets_by_decoding(tokenizer: Any, ids: list[int]) -> tuple[str, list[tuple[int, int] | None]]:
    """The decoded text of ``ids`` and each token's span in it, from decoding growing prefixes.

    Used for generated targets, whose ids need not be what re-tokenising the text would give. Special tokens
    get ``None``."""
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    text = ""
    offsets: list[tuple[int, int] | None] = []
    for k in range(len(ids)):
        if ids[k] in special_ids:
            offsets.append(None)
            continue
        kept = [i for i in ids[: k + 1] if i not in special_ids]
        new = _decode(tokenizer, kept)
        common = len(text) if new.startswith(text) else _common_prefix(text, new)
        offsets.append((common, len(new)))
        text = new
    return text, offsets


def _decode(tokenizer: Any, ids: list[int]) -> str:
    try:
        return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
    except TypeError:
        return str(tokenizer.decode(ids))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def token_decoder(tokenizer: Any) -> Callable[[str], str] | None:
    """A function reading one token string as the text it stands for, with the tokenizer's own decoding
    (``convert_tokens_to_string``, else the decoding of the token's id); ``None`` when the tokenizer has
    neither. A SentencePiece ``▁`` prefix is kept as a leading space, which decoding a lone token drops.
    Used by the report views for tokens without offsets (foils, labels)."""
    to_string = getattr(tokenizer, "convert_tokens_to_string", None)
    to_id = getattr(tokenizer, "convert_tokens_to_ids", None)
    if to_string is None and (to_id is None or not hasattr(tokenizer, "decode")):
        return None

    def decode(token: str) -> str:
        text = str(to_string([token])) if to_string is not None else _decode(tokenizer, [int(to_id([token])[0])])
        if token.startswith("\u2581") and not text.startswith(" "):
            text = " " + text
        return text

    return decode


def without_trailing_specials(tok: Tokenized) -> tuple[Tokenized, list[str]]:
    """``tok`` without the special tokens its tokenizer put after the text's last token (an end-of-sequence
    ``</s>`` that a template appends), and the tokens taken off. A causal LM's continuation follows the prompt's
    last token; read after ``</s>`` it would be explained as the start of another text. Unchanged when no token
    holds text."""
    last = max((k for k, off in enumerate(tok.offsets) if off is not None), default=None)
    if last is None or last == len(tok.ids) - 1:
        return tok, []
    cut = slice(0, last + 1)
    return Tokenized(tok.ids[cut], tok.tokens[cut], tok.offsets[cut]), tok.tokens[last + 1 :]


def joining_warnings(tokenizer: Any, text: str, target: str, prompt_ids: list[int], target_ids: list[int]
                     ) -> list[str]:
    """The warnings of a causal LM's rule that prompt and target are tokenised separately and their tokens joined:
    when the target lacks the leading space a word after a prompt carries in this tokenizer ("Paris" vs " Paris":
    different tokens, very different probabilities; the warning shows the joined text, since a prompt ending
    mid-word, "...the m" + "at.", means it), and when the text written together tokenises differently from the
    whole prompt's ``prompt_ids`` (before any truncation) followed by ``target_ids`` (special tokens a template puts
    after the text left out of both: :func:`without_trailing_specials`)."""
    out = []
    if target[:1].isalnum() and not text[-1:].isspace():
        spaced = tokenize(tokenizer, " " + target, add_special_tokens=False).ids
        if spaced != target_ids:
            out.append(f"target {target!r} has no leading space, so it continues the prompt's last word "
                       f"({'...' + text[-15:] + target!r}) and is explained as "
                       f"{tokenizer.convert_ids_to_tokens(target_ids[:1])[0]!r}; if it is the next word, give "
                       f"{' ' + target!r}, with a leading space")
    joined = without_trailing_specials(tokenize(tokenizer, text + target, add_special_tokens=True))[0].ids
    if joined != prompt_ids + target_ids:
        out.append(f"target {target!r} is tokenised on its own ({len(target_ids)} token(s)); written after the "
                   f"prompt, prompt and target tokenise differently ({'...' + text[-15:] + target!r}), so the "
                   "explained tokens are not what the model would read there")
    return out


def foil_space_warnings(tokenizer: Any, foil: Any, target_tokens: list[str], names: list[str]) -> list[str]:
    """A foil text without the leading space of the word-initial target it is contrasted with ("an" against
    " is") is read as a word's continuation (``names``: its tokens), a token the user rarely means: the warning
    says so, as for a target. None for a foil given as tokens or ids, or when spacing changes nothing."""
    decode = token_decoder(tokenizer)
    if (not isinstance(foil, str) or not foil[:1].isalnum() or not target_tokens or not names or decode is None
            or not decode(target_tokens[0]).startswith(" ") or decode(names[0]).startswith(" ")):
        return []
    if tokenize(tokenizer, " " + foil, add_special_tokens=False).tokens == names:
        return []
    return [f"foil {foil!r} has no leading space, while the target {decode(target_tokens[0])!r} starts a word: it "
            f"is read as {names[0]!r}, which continues a word; to contrast with the word, give {' ' + foil!r}, "
            "with a leading space"]
