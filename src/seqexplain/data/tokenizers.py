"""Subword tokenizers trained in code with the ``tokenizers`` library, wrapped as Hugging Face fast tokenizers.

:func:`train_bpe_tokenizer` learns a byte-pair-encoding vocabulary from an iterable of sentences:

* normalisation: NFKC, runs of whitespace collapsed to one space, leading/trailing whitespace stripped;
* pre-tokenisation: SentencePiece-style ``▁`` word markers (Metaspace, a ``▁`` prepended to every word) and each
  punctuation character isolated, so a BPE piece never crosses a word or punctuation boundary;
* decoding: the Metaspace decoder, which turns ``▁`` back into spaces, so ``decode(encode(s)) == s`` for normalised
  text made of characters seen in training (the detokenised output sacrebleu expects);
* special tokens: ``<pad>`` (0), ``<s>`` (1, decoder start / beginning of sequence), ``</s>`` (2, end of sequence,
  appended by the post-processor when ``add_special_tokens=True``), ``<unk>`` (3).

The result is a :class:`transformers.PreTrainedTokenizerFast`, so character offsets come from
``return_offsets_mapping=True`` (a ``▁``-initial piece's span starts at the space before the word, except for the
first word) and it saves / loads with ``save_pretrained`` / :func:`load_tokenizer` (``tokenizer.json``; nothing
is fetched from a hub).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from seqexplain.errors import InputError, ModelLoadError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)


def text_components() -> tuple[Any, Any, Any]:
    """``(normalizer, pre-tokenizer, decoder)`` shared by the project's subword tokenizers: NFKC, runs of white
    space → one space, stripped; Metaspace ``▁`` splitting with punctuation isolated; the Metaspace decoder."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "),
                                       normalizers.Strip()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    return normalizer, pre, decoder


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                        show_progress: bool = False) -> Any:
    """Train a BPE tokenizer on ``texts`` (see the module docstring) and return it as a
    ``PreTrainedTokenizerFast``. ``vocab_size`` counts the special tokens; every character of the training
    text is in the alphabet, so only characters never seen in training become ``<unk>``."""
    from tokenizers import Tokenizer, models, processors, trainers

    if vocab_size <= len(SPECIAL_TOKENS):
        raise InputError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = text_components()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=show_progress)

    def _iter() -> Iterator[str]:
        for t in texts:
            if t.strip():
                yield t

    tok.train_from_iterator(_iter(), trainer)
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise InputError("the tokenizer training text is empty; give at least one non-empty sentence")
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, eos_id)])
    return wrap_fast_tokenizer(tok)


def wrap_fast_tokenizer(tok: Any) -> Any:
    """``tok`` (a ``tokenizers.Tokenizer``) as a right-padding ``PreTrainedTokenizerFast`` with the special tokens."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS,
                                   unk_token=UNK)
    fast.padding_side = "right"
    return fast


def save_tokenizer(tokenizer: Any, directory: Path | str) -> None:
    """Write ``tokenizer`` into ``directory`` (``tokenizer.json`` + Hugging Face tokenizer config)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))


def load_tokenizer(directory: Path | str) -> Any:
    """Load a tokenizer written by :func:`save_tokenizer` (local files only)."""
    path = Path(directory)
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"{path} has no tokenizer.json; train a tokenizer first (train_bpe_tokenizer)")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as exc:  # corrupt JSON
        raise ModelLoadError(f"cannot read {path / 'tokenizer.json'}: {exc}") from exc
    return wrap_fast_tokenizer(tok)


def word_index_of_tokens(offsets: list[tuple[int, int] | None], text: str,
                         words: list[tuple[int, int]]) -> list[int | None]:
    """Map each token (by its character ``offsets`` in ``text``) to the index of the word span in ``words`` that
    holds its first non-space character. Special tokens (``None`` offsets) map to ``None``; a token that covers
    only whitespace (a lone ``▁``) maps to the word of the next token."""
    out: list[int | None] = []
    for off in offsets:
        if off is None:
            out.append(None)
            continue
        start, end = off
        while start < end and text[start].isspace():
            start += 1
        if start >= end:
            out.append(-1)  # resolved below
            continue
        found = None
        for w, (ws, we) in enumerate(words):
            if ws <= start < we:
                found = w
                break
        out.append(found)
    for i in range(len(out) - 1, -1, -1):
        if out[i] == -1:
            nxt = out[i + 1] if i + 1 < len(out) else None
            out[i] = nxt if nxt is not None and nxt != -1 else None
    return out


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words of ``text``."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and not text[j].isspace():
            j += 1
        spans.append((i, j))
        i = j
    return spans
