"""runs.warning_log: seqexplain's warnings recorded into warnings.json, and each distinct one shown once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import seqexplain
from seqexplain.runs.warning_log import warning_log

_INSIDE = str(Path(seqexplain.__file__).parent / "runs" / "data.py")


def test_a_warning_issued_twice_is_shown_and_recorded_once(tmp_path: Path) -> None:
    """A corpus run read the ERASER file twice (counting, then explaining): its empty-span warning printed twice,
    since each read came after a ``catch_warnings`` had reset the filters' memory."""
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # Python's own rules would show every one of these
        warnings.showwarning = lambda message, *_args, **_kw: shown.append(str(message))  # the console's writer
        with warning_log(tmp_path, "seqexplain run x") as seen:
            for _ in range(2):
                warnings.warn_explicit("20 empty evidence span(s) dropped", UserWarning, _INSIDE, 249, registry={})
            warnings.warn_explicit("another message", UserWarning, _INSIDE, 250, registry={})
            warnings.warn_explicit("not ours", UserWarning, "elsewhere.py", 1, registry={})
            warnings.warn_explicit("not ours", UserWarning, "elsewhere.py", 1, registry={})
    err = "\n".join(shown)
    assert err.count("20 empty evidence span(s) dropped") == 1 and err.count("another message") == 1
    assert err.count("not ours") == 2  # other packages' warnings are left to Python's own rules
    assert seen == ["UserWarning: 20 empty evidence span(s) dropped", "UserWarning: another message"]
    saved = json.loads((tmp_path / "warnings.json").read_text(encoding="utf-8"))
    assert saved == {"command": "seqexplain run x", "warnings": seen}
