"""Event types of tokens (Ger et al.): each token of a document gets one type; per-event explanations aggregate a
token-level explanation over each type's positions.

Sources of the token → type *labels*:

* a user mapping (:func:`labels_from_mapping`): a function ``token → type name or None`` or a table (dict);
* WordNet hypernyms as the paper (:func:`wordnet_labels`, :mod:`seqexplain.data.wordnet`);
* part-of-speech tags in context (:func:`pos_labels`, spaCy's English tagger);
* KMeans clusters of the token vectors (:class:`VectorClusters`, scikit-learn, seeded).

An :class:`EventVocabulary` fitted on the training documents' labels turns labels into type indices: the
``max_types`` most frequent labels (ties by name) become types, in that order; every other label is the type
``<other>`` (so is a label spelt ``<other>``). A token whose label is None (the mapping misses it) is counted and
becomes ``<other>`` with ``missing="other"`` (the default), or raises :class:`~seqexplain.errors.InputError` with
``missing="error"``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from seqexplain.attribution import Aggregation, Attribution
from seqexplain.data.wordnet import WordNet
from seqexplain.errors import InputError

OTHER = "<other>"
Missing = Literal["other", "error"]
Labels = list[list[str | None]]


def labels_from_mapping(docs: Sequence[Sequence[str]], mapping: Callable[[str], str | None] | Mapping[str, str]
                        ) -> Labels:
    """Each token's label under a user mapping: a function (None: no label) or a table (absent: no label)."""
    if isinstance(mapping, Mapping):
        table = mapping
        return [[table.get(tok) for tok in doc] for doc in docs]
    if not callable(mapping):
        raise InputError("an event-type mapping is a function token → type name, or a dict")
    return [[mapping(tok) for tok in doc] for doc in docs]


@functools.lru_cache(maxsize=2)
def _wordnet(root: str | None) -> WordNet:
    return WordNet(root)  # read once per process: its index files take a second


def wordnet_labels(docs: Sequence[Sequence[str]], depth: int = 4, supersense: bool = False,
                   root: str | None = None, stop_words: Collection[str] | None = None) -> Labels:
    """WordNet hypernym (or supersense) labels of every token (:meth:`seqexplain.data.wordnet.WordNet.event_type`);
    None for words WordNet does not know (punctuation, names) and for ``stop_words`` (default: scikit-learn's English
    stop-word list; ``()`` for none): WordNet gives many function words rare noun senses ("a" → ampere, "in" →
    inch, "it" → information technology) that would otherwise become frequent event types."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = frozenset(ENGLISH_STOP_WORDS if stop_words is None else (w.lower() for w in stop_words))
    wn = _wordnet(root)
    cache: dict[str, str | None] = {}
    out: Labels = []
    for doc in docs:
        row: list[str | None] = []
        for tok in doc:
            if tok not in cache:
                known = any(c.isalpha() for c in tok) and tok.lower() not in stop
                cache[tok] = wn.event_type(tok, depth=depth, supersense=supersense) if known else None
            row.append(cache[tok])
        out.append(row)
    return out


def pos_labels(docs: Sequence[Sequence[str]]) -> Labels:
    """Penn Treebank tag of every token, each document tagged in context by spaCy (optional packages)."""
    from seqexplain.analysis.word_classes import tag_tokens_spacy

    flat: list[str] = []
    for doc in docs:
        flat.extend(doc)
        flat.append("<eos>")
    tags = tag_tokens_spacy(flat)
    out: Labels = []
    start = 0
    for doc in docs:
        out.append(list(tags[start : start + len(doc)]))
        start += len(doc) + 1
    return out


@dataclass
class VectorClusters:
    """KMeans (scikit-learn, ``random_state=seed``) over token vectors: a token's label is its cluster ``c<k>``."""

    k: int
    seed: int = 0
    centers: np.ndarray | None = None

    def fit(self, vectors: Sequence[np.ndarray]) -> VectorClusters:
        from sklearn.cluster import KMeans

        arrays = [np.asarray(v, dtype=np.float64) for v in vectors]
        widths = sorted({a.shape[1] if a.ndim == 2 else -1 for a in arrays})
        if len(widths) != 1 or widths[0] < 1:
            raise InputError(f"token vectors must be [tokens, width] arrays of one width, got widths {widths}")
        data = np.concatenate(arrays)
        if self.k < 1 or data.shape[0] < self.k:
            raise InputError(f"KMeans event types need 1 ≤ k ≤ the number of tokens ({data.shape[0]}), got {self.k}")
        km = KMeans(n_clusters=self.k, random_state=self.seed, n_init=4).fit(data)
        self.centers = km.cluster_centers_
        return self

    def labels(self, vectors: Sequence[np.ndarray]) -> Labels:
        """The nearest centre of every token vector."""
        if self.centers is None:
            raise InputError("fit the clusters on training vectors first")
        out: Labels = []
        for v in vectors:
            x = np.asarray(v, dtype=np.float64)
            if x.ndim != 2 or x.shape[1] != self.centers.shape[1]:
                raise InputError(f"vectors of shape {x.shape}; the clusters were fitted on width "
                                 f"{self.centers.shape[1]}")
            d = ((x[:, None, :] - self.centers[None]) ** 2).sum(-1)
            out.append([f"c{int(c)}" for c in d.argmin(1)])
        return out


