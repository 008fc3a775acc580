"""docs/errors.md documents every error class, and only those."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from seqexplain import errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_one_section_per_error_class():
    classes = {name for name, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.SeqExplainError)}
    sections = set(re.findall(r"^## (\w+)\s*$", DOC.read_text(encoding="utf-8"), flags=re.M))
    assert sections == classes


def _source_strings() -> list[str]:
    """Every string literal under src/ (adjacent literals joined), and every f-string's literal text with
    ``\\x00`` where a value is formatted in."""
    out = []
    for path in (DOC.parents[1] / "src" / "seqexplain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                out.append("".join(v.value if isinstance(v, ast.Constant) else "\x00" for v in node.values))
    return out


#: quoted messages that hold a formatted value in the source (the docs write an example of it), each with the
#: pattern its f-string matches in the source text
_FORMATTED = {
    "the text must be a string": r"the \{what\} must be a string",
    "a target for a language model is text, not a label index": r"a target for a \{model\} model is text, not a label",
    "but the model takes a float tensor [": r"but the model takes a float tensor \{shape\}",
    "rule='gausslegendre' takes at most 1000 steps": r"rule='gausslegendre' takes at most \{MAX_GAUSS_LEGENDRE_STEPS\}",
    "--seed must be between 0 and 2147483647": r"--seed must be between 0 and \{SEED_MAX\}",
    "of other settings / training / base model, settings or data (keys)": r"holds \{what\} of other \{of\}",
    "checkpoint steps [": r"checkpoint steps \{bad\} lie outside the training length",
    "] lie outside the training length": r"checkpoint steps \{bad\} lie outside the training length",
    "the test data has label(s)": r"the \{what\} data has label\(s\)",
    "best.safetensors is missing": r"\{weights\} is missing; train a model into",
    "attention_mask parameter": r"has no \{' / '.join\(self._missing_masks\)\} parameter",
    "is a masked LM": r'"a masked LM"',
}
#: pydantic's own wording, quoted for run and training configurations
_PYDANTIC = {": seed: Input should be", ": Extra inputs are not permitted", ": Input should be"}


def test_every_quoted_message_is_one_the_code_raises():
    """Each message quoted in the first column of a table (split at ``…`` and ``<placeholders>``) is text of a
    string in src/, or a listed formatted one whose f-string is there; a quote of a message that was reworded or
    removed fails."""
    import pydantic

    strings, source = _source_strings(), "\n".join(
        p.read_text(encoding="utf-8") for p in (DOC.parents[1] / "src" / "seqexplain").rglob("*.py"))
    missing = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        for quoted in re.findall(r"`([^`]+)`", line.split(" | ")[0]):
            for piece in re.split(r"…|<[^>]+>|\b[A-Z]\b", quoted):
                piece = piece.strip(" ,.'\"")
                if len(piece) < 4 or any(piece in s for s in strings) or piece in _PYDANTIC:
                    continue
                if piece not in _FORMATTED or not re.search(_FORMATTED[piece], source):
                    missing.append(f"{quoted!r} ({piece!r})")
    assert not missing, "quoted in docs/errors.md but raised nowhere:\n" + "\n".join(missing)

    class Config(pydantic.BaseModel, extra="forbid"):
        seed: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Config.model_validate({"seed": "x", "other": 1})
    assert all(p.lstrip(": ").split(": ")[-1] in str(caught.value) for p in _PYDANTIC)
