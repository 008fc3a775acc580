"""Writes that never destroy, and output paths checked before the work: atomic writes refuse what is not a
regular file (links, FIFOs, folders, devices), keep a replaced file's mode, and refuse unwritable and read-only
targets; ``seqexplain explain`` and ``show`` check their output paths before loading a model."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from write_checks import assert_one_error_line, invoke, snapshot

import seqexplain.cli as cli
from seqexplain.atomic import UnsafeOutputError, atomic_path, atomic_write_text
from seqexplain.errors import InputError
from seqexplain.runs import output_dir, output_file

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def char_device() -> Path:
    for candidate in ("/dev/null", "/dev/full", "/dev/zero"):
        if os.path.exists(candidate) and stat.S_ISCHR(os.stat(candidate).st_mode):
            return Path(candidate)
    pytest.skip("no character device found")


def make_bad(kind: str, folder: Path) -> Path:
    """A path of the given kind inside ``folder`` (a regular file ``keep.txt`` is there too)."""
    keep = folder / "keep.txt"
    keep.write_text("precious\n")
    path = folder / "out.json"
    if kind == "symlink":
        path.symlink_to(keep.name)
    elif kind == "dangling_symlink":
        path.symlink_to("missing.txt")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
        (path / "inside.txt").write_text("inside\n")
    elif kind == "device":
        return char_device()
    else:
        raise AssertionError(kind)
    return path


BAD_KINDS = ["symlink", "dangling_symlink", "fifo", "directory", "device"]
EXPECTED_WORD = {"symlink": "symbolic link", "dangling_symlink": "symbolic link", "fifo": "FIFO",
                 "directory": "folder", "device": "device"}


def device_state(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_mode, st.st_rdev


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model is the slow work: it must not start when an output path is bad."""
    calls: list[Any] = []

    def fake(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        raise AssertionError("the model was loaded before the output paths were checked")

    monkeypatch.setattr(cli, "load_cli_model", fake)
    return calls


# ---------------------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_atomic_write_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = make_bad(kind, tmp_path)
    before, dev_before = snapshot(tmp_path), (device_state(path) if kind == "device" else None)
    with pytest.raises(UnsafeOutputError, match=EXPECTED_WORD[kind]):
        atomic_write_text(path, "{}")
    assert snapshot(tmp_path) == before  # nothing lost, changed or left behind (no temp file)
    if kind == "device":
        assert device_state(path) == dev_before
    with pytest.raises(InputError, match=EXPECTED_WORD[kind]):  # the up-front check, as a user error
        output_file(path)
    ran = []
    with pytest.raises(UnsafeOutputError), atomic_path(path):  # refused before the writer runs
        ran.append(True)
    assert not ran and snapshot(tmp_path) == before


def test_atomic_write_replaces_a_regular_file_and_keeps_its_mode(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    os.chmod(path, 0o600)
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_output_file_under_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="choose another path"):
        output_file(tmp_path / "f" / "x.json")
    with pytest.raises(InputError, match="is a file, not a folder"):
        output_dir(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.skipif(IS_ROOT, reason="root can write into any folder")
def test_unwritable_folder_is_refused_up_front(tmp_path, runner, no_model):
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "old.json").write_text("old")
    os.chmod(locked, 0o555)
    try:
        before = snapshot(tmp_path)
        with pytest.raises(InputError, match="not writable"):
            output_file(locked / "new.json")
        with pytest.raises(InputError, match="read-only|not writable"):
            output_file(locked / "sub" / "new.json")
        assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--json", locked / "new.json"), "not writable")
        assert_one_error_line(invoke(runner, "reproduce", "vafa2021", "majority_class", "--out", locked / "run"),
                              "not writable")
        assert snapshot(tmp_path) == before and not no_model
    finally:
        os.chmod(locked, 0o755)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_no_file_can_be_made_in_is_refused_up_front(tmp_path, runner, no_model):
    """/proc passes an access() check (as root it passes every one), and the write failed after the whole
    computation; a file made and removed in the folder tells, and leaves nothing behind."""
    with pytest.raises(InputError, match="no file can be made in /proc"):
        output_file("/proc/seqexplain-out.json")
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--json", "/proc/seqexplain-out.json"),
                          "no file can be made")
    assert not no_model
    before = snapshot(tmp_path)
    output_file(tmp_path / "new.json")
    assert snapshot(tmp_path) == before


