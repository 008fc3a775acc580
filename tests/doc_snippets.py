"""Code in the documentation, found by scanning it: fenced Python blocks and the shell commands of shell blocks.

Used by ``tests/test_doc_snippets.py``. Every ```` ```python ```` block of ``README.md`` and ``docs/**/*.md`` is a
snippet that must run as written, in a fresh namespace. What a writer of documentation can say to the test:

* ```` ```python continues ```` (a word after the language; renderers ignore it): the block runs after the python
  blocks before it in the same file, in their namespace (e.g. the README's examples that use the quickstart's
  ``model``). The blocks of one chain form one test case.
* a first line ``# doc-test: skip (reason)``: the block is not run; the test reports it skipped with the reason.
  Use it sparingly, and only where the reason is one a reader would accept (say so in the reason).
* a first line ``# doc-test: signatures (module)``: the block lists signatures ``name(params) -> Return`` of
  ``module``'s functions, which must equal the real ones (names, kinds, defaults, return annotation).
* ``# -> text`` at the end of a line: the block's printed output contains ``text``, after the text of the comment
  before it (a trailing ``…`` is cut off, so ``# -> the text is empty…`` checks a prefix).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PYTHON_LANGUAGES = {"python", "py"}
MARKER = re.compile(r"^#\s*doc-test:\s*(\w+)\s*(?:\((.*)\))?\s*$")
EXPECTED = re.compile(r"#\s*->\s*(.+?)\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`]*)$")


def doc_files() -> list[Path]:
    """``README.md`` and every Markdown file under ``docs/``, in a fixed order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced block: the file, the 1-based line of its opening fence, the info words and the dedented code."""

    path: Path
    line: int
    info: tuple[str, ...]
    code: str

    @property
    def language(self) -> str:
        return self.info[0].lower() if self.info else ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path}:{self.line}"

    def marker(self) -> tuple[str, str] | None:
        """``(kind, argument)`` of a first line ``# doc-test: kind (argument)``, else ``None``."""
        first = self.code.lstrip("\n").split("\n", 1)[0]
        m = MARKER.match(first.strip())
        return (m.group(1), (m.group(2) or "").strip()) if m else None


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, also those indented inside list items (CommonMark fences)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            line = lines[j]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])  # up to the fence's indent
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{i + 1}: the fence opened here is never closed")
        blocks.append(Block(path, i + 1, tuple(info), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def python_chains(paths: list[Path] | None = None) -> list[list[Block]]:
    """The python blocks of ``paths`` (default: the documentation), grouped: a block marked ``continues`` joins the
    chain of the block before it."""
    chains: list[list[Block]] = []
    for path in paths or doc_files():
        previous: list[Block] | None = None
        for block in fenced_blocks(path):
            if block.language not in PYTHON_LANGUAGES:
                continue
            if "continues" in block.info[1:]:
                if previous is None:
                    raise AssertionError(f"{block.where}: 'continues' but no python block comes before it")
                previous.append(block)
                continue
            previous = [block]
            chains.append(previous)
    return chains


def expected_outputs(code: str) -> list[str]:
    """The texts of the block's ``# -> text`` comments, in order (a trailing ``…`` or ``...`` cut off)."""
    return [m.group(1).removesuffix("…").removesuffix("...").rstrip() for line in code.splitlines()
            if (m := EXPECTED.search(line))]


def _expand_braces(token: str) -> list[str]:
    """Shell brace expansion of one ``{a,b,c}`` group (what the docs use)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", token)
    if not m:
        return [token]
    return [w for part in m.group(1).split(",") for w in _expand_braces(token[: m.start()] + part + token[m.end():])]


@dataclass(frozen=True)
class ShellCommand:
    """One command of a shell block: where it is written, its words, and the seqexplain arguments in it (``None``
    when it does not call seqexplain)."""

    where: str
    words: tuple[str, ...]
    seqexplain_args: tuple[str, ...] | None


def _seqexplain_args(words: list[str]) -> list[str] | None:
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words and words[0] == "seqexplain":
        return words[1:]
    if "-m" in words:
        k = words.index("-m")
        if k + 1 < len(words) and words[k + 1] in ("seqexplain", "seqexplain.cli"):
            return words[k + 2:]
    return None


def shell_commands(paths: list[Path] | None = None) -> list[ShellCommand]:
    """Every command of every shell block in ``paths`` (default: the documentation): lines joined at a trailing
    backslash, comments removed, split at ``&&``, ``;`` and ``|``, brace groups expanded (one command per word)."""
    commands: list[ShellCommand] = []
    for path in paths or doc_files():
        for block in fenced_blocks(path):
            if block.language not in SHELL_LANGUAGES:
                continue
            text = re.sub(r"\\\n", " ", block.code)
            for line in text.splitlines():
                lexer = shlex.shlex(line.removeprefix("$ "), posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                lexer.commenters = "#"
                words: list[str] = []
                for word in [*lexer, ";"]:
                    if word not in ("&&", "||", ";", "|", "&"):
                        words.append(word)
                        continue
                    if not words:
                        continue
                    expanded = [_expand_braces(w) for w in words]
                    variants = [[w[0] for w in expanded]] if all(len(w) == 1 for w in expanded) else [
                        [w[0] if len(w) == 1 else choice for w in expanded]
                        for choice in next(w for w in expanded if len(w) > 1)]
                    for v in variants:
                        args = _seqexplain_args(list(v))
                        commands.append(ShellCommand(block.where, tuple(v), None if args is None else tuple(args)))
                    words = []
    return commands


__all__ = ["Block", "ROOT", "ShellCommand", "doc_files", "expected_outputs", "fenced_blocks", "python_chains",
           "shell_commands"]
