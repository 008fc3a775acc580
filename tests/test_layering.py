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


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a chain of attributes on a name ("" for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _private_imports(path: Path, prefix: str) -> list[str]:
    """Private names of modules under ``prefix`` that ``path`` uses: imported by name (``from m import _x``) or read
    as an attribute of the module (``import m as r; r._x``, ``m._x``, ``from pkg import m; m._x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            out.extend(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module and prefix.startswith(node.module + "."):
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            head = _dotted(node.value)
            first, _, rest = head.partition(".")
            full = aliases.get(first, first) + (f".{rest}" if rest else "")
            if full.startswith(prefix):
                out.append(f"{full}.{node.attr}")
    return out


def test_the_private_name_check_sees_every_spelling(tmp_path):
    """The check above must see what it forbids, however the module is named."""
    spellings = ["from seqexplain.methods.rationale import _start_tracks\n",
                 "import seqexplain.methods.rationale as r\nr._start_tracks(1, 2)\n",
                 "import seqexplain.methods.rationale\nseqexplain.methods.rationale._start_tracks(1, 2)\n",
                 "from seqexplain.methods import rationale as r\nr._start_tracks(1, 2)\n"]
    for i, code in enumerate(spellings):
        (tmp_path / f"m{i}.py").write_text(code)
        assert _private_imports(tmp_path / f"m{i}.py", "seqexplain.methods") == [
            "seqexplain.methods.rationale._start_tracks"], code
    (tmp_path / "ok.py").write_text("import seqexplain.methods.rationale as r\nr.evaluate(1)\nx = {}\nx._y\n")
    assert _private_imports(tmp_path / "ok.py", "seqexplain.methods") == []


@pytest.mark.parametrize("module,path", [m for m in _modules() if m[0].startswith("seqexplain.metrics")],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_metrics_import_no_private_names_of_methods(module, path):
    assert not _private_imports(path, "seqexplain.methods"), module


# what methods may import from the models layer: the interface and its services, no adapter (an isinstance test on an
# adapter class would be a branch on the model kind)
METHODS_MAY_IMPORT_FROM_MODELS = {"seqexplain.models.base", "seqexplain.models.example", "seqexplain.models.rows",
                                  "seqexplain.models.batching", "seqexplain.models.module_state",
                                  "seqexplain.models.keep", "seqexplain.models.objective"}


def _model_classes() -> set[str]:
    """Names of the classes the models layer defines outside the interface modules (adapters, models)."""
    names = set()
    for module, path in _modules():
        if module.startswith("seqexplain.models.") and module not in METHODS_MAY_IMPORT_FROM_MODELS:
            names.update(n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                         if isinstance(n, ast.ClassDef))
    return names


MODEL_CLASSES = _model_classes()


@pytest.mark.parametrize("module,path", [m for m in _modules() if m[0].startswith("seqexplain.methods")],
                         ids=lambda v: str(v) if isinstance(v, str) else "")
def test_methods_never_branch_on_the_model_kind(module, path):
    """Kind-specific knowledge lives in the model adapters: no method reads ``.kind`` or an adapter's head, imports
    an adapter module, or names an adapter class (``type(model).__name__ == "HFCausalLM"``)."""
    from_models = {m for m in _imports(path) if m.startswith("seqexplain.models")}
    assert from_models <= METHODS_MAY_IMPORT_FROM_MODELS | {"seqexplain.models"}, \
        f"{module} imports {sorted(from_models - METHODS_MAY_IMPORT_FROM_MODELS)}"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "seqexplain.models"]
    for node in package_imports:  # from seqexplain.models import SequenceModel, Example: the interface only
        assert {a.name for a in node.names} <= {"SequenceModel", "Example", "Part"}, f"{module}: {ast.dump(node)}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("kind", "head_position", "n_source"), f"{module} reads .{node.attr}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in ("causal", "seq2seq", "classifier", "labeller", "head_position"), \
                f"{module} names the kind {node.value!r}"
            assert node.value not in MODEL_CLASSES, f"{module} names the model class {node.value!r}"


def test_the_kind_branch_check_sees_adapter_classes(tmp_path):
    """The check above must fail on a branch on an adapter's class, by import or by name."""
    for code in ["from seqexplain.models.hf_seq2seq import HFSeq2SeqLM\nisinstance(m, HFSeq2SeqLM)\n",
                 "x = type(m).__name__ == 'HFCausalLM'\n", "if m.kind == 'x': pass\n",
                 "from seqexplain.models import HFClassifierAdapter\n"]:
        (tmp_path / "m.py").write_text(code)
        with pytest.raises(AssertionError):
            test_methods_never_branch_on_the_model_kind("seqexplain.methods.fake", tmp_path / "m.py")
