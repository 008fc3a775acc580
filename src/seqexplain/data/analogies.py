"""The templated-analogies benchmark of Vafa, Deng, Blei & Rush (2021), "Rationales for Sequential Predictions".

Data (under the data root, folder ``questions_words``):

* ``questions-words.txt`` — Mikolov et al.'s (2013) analogy file: sections ``: name`` followed by lines ``A B C D``.
* ``analogy_templates_vafa2021.json`` — the 14 prompt templates (key ``templates``: section → template). Each
  template holds the placeholders ``[A]`` and ``[B]`` (the first and second word of a pair) and a distractor
  parenthetical ``(…).`` that carries no information about the answer.

The recipe, as in the paper's code (``preprocess_analogies`` / ``create_analogy_templates`` /
``rationalize_analogies.py``):

1. **Pairs.** Every line ``A B C D`` of a section gives the pairs ``(A, B)`` and ``(C, D)``; a section keeps its
   unique pairs in order of first appearance (:func:`unique_pairs`).
2. **Capitalisation fix.** In ``currency`` the words ``euro`` and ``won`` become ``Euro`` and ``Won`` (the paper
   fixes these two by their index in its GPT-2-filtered list; here by word, before filtering, so the fix does not
   depend on the tokenizer).
3. **Single tokens.** A pair is kept when both words, each with a leading space, are a single token of the
   model's tokenizer (:func:`is_single_token`), so that "the antecedent is in the rationale" is one position.
4. **Prompt.** The template is filled; the word whose placeholder comes *last* in the template is the target
   (it ends the template), the other one is the antecedent. The prompt is the filled template up to the target
   word, without the space before it; the target is ``" " + word``.
5. **Annotations.** ``antecedent`` is the character span of the antecedent word in the prompt; ``distractor`` is
   the span from ``(`` to the end of ``).`` (the paper's tokens ``" ("`` … ``")."``, inclusive).
   :func:`char_span_positions` maps spans to token positions through the tokenizer's offsets.

Scoring (paper's ``evaluate_analogies_rationales.py``), per rationale ``r`` (positions, start token included):
``Length = |r|``; ``Ante = 1`` if the antecedent position is in ``r``; ``No D = 1`` if ``r`` has no position of the
distractor; ``Ratio = |r| / |r*|`` with ``r*`` the exhaustive (smallest) rationale, only for the examples where
exhaustive search finished. Only the examples whose target the model predicts (argmax) both from the prompt and
from the prompt without the distractor are rationalized (:func:`distractor_removed`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqexplain.data.paths import require_data
from seqexplain.data.text_lines import read_text_lines
from seqexplain.errors import DataError

FOLDER = "questions_words"
ANALOGY_FILE = "questions-words.txt"
TEMPLATE_FILE = "analogy_templates_vafa2021.json"
PLACEHOLDERS = ("[A]", "[B]")
CAPITALISATION_FIXES: dict[str, dict[str, str]] = {"currency": {"euro": "Euro", "won": "Won"}}
"""Per section, words replaced before filtering (the paper's two hand-fixed currency names)."""


# --------------------------------------------------------------------------- reading
def read_sections(path: Path | str) -> dict[str, list[tuple[str, str, str, str]]]:
    """``questions-words.txt`` as ``{section: [(A, B, C, D), ...]}`` in file order."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"analogy file {p} does not exist")
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current: str | None = None
    for n, line in enumerate(read_text_lines(p), 1):  # DataError naming the file when it is not UTF-8
        text = line.strip()
        if not text:
            continue
        if text.startswith(":"):
            current = text[1:].strip()
            if not current:
                raise DataError(f"{p}:{n}: empty section name")
            sections.setdefault(current, [])
            continue
        words = text.split()
        if current is None:
            raise DataError(f"{p}:{n}: analogy line before the first ': section' header")
        if len(words) != 4:
            raise DataError(f"{p}:{n}: expected 4 words 'A B C D', got {len(words)}: {text!r}")
        sections[current].append((words[0], words[1], words[2], words[3]))
    if not sections:
        raise DataError(f"{p} contains no ': section' header")
    return sections


def unique_pairs(rows: Iterable[Sequence[str]]) -> list[tuple[str, str]]:
    """The pairs ``(A, B)`` and ``(C, D)`` of every row, unique, in order of first appearance."""
    seen: dict[tuple[str, str], None] = {}
    for row in rows:
        seen.setdefault((row[0], row[1]), None)
        seen.setdefault((row[2], row[3]), None)
    return list(seen)


def read_templates(path: Path | str) -> dict[str, str]:
    """The ``templates`` mapping of ``analogy_templates_vafa2021.json`` (section → template), checked."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"template file {p} does not exist")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} is not valid JSON: {exc}") from exc
    templates = raw.get("templates") if isinstance(raw, dict) else None
    if not isinstance(templates, dict) or not templates:
        raise DataError(f"{p} has no 'templates' object")
    for name, template in templates.items():
        check_template(str(name), template)
    return {str(k): str(v) for k, v in templates.items()}


def check_template(name: str, template: Any) -> None:
    """Raise :class:`DataError` unless ``template`` has each placeholder once, ends with one of them and has a
    distractor ``(…).``."""
    if not isinstance(template, str):
        raise DataError(f"template {name!r} is not a string")
    for ph in PLACEHOLDERS:
        if template.count(ph) != 1:
            raise DataError(f"template {name!r} must contain {ph} exactly once")
    if not template.endswith(PLACEHOLDERS):
        raise DataError(f"template {name!r} must end with [A] or [B] (the word to predict)")
    start, end = template.find(" ("), template.find(").")
    if start < 0 or end < start:
        raise DataError(f"template {name!r} has no distractor parenthetical ' (…).'")


