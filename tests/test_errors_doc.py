"""docs/errors.md documents every error class, and only those."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from seqexplain import errors

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_one_section_per_error_class():
    classes = {name for name, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.SeqExplainError)}
    sections = set(re.findall(r"^## (\w+)\s*$", DOC.read_text(encoding="utf-8"), flags=re.M))
    assert sections == classes