@dataclass
class EncodedTypes:
    """Type indices of every token of every document, and what was folded into ``<other>``: ``missing`` tokens
    (no label) and ``rare`` tokens (a label outside the vocabulary)."""

    types: list[list[int]]
    missing: int = 0
    rare: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class EventVocabulary:
    """Type names (index = type id); ``<other>`` last when present (module docstring)."""

    names: list[str]

    @classmethod
    def fit(cls, labels: Labels, max_types: int | None = None) -> EventVocabulary:
        counts = Counter(lab for doc in labels for lab in doc if lab is not None and lab != OTHER)
        ranked = sorted(counts, key=lambda n: (-counts[n], n))
        if max_types is not None:
            if max_types < 1:
                raise InputError("max_types must be at least 1")
            ranked = ranked[:max_types]
        names = [*ranked, OTHER]
        if not ranked:
            raise InputError("the event set is empty: the mapping gave no token a type; check the mapping or the "
                             "documents")
        return cls(names)

    @property
    def n_types(self) -> int:
        return len(self.names)

    def encode(self, labels: Labels, missing: Missing = "other") -> EncodedTypes:
        """Type indices of labelled documents (module docstring for ``missing``)."""
        if missing not in ("other", "error"):
            raise InputError(f"missing is 'other' or 'error', not {missing!r}")
        index = {n: i for i, n in enumerate(self.names)}
        other = index[OTHER]
        out = EncodedTypes([])
        first_missing: tuple[int, int] | None = None
        for d, doc in enumerate(labels):
            row = []
            for j, lab in enumerate(doc):
                if lab is None:
                    out.missing += 1
                    first_missing = first_missing or (d, j)
                    row.append(other)
                elif lab not in index:
                    out.rare += 1
                    row.append(other)
                else:
                    row.append(index[lab])
            out.types.append(row)
        if out.missing and missing == "error":
            d, j = first_missing or (0, 0)
            raise InputError(f"the token → type mapping misses {out.missing} token(s) (first: document {d}, token "
                             f"{j}); extend the mapping or use missing='other' to count them as {OTHER}")
        total = sum(len(doc) for doc in labels)
        if out.missing:
            out.warnings.append(f"{out.missing} of {total} tokens have no event type and count as {OTHER}")
        if out.rare:
            out.warnings.append(f"{out.rare} of {total} tokens have an event type outside the vocabulary's "
                                f"{len(self.names) - 1} and count as {OTHER}")
        return out


def event_vector(attr: Attribution, types: Sequence[int], n_types: int, how: Aggregation = "sum",
                 absent: float = 0.0) -> np.ndarray:
    """``[K]`` one target's explanation per event type: the scores aggregated (``how``: ``sum`` or ``mean``; the
    original code sums and calls it an average) with :meth:`Attribution.aggregate` over the grouping ``"events"``
    (which the attention-RNN adapter sets), ``absent`` for types not in the document. A NaN score at a visible
    cell (the explanation warns of it) is left out of its type's value, as a hidden cell is.

    The grouping must be the one of ``types``: one group per type present, each group of one type; otherwise (and
    for a type outside ``0..n_types-1``) :class:`InputError`, since a type's value could not be one aggregate.
    """
    if len(types) != len(attr.tokens):
        raise InputError(f"{len(types)} event types for an explanation of {len(attr.tokens)} tokens")
    bad = [int(t) for t in types if not 0 <= int(t) < n_types]
    if bad:
        raise InputError(f"event type {bad[0]} is outside 0..{n_types - 1}; encode the documents with the "
                         f"vocabulary of these {n_types} types")
    if "events" not in attr.groups:
        raise InputError("the explanation has no 'events' grouping; explain documents that carry event types")
    partition = attr.partition("events")
    type_of: list[int] = []
    for members in partition:
        kinds = sorted({int(types[j]) for j in members})
        if len(kinds) > 1:
            raise InputError(f"the 'events' group {members} holds types {' and '.join(map(str, kinds))}; the "
                             "explanation's grouping does not match these event types")
        type_of.append(kinds[0])
    for t, n in Counter(type_of).items():
        if n > 1:
            raise InputError(f"event type {t} has {n} groups in the explanation's 'events' grouping; the grouping "
                             "does not match these event types (one group per type)")
    # a NaN score at a visible cell (flagged; the explanation warns) is left out of its type's value, as a hidden
    # cell is, rather than making the type NaN as Attribution.aggregate does for display: the vectors are clustered
    unflagged = {k: v for k, v in attr.meta.items() if k != "nonfinite_cells"}
    agg = dataclasses.replace(attr, meta=unflagged).aggregate(how, by="events")
    vec = np.full(n_types, absent, dtype=np.float64)
    for g, t in enumerate(type_of):
        vec[t] = float(agg.scores[0, g])
    return vec