# --------------------------------------------------------------------------- tokens
def is_single_token(tokenizer: Any, word: str) -> bool:
    """Whether ``" " + word`` is one token of ``tokenizer`` (no special tokens added)."""
    return len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1


def fix_capitalisation(section: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Apply :data:`CAPITALISATION_FIXES` of ``section`` to both words of each pair."""
    fixes = CAPITALISATION_FIXES.get(section, {})
    return [(fixes.get(a, a), fixes.get(b, b)) for a, b in pairs]


def char_span_positions(offsets: Sequence[tuple[int, int] | None], spans: Iterable[tuple[int, int]],
                        text: str | None = None) -> list[int]:
    """Token positions whose character offsets overlap one of ``spans`` (``[start, end)``), sorted.

    With ``text`` given, only the non-whitespace characters of a token count, so a token ``" ("`` overlaps a span
    starting at ``(`` but a token that is only a space does not. Positions without offsets (special tokens) never
    match."""
    out: set[int] = set()
    spans = [(int(s), int(e)) for s, e in spans]
    for j, off in enumerate(offsets):
        if off is None:
            continue
        a, b = int(off[0]), int(off[1])
        if text is not None:
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
        if a >= b:
            continue
        if any(a < e and s < b for s, e in spans):
            out.add(j)
    return sorted(out)


# --------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class AnalogyExample:
    """One filled template: the prompt, the target word and the annotated character spans in the prompt."""

    id: str  # "<section>/<index in the filtered pair list>"
    section: str
    index: int
    word_a: str
    word_b: str
    target_kind: str  # "a" or "b": which word ends the template
    prompt: str  # filled template up to the target word (no trailing space)
    target_word: str
    antecedent_word: str
    antecedent: tuple[int, int]  # char span of the antecedent word in the prompt
    distractor: tuple[int, int]  # char span from "(" to the end of ")."

    @property
    def target(self) -> str:
        """The continuation to predict: the target word with its leading space."""
        return " " + self.target_word

    def distractor_removed(self) -> str:
        """The prompt without the distractor: the text from the space before ``(`` to the end of ``).`` is cut."""
        start, end = self.distractor
        cut = start - 1 if start > 0 and self.prompt[start - 1] == " " else start
        return self.prompt[:cut] + self.prompt[end:]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fill_template(template: str, word_a: str, word_b: str, section: str = "", index: int = 0) -> AnalogyExample:
    """Fill ``template`` with the pair and locate the target, the antecedent and the distractor (module docs)."""
    check_template(section or "template", template)
    pos_a, pos_b = template.index("[A]"), template.index("[B]")
    target_kind = "a" if pos_a > pos_b else "b"
    target_ph, ante_ph = ("[A]", "[B]") if target_kind == "a" else ("[B]", "[A]")
    target_word, ante_word = (word_a, word_b) if target_kind == "a" else (word_b, word_a)
    body = template[: -len(target_ph)].rstrip(" ")
    ante_at = body.index(ante_ph)
    prompt = body[:ante_at] + ante_word + body[ante_at + len(ante_ph):]
    shift = len(ante_word) - len(ante_ph)
    d_start, d_end = body.index(" (") + 1, body.index(").") + 2
    if d_start > ante_at:
        d_start, d_end = d_start + shift, d_end + shift
    elif d_end > ante_at:  # pragma: no cover - templates never put the antecedent inside the distractor
        raise DataError(f"template {section!r}: the antecedent placeholder is inside the distractor")
    return AnalogyExample(
        id=f"{section}/{index}", section=section, index=index, word_a=word_a, word_b=word_b,
        target_kind=target_kind, prompt=prompt, target_word=target_word, antecedent_word=ante_word,
        antecedent=(ante_at, ante_at + len(ante_word)), distractor=(d_start, d_end),
    )


def build_examples(sections: Mapping[str, Iterable[Sequence[str]]], templates: Mapping[str, str],
                   tokenizer: Any = None) -> list[AnalogyExample]:
    """Every section that has a template: unique pairs → capitalisation fix → single-token filter (skipped when
    ``tokenizer`` is None) → filled template. Sections keep the order of ``templates``."""
    out: list[AnalogyExample] = []
    for section, template in templates.items():
        if section not in sections:
            raise DataError(f"template section {section!r} is not in the analogy file")
        pairs = fix_capitalisation(section, unique_pairs(sections[section]))
        if tokenizer is not None:
            pairs = [(a, b) for a, b in pairs if is_single_token(tokenizer, a) and is_single_token(tokenizer, b)]
        out.extend(fill_template(template, a, b, section, i) for i, (a, b) in enumerate(pairs))
    return out


def load_analogies(tokenizer: Any = None, root: Path | str | None = None) -> list[AnalogyExample]:
    """Read ``questions_words`` from the data root and build the examples (:func:`build_examples`)."""
    folder = require_data(FOLDER, root)
    return build_examples(read_sections(folder / ANALOGY_FILE), read_templates(folder / TEMPLATE_FILE), tokenizer)


__all__ = [
    "ANALOGY_FILE", "CAPITALISATION_FIXES", "FOLDER", "TEMPLATE_FILE", "AnalogyExample", "build_examples",
    "char_span_positions", "check_template", "fill_template", "fix_capitalisation", "is_single_token",
    "load_analogies", "read_sections", "read_templates", "unique_pairs",
]
