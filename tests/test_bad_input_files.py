"""Bad inputs about files, through the API and the CLI: saved attributions that are missing, not JSON, not an
attribution, inconsistent or from a newer version, and output paths that cannot or must not be written
(inside a file, links, FIFOs, folders, the same file twice, an output folder that is a file).

The contract each case is held to is in ``bad_input_cases``; nothing on disk may change.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bad_input_cases import PROMPT, Case, check_bad_input, explain_argv

import seqexplain
import seqexplain.report
from seqexplain.errors import DataError, InputError, ModelLoadError, UnsafeOutputError


def _file(content: str | None) -> Callable[[Any], Path]:
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / "x.json"
        if content is not None:
            path.write_text(content, encoding="utf-8")
        return path

    return setup


def _blocked_output(ctx: Any) -> Path:
    blocker = ctx.tmp / "file"
    blocker.write_text("x", encoding="utf-8")
    return blocker / "sub" / "a.json"  # its folder would have to be created inside a file


def _special_output(kind: str) -> Callable[[Any], Path]:
    """``out.json`` as a symbolic link to a file, a FIFO, a folder, or a plain file with content."""
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / "out.json"
        if kind == "link":
            (ctx.tmp / "target.txt").write_text("keep me", encoding="utf-8")
            os.symlink(ctx.tmp / "target.txt", path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
            (path / "inside.txt").write_text("keep me", encoding="utf-8")
        else:
            path.write_text("keep me", encoding="utf-8")
        return path

    return setup


def _same_outputs(path: Path) -> object:
    from seqexplain.runs import distinct_outputs

    return distinct_outputs(("--json", path), ("--html", path))


def _demo(path: Path) -> object:
    from seqexplain.demo import run_demo

    return run_demo(path)


def _read_config(path: Path) -> object:
    from seqexplain.runs.config import read_config

    return read_config(path)


def _reproduce(path: Path) -> object:
    from seqexplain.runs import output_dir

    return output_dir(path)


def _saved(mangle: Callable[[dict[str, Any]], Any]) -> Callable[[Any], Path]:
    """A real saved attribution (gpt2, greedy), its JSON document changed by ``mangle``."""
    def setup(ctx: Any) -> Path:
        attr = seqexplain.explain(ctx.causal, PROMPT, " mat", "greedy", max_size=2)
        doc = attr.to_dict()
        doc = mangle(doc) or doc
        path = ctx.tmp / "saved.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return setup


def _bytes_file(name: str, data: bytes) -> Callable[[Any], Path]:
    def setup(ctx: Any) -> Path:
        path = ctx.tmp / name
        path.write_bytes(data)
        return path

    return setup


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def mangle(doc: dict[str, Any]) -> dict[str, Any]:
        doc[key] = value
        return doc

    return mangle


def _bad_rationale(doc: dict[str, Any]) -> dict[str, Any]:
    doc["rationale"]["positions"][0] = [999]
    return doc


def _unreadable(rid: str, setup: Callable[[Any], Path], fragments: tuple[str, ...]) -> Case:
    """A saved attribution that cannot be read: ``Attribution.load`` and ``seqexplain show`` refuse it (DataError)."""
    return Case(rid, setup, lambda c, path: seqexplain.Attribution.load(path), lambda c, path: ["show", path],
                DataError, fragments)


def _unwritable(rid: str, setup: Callable[[Any], Path], option: str, fragments: tuple[str, ...]) -> Case:
    """An output path ``Attribution.save`` and ``seqexplain explain <option> path`` must refuse (InputError)."""
    return Case(rid, setup, lambda c, path: seqexplain.explain(c.causal, "The cat", " sat", "occlusion").save(path),
                lambda c, path: explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                             option, path),
                InputError, fragments)


CASES = [
    _unreadable("attribution file that is not JSON", _file("[1, 2"), ("x.json", "not a readable")),
    # (this message does not name the file, unlike the other DataErrors: Attribution.load re-raises from_dict's)
    _unreadable("attribution file without an attribution", _file('{"hello": 1}'),
                ("not a seqexplain attribution file", "format")),
    _unreadable("missing attribution file", _file(None), ("x.json", "does not exist")),
    _unwritable("unwritable output", _blocked_output, "--json", ("a.json",)),
    _unwritable("output that is a symbolic link", _special_output("link"), "--json", ("out.json", "symbolic link")),
    _unwritable("output that is a FIFO", _special_output("fifo"), "--json", ("out.json", "FIFO")),
    _unwritable("output that is a folder", _special_output("folder"), "--html", ("out.json", "folder")),
    Case("HTML output that is a symbolic link", _special_output("link"),
         lambda c, path: seqexplain.report.save_html(seqexplain.explain(c.causal, "The cat", " sat", "occlusion"),
                                                     path),
         lambda c, path: explain_argv(c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion",
                                      "--html", path),
         UnsafeOutputError, ("out.json", "symbolic link")),
    Case("the same file for JSON and HTML", _special_output("file"),
         lambda c, path: _same_outputs(path), lambda c, path: explain_argv(
             c.gpt2_dir, "The cat", "--target", " sat", "--method", "occlusion", "--json", path, "--html", path),
         InputError, ("out.json", "--json", "--html")),
    _unreadable("attribution file that is a folder", _special_output("folder"), ("out.json", "is a folder")),
    _unreadable("attribution file that is a FIFO", _special_output("fifo"), ("out.json",)),
    Case("demo output folder that is a file", _special_output("file"),
         lambda c, path: _demo(path),
         lambda c, path: ["demo", "--out", path],
         InputError, ("out.json", "is a file, not a folder")),
    Case("reproduction output folder that is a file", _special_output("file"),
         lambda c, path: _reproduce(path),
         lambda c, path: ["reproduce", "verwimp2018", "--quick", "--out", path],
         InputError, ("out.json", "is a file, not a folder")),
    Case("model path that is a FIFO", _special_output("fifo"), lambda c, path: seqexplain.load_model(path),
         lambda c, path: explain_argv(path, "The cat"), ModelLoadError, ("out.json", "is a FIFO")),
    Case("run configuration that is a FIFO", _special_output("fifo"), lambda c, path: _read_config(path),
         lambda c, path: ["run", path], InputError, ("out.json", "is a FIFO", "not a regular file")),
    _unreadable("saved attribution that is a JSON list", _file("[1, 2, 3]"), ("x.json",)),
    _unreadable("saved attribution with offsets beyond the text", _saved(_set("offsets", [[0, 999]] * 20)),
                ("saved.json",)),
    _unreadable("saved rationale with positions out of range", _saved(_bad_rationale), ("saved.json", "999")),
    _unreadable("saved attribution from a newer seqexplain", _saved(_set("version", 99)), ("newer seqexplain", "99")),
    _unreadable("random bytes named .safetensors", _bytes_file("x.safetensors", bytes(range(256)) * 4),
                ("x.safetensors",)),
    _unreadable("scores of the wrong shape", _saved(_set("scores", [[1.0, 2.0]])), ("saved.json",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, bad_input_ctx: Any, runner: Any) -> None:
    check_bad_input(case, bad_input_ctx, runner)
