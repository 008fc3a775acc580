"""The data flow of ARCHITECTURE.md: nothing below imports anything above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "seqexplain"

# module prefix -> package prefixes it must never import
FORBIDDEN = {
    "seqexplain.errors": ["seqexplain."],
    "seqexplain.atomic": ["seqexplain.models", "seqexplain.methods", "seqexplain.metrics", "seqexplain.report",
                          "seqexplain.data", "seqexplain.training", "seqexplain.analysis", "seqexplain.experiments",
                          "seqexplain.runs", "seqexplain.attribution", "seqexplain.explain"],
    "seqexplain.models": ["seqexplain.methods", "seqexplain.metrics", "seqexplain.report", "seqexplain.training",
                          "seqexplain.analysis", "seqexplain.experiments", "seqexplain.cli", "seqexplain.explain"],
    "seqexplain.methods": ["seqexplain.report", "seqexplain.cli", "seqexplain.experiments", "seqexplain.training"],
    "seqexplain.metrics": ["seqexplain.report", "seqexplain.cli", "seqexplain.experiments"],
    "seqexplain.report": ["seqexplain.models", "seqexplain.methods", "seqexplain.cli", "seqexplain.experiments"],
    "seqexplain.training": ["seqexplain.report", "seqexplain.cli", "seqexplain.experiments"],
    "seqexplain.analysis": ["seqexplain.cli", "seqexplain.experiments"],
    "seqexplain.experiments": ["seqexplain.cli"],
    "seqexplain.data": ["seqexplain.models", "seqexplain.methods", "seqexplain.report", "seqexplain.cli",
                        "seqexplain.experiments", "seqexplain.training", "seqexplain.analysis", "seqexplain.metrics"],
}
ATTRIBUTION_MAY_IMPORT = {"seqexplain.errors", "seqexplain.atomic", "seqexplain.ranking"}
# the parts of the result type split out of seqexplain.attribution: held to the same rule, and they may import each
# other but never seqexplain.attribution itself (which imports them)
ATTRIBUTION_PARTS = {"seqexplain.attribution_checks", "seqexplain.attribution_groups", "seqexplain.attribution_io",
                     "seqexplain.attribution_rationale"}
# leaf modules: what each may import from the package, nothing else
LEAVES = {
    "seqexplain.atomic": {"seqexplain.errors"},
    "seqexplain.ranking": {"seqexplain.errors"},
    "seqexplain.progress": set(),
    "seqexplain.trace": {"seqexplain.attribution", "seqexplain.attribution_io", "seqexplain.errors",
                         "seqexplain.atomic"},
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("seqexplain")}


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: str(v) if isinstance(v, str) else "")
def test_no_upward_imports(module, path):
    imported = _imports(path)
    for prefix, banned in FORBIDDEN.items():
        if module == prefix or module.startswith(prefix + "."):
            bad = sorted(m for m in imported for b in banned if m.startswith(b) and not m.startswith(prefix))
            assert not bad, f"{module} imports {bad}"
    if module == "seqexplain.attribution":
        assert imported <= ATTRIBUTION_MAY_IMPORT | ATTRIBUTION_PARTS, imported
    if module.startswith("seqexplain.attribution_"):
        assert module in ATTRIBUTION_PARTS, f"{module}: add it to ATTRIBUTION_PARTS"
        assert imported <= ATTRIBUTION_MAY_IMPORT | ATTRIBUTION_PARTS, imported
    if module in LEAVES:
        assert imported <= LEAVES[module], imported
    if module != "seqexplain.cli":
        assert "seqexplain.cli" not in imported
    if not module.startswith("seqexplain.cli"):  # nothing below the CLI imports its helper modules (seqexplain.cli_*)
        assert not [m for m in imported if m.startswith("seqexplain.cli")], f"{module} imports the CLI"


def _private_imports(path: Path, prefix: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            out.extend(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
    return out


@pytest.mark.parametrize("module,path", [m for m in _modules() if m[0].startswith("seqexplain.metrics")],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_metrics_import_no_private_names_of_methods(module, path):
    assert not _private_imports(path, "seqexplain.methods"), module


@pytest.mark.parametrize("module,path", [m for m in _modules() if m[0].startswith("seqexplain.methods")],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_methods_never_branch_on_the_model_kind(module, path):
    """Kind-specific knowledge lives in the model adapters: no method reads ``.kind`` or an adapter's head."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("kind", "head_position", "n_source"), f"{module} reads .{node.attr}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in ("causal", "seq2seq", "classifier", "head_position"), \
                f"{module} names the kind {node.value!r}"
