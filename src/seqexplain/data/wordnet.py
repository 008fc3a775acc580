"""A small reader of the WordNet 3.0 database files (``index.<pos>`` and ``data.<pos>``, as Debian's ``wordnet-base``
installs them under ``/usr/share/wordnet``), enough for event types from hypernyms (Ger et al.).

NLTK's reader expects a ``lexnames`` file that Debian does not ship and refuses roots it has not been told about;
this reader needs neither. Formats (WordNet's ``wndb(5)``): an index line is ``lemma pos synset_cnt p_cnt
[ptr_symbol …] sense_cnt tagsense_cnt offset …`` with the offsets in order of sense frequency; a data line at byte
``offset`` is ``offset lex_filenum ss_type w_cnt word lex_id … p_cnt [symbol offset pos source/target] … | gloss``
(``w_cnt`` hexadecimal). Hypernym pointers are ``@`` (and ``@i`` for instances); a synset's "first hypernym" is its
first hypernym pointer in the data file (NLTK keeps pointers in a set, so its order varies between processes).

Words are reduced to a lemma as WordNet's ``morphy`` does: the exception lists (``<pos>.exc``), then the
detachment rules of each part of speech, the first candidate found in the index winning.

:meth:`WordNet.event_type` gives a word's type: its most frequent synset in the first part of speech (in
``pos_order``) that knows the word, followed up its first hypernym chain to the root, and the ancestor at
``depth`` below the root named (``"entity.n.0"`` style names: first lemma, pos, depth). Adjectives and adverbs
have no hypernyms: their type is their lexicographer file (``adj.all``, ``adj.pert``, ``adj.ppl``, ``adv.all``).
With ``supersense=True`` every word's type is its lexicographer file (``noun.person``, ``verb.motion``, …).
"""

from __future__ import annotations

from pathlib import Path

from seqexplain.errors import DataError

DEFAULT_ROOT = Path("/usr/share/wordnet")
POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
#: the 45 lexicographer files of WordNet 3.0 (the ``lexnames`` file Debian omits), by number
_LEXNAMES_TEXT = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl")
LEXNAMES = tuple(_LEXNAMES_TEXT.split())
RULES = {
    "noun": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
             ("ies", "y")],
    "verb": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")],
    "adj": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")],
    "adv": [],
}


class WordNet:
    """The WordNet database under ``root`` (module docstring). Files are read lazily, once per part of speech."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        if not (self.root / "index.noun").is_file():
            raise DataError(f"no WordNet database at {self.root} (index.noun missing); install Debian's wordnet-base "
                            "(make wordnet-deps) or give the folder holding WordNet 3.0's index.* and data.* files")
        self._index: dict[str, dict[str, list[int]]] = {}
        self._data: dict[str, bytes] = {}
        self._exc: dict[str, dict[str, list[str]]] = {}
        self._synsets: dict[tuple[str, int], tuple[str, int, list[int]]] = {}

    # ------------------------------------------------------------------ files
    def index(self, pos: str) -> dict[str, list[int]]:
        """lemma → synset offsets (most frequent sense first) of one part of speech."""
        if pos not in self._index:
            table: dict[str, list[int]] = {}
            with open(self.root / f"index.{pos}", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue  # licence header
                    parts = line.split()
                    n_ptr = int(parts[3])
                    n_syn = int(parts[2])
                    table[parts[0]] = [int(o) for o in parts[6 + n_ptr : 6 + n_ptr + n_syn]]
            self._index[pos] = table
        return self._index[pos]

    def exceptions(self, pos: str) -> dict[str, list[str]]:
        if pos not in self._exc:
            table: dict[str, list[str]] = {}
            path = self.root / f"{pos}.exc"
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        table[parts[0]] = parts[1:]
            self._exc[pos] = table
        return self._exc[pos]

    def synset(self, pos: str, offset: int) -> tuple[str, int, list[int]]:
        """``(first lemma, lexicographer file number, hypernym offsets)`` of the synset at ``offset``."""
        key = (pos, offset)
        if key not in self._synsets:
            if pos not in self._data:
                self._data[pos] = (self.root / f"data.{pos}").read_bytes()
            data = self._data[pos]
            end = data.index(b"\n", offset)
            fields = data[offset:end].split(b" | ")[0].decode("utf-8").split()
            if int(fields[0]) != offset:
                raise DataError(f"data.{pos} has no synset at byte {offset}; is the WordNet database intact?")
            n_words = int(fields[3], 16)
            k = 4 + 2 * n_words
            n_ptr = int(fields[k])
            hyper = [int(fields[k + 2 + 4 * p]) for p in range(n_ptr)
                     if fields[k + 1 + 4 * p] in ("@", "@i") and fields[k + 3 + 4 * p] == POS_FILES[pos]]
            self._synsets[key] = (fields[4].lower(), int(fields[1]), hyper)
        return self._synsets[key]

    # ------------------------------------------------------------------ words
    def lemmas(self, word: str, pos: str) -> list[str]:
        """Candidate lemmas of ``word`` in ``pos`` that the index holds (morphy's order)."""
        w = word.lower().replace(" ", "_")
        index = self.index(pos)
        out = [w] if w in index else []
        for base in self.exceptions(pos).get(w, []):
            if base in index and base not in out:
                out.append(base)
        for suffix, repl in RULES[pos]:
            if w.endswith(suffix) and len(w) > len(suffix):
                base = w[: len(w) - len(suffix)] + repl
                if base in index and base not in out:
                    out.append(base)
        return out

    def hypernym_path(self, pos: str, offset: int) -> list[int]:
        """Offsets from the root down to the synset, following each synset's first hypernym."""
        path = [offset]
        seen = {offset}
        while True:
            hyper = self.synset(pos, path[-1])[2]
            if not hyper or hyper[0] in seen:
                return path[::-1]
            path.append(hyper[0])
            seen.add(hyper[0])

    def event_type(self, word: str, depth: int = 4, pos_order: tuple[str, ...] = ("noun", "verb", "adj", "adv"),
                   supersense: bool = False) -> str | None:
        """The event type of ``word`` (module docstring), or None when WordNet does not know it."""
        for pos in pos_order:
            found = self.lemmas(word, pos)
            if not found:
                continue
            offset = self.index(pos)[found[0]][0]
            lemma, lexfile, _ = self.synset(pos, offset)
            if supersense or pos in ("adj", "adv"):
                return LEXNAMES[lexfile]
            path = self.hypernym_path(pos, offset)
            at = min(depth, len(path) - 1)
            return f"{self.synset(pos, path[at])[0]}.{POS_FILES[pos]}.{at}"
        return None
