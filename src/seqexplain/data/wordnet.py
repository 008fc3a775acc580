"""WordNet 3.0 through NLTK's reader (:class:`nltk.corpus.reader.wordnet.WordNetCorpusReader`), over the database
files (``index.<pos>``, ``data.<pos>``, ``<pos>.exc``) as Debian's ``wordnet-base`` installs them under
``/usr/share/wordnet``; enough for event types from hypernyms (Ger et al.).

Two things stand between NLTK and that folder, and :class:`WordNet` bridges both without touching the files:
Debian does not ship the ``lexnames`` file (the 45 lexicographer file names, fixed for WordNet 3.0: served from
:data:`LEXNAMES`), and NLTK maps a database that is not its own ``wordnet`` corpus onto that corpus (not installed
here; the database *is* WordNet 3.0, so there is nothing to map). NLTK reads only folders under ``nltk.data.path``:
the root is added to it.

Words are reduced to a lemma by NLTK's ``morphy`` (the word itself when the index holds it, else the exception
lists, else the detachment rules of the part of speech; NLTK's noun rules add ``-ves → -f`` to WordNet's, so
"believes" is also the noun "belief"); :meth:`WordNet.first_sense` is the lemma's most frequent synset (the index's
first). NLTK parses the index and exception files (given to it as plain text files, which it reads faster than
through its seekable stream reader) and the synsets.

:meth:`WordNet.event_type` gives a word's type: its most frequent synset in the first part of speech (in
``pos_order``) that knows the word, followed up its first hypernym chain to the root, and the ancestor at ``depth``
below the root named (``"entity.n.0"`` style names: first lemma, pos, depth). A synset's "first hypernym" is the
first of its hypernym (``@``) and instance hypernym (``@i``) pointers in its line of the data file, the order in
which WordNet lists them (dog → canine before domestic animal). NLTK gives the hypernyms but keeps them in a set,
whose order changes between processes, so :meth:`WordNet.synset` orders NLTK's hypernyms by where their offsets
follow an ``@``/``@i`` symbol in that line (the only thing read from the files here rather than by NLTK). Adjectives
and adverbs have no hypernyms: their type is their lexicographer file (``adj.all``, ``adj.pert``, ``adj.ppl``,
``adv.all``). With ``supersense=True`` every word's type is its lexicographer file (``noun.person``,
``verb.motion``, …).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO, Any

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
_SYNTACTIC_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}  # lexnames' third column


def _reader(root: Path) -> Any:
    """NLTK's WordNet reader over ``root`` (module docstring)."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _Reader(WordNetCorpusReader):  # type: ignore[misc]
        def open(self, file: str) -> IO[str]:
            if file == "lexnames" and not (root / "lexnames").is_file():
                return io.StringIO("".join(f"{i:02d}\t{n}\t{_SYNTACTIC_CATEGORY[n.split('.')[0]]}\n"
                                           for i, n in enumerate(LEXNAMES)))
            if file.startswith("index.") or file.endswith(".exc"):  # read once from start to end (module docstring)
                return (root / file).open(encoding="utf-8")
            return super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            return None  # the database is WordNet 3.0 itself: no mapping onto NLTK's own corpus

    if str(root.resolve()) not in nltk.data.path:
        nltk.data.path.append(str(root.resolve()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions are not available")  # no OMW: unused
        return _Reader(str(root.resolve()), None)


class WordNet:
    """The WordNet database under ``root`` (module docstring), read by NLTK when constructed (about 2 s)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        if not (self.root / "index.noun").is_file():
            raise DataError(f"no WordNet database at {self.root} (index.noun missing); install Debian's wordnet-base "
                            "(make wordnet-deps) or give the folder holding WordNet 3.0's index.* and data.* files")
        try:
            self.reader = _reader(self.root)
        except (OSError, ValueError, LookupError, AssertionError) as exc:
            raise DataError(f"NLTK could not read the WordNet database at {self.root} ({exc}); reinstall Debian's "
                            "wordnet-base (make wordnet-deps) or give a folder holding WordNet 3.0's files") from exc
        self._synsets: dict[tuple[str, int], tuple[str, int, list[int]]] = {}
        self._data: dict[str, bytes] = {}

    def first_sense(self, word: str, pos: str) -> int | None:
        """Offset of ``word``'s most frequent synset in ``pos`` (``noun``/``verb``/``adj``/``adv``), the word reduced
        to its first lemma by morphy; None when WordNet does not know it there."""
        tag = POS_FILES[pos]
        lemma = self.reader.morphy(word.lower().replace(" ", "_"), tag)
        return None if lemma is None else int(self.reader.synset(f"{lemma}.{tag}.01").offset())

    def synset(self, pos: str, offset: int) -> tuple[str, int, list[int]]:
        """``(first lemma, lexicographer file number, hypernym offsets)`` of the synset at ``offset``, by NLTK; the
        hypernyms (and instance hypernyms) in the data file's order (module docstring)."""
        key = (pos, offset)
        if key not in self._synsets:
            ss = self.reader.synset_from_pos_and_offset(POS_FILES[pos], offset)
            up = {s.offset() for s in ss.hypernyms() + ss.instance_hypernyms()}
            listed = self._hypernym_order(pos, offset)
            order = sorted(up, key=lambda o: (listed.index(o), 0) if o in listed else (len(listed), o))
            self._synsets[key] = (ss.lemmas()[0].name().lower(), LEXNAMES.index(ss.lexname()), order)
        return self._synsets[key]

    def _hypernym_order(self, pos: str, offset: int) -> list[int]:
        """The offsets that follow an ``@`` or ``@i`` symbol in the synset's data line, in line order."""
        if pos not in self._data:
            self._data[pos] = (self.root / f"data.{pos}").read_bytes()
        data = self._data[pos]
        tokens = data[offset : data.index(b"\n", offset)].split(b" | ")[0].split()
        return [int(b) for a, b in zip(tokens, tokens[1:], strict=False) if a in (b"@", b"@i")]

    def hypernym_path(self, pos: str, offset: int) -> list[int]:
        """Offsets from the root down to the synset, following each synset's first hypernym (module docstring)."""
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
            found = self.first_sense(word, pos)
            if found is None:
                continue
            _, lexfile, _ = self.synset(pos, found)
            if supersense or pos in ("adj", "adv"):
                return LEXNAMES[lexfile]
            path = self.hypernym_path(pos, found)
            at = min(depth, len(path) - 1)
            return f"{self.synset(pos, path[at])[0]}.{POS_FILES[pos]}.{at}"
        return None
