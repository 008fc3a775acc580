"""A joint SentencePiece vocabulary (the ``sentencepiece`` library) served as a Hugging Face fast tokenizer, and a
reader of user-supplied parallel text files.

:func:`train_sentencepiece` trains a unigram SentencePiece model on the given sentences (e.g. source and target
sides together: a joint vocabulary), single-threaded and without sampling (deterministic), with the ids
``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3 and NFKC normalisation. The trained pieces and their log-probability
scores become a ``tokenizers`` Unigram model with SentencePiece's ``▁`` word markers (Metaspace), so segmentation is
SentencePiece's Viterbi segmentation and character offsets come for free; ``</s>`` is appended to every encoded text.
One difference: the normaliser (:func:`~seqexplain.data.tokenizers.text_components`) makes every run of white space
one space, where SentencePiece keeps a tab as a character (``<unk>`` unless trained on); on Multi30K's 2,028
validation sentences (de + en) the two give the same ids.

:func:`read_parallel_files` reads a source and a target file of one sentence per line and refuses files whose line
counts differ.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from seqexplain.data.text_lines import read_text_lines
from seqexplain.data.tokenizers import EOS, SPECIAL_TOKENS, UNK, text_components, wrap_fast_tokenizer
from seqexplain.errors import DataError, InputError


def train_sentencepiece(texts: Iterable[str], vocab_size: int = 8000) -> tuple[Any, Any]:
    """``(PreTrainedTokenizerFast, sentencepiece.SentencePieceProcessor)`` of a unigram model trained on ``texts``
    (module docstring)."""
    import sentencepiece as spm
    from tokenizers import Tokenizer, models, processors

    lines = [t.strip() for t in texts if t.strip()]
    if not lines:
        raise InputError("the SentencePiece training text is empty; give at least one non-empty sentence")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size, model_type="unigram",
                pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=SPECIAL_TOKENS[0], bos_piece=SPECIAL_TOKENS[1],
                eos_piece=EOS, unk_piece=UNK, character_coverage=1.0, num_threads=1, normalization_rule_name="nfkc",
                shuffle_input_sentence=False, minloglevel=2)
        except RuntimeError as exc:
            raise InputError(f"SentencePiece training failed: {exc}") from exc
        sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "sp.model"))
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.normalizer, _, tok.decoder = text_components()
    from tokenizers import pre_tokenizers

    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, 2)])
    return wrap_fast_tokenizer(tok), sp


def read_parallel_files(source: Path | str, target: Path | str) -> tuple[list[str], list[str]]:
    """The stripped lines of two aligned UTF-8 files (read by :func:`~seqexplain.data.text_lines.read_text_lines`:
    a byte order mark dropped, split at line ends only); :class:`DataError` when their line counts differ."""
    out = []
    for path in (Path(source), Path(target)):
        if not path.is_file():
            raise DataError(f"parallel text file {path} does not exist")
        out.append([line.strip() for line in read_text_lines(path)])
    if len(out[0]) != len(out[1]):
        raise DataError(f"{source} has {len(out[0])} lines but {target} has {len(out[1])}; a translation pair file "
                        "needs one target line per source line")
    return out[0], out[1]