def test_read_only_file_is_refused(tmp_path, runner, no_model):
    """A file without a write bit is refused for root too (access() says yes to root)."""
    path = tmp_path / "a.json"
    path.write_text("old")
    os.chmod(path, 0o444)
    with pytest.raises(UnsafeOutputError, match="read-only"):
        atomic_write_text(path, "new")
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--json", path), "read-only")
    assert path.read_text() == "old" and not no_model


# --------------------------------------------------------------------------------- CLI: checked up front
@pytest.mark.parametrize("option", ["--json", "--html"])
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_explain_refuses_bad_output_paths_before_loading(tmp_path, runner, no_model, kind, option):
    path = make_bad(kind, tmp_path)
    before = snapshot(tmp_path)
    dev_before = device_state(path) if kind == "device" else None
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", option, path), EXPECTED_WORD[kind], str(path))
    assert not no_model
    assert snapshot(tmp_path) == before
    if kind == "device":
        assert device_state(path) == dev_before


@pytest.mark.parametrize("second", ["same.json", "./sub/../same.json", "link.json"])
def test_explain_same_path_for_json_and_html(tmp_path, runner, no_model, monkeypatch, second):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "same.json").write_text("kept")
    if second == "link.json":  # a link is refused on its own; as a second name of the same file it is a clash too
        (tmp_path / "link.json").symlink_to("same.json")
    before = snapshot(tmp_path)
    line = assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--json", "same.json", "--html", second))
    assert "same file" in line or "symbolic link" in line
    assert not no_model and snapshot(tmp_path) == before


def test_show_of_a_folder_and_onto_its_input(tmp_path, runner):
    assert_one_error_line(invoke(runner, "show", tmp_path), "is a folder")
    saved = tmp_path / "a.json"
    saved.write_text("{}")
    assert_one_error_line(invoke(runner, "show", saved, "--html", saved), "same file")
    assert saved.read_text() == "{}"


def test_empty_model_name(runner):
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--model", ""), "--model: the model path is empty")
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--model", "  "), "--model: the model path is empty")


def test_max_new_tokens_zero(runner, no_model):
    assert_one_error_line(invoke(runner, "explain", "-t", "hi", "--max-new-tokens", "0"), "--max-new-tokens",
                          "must be a positive number")
    assert not no_model


# ---------------------------------------------------------------------------------------- plots
def _compatibility_results() -> dict[str, Any]:
    curve = [{"kept_bits": k, "mae": 0.1 * k} for k in range(3)]
    return {name: {"compatibility": {"model_probs": [0.2, 0.7], "true_probs": [0.25, 0.6], "mae": 0.05,
                                     "curve": curve}} for name in ("standard", "compatible")}


def test_compatibility_plot_is_written_atomically(tmp_path, monkeypatch):
    """The plot used to go to a fixed temporary name, left behind when drawing failed, and replaced a link."""
    import matplotlib.figure

    from seqexplain.experiments.vafa2021 import plot_compatibility

    path = plot_compatibility(_compatibility_results(), tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "linked").mkdir()
    bad = make_bad("symlink", tmp_path / "linked")
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeOutputError):
        plot_compatibility(_compatibility_results(), bad)

    def broken(*args: Any, **kwargs: Any) -> None:
        Path(args[1]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot_compatibility(_compatibility_results(), tmp_path / "plot.png")
    assert snapshot(tmp_path) == before
