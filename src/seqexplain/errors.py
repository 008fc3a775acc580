"""User-facing errors.

Every error a user can cause is a subclass of :class:`SeqExplainError`; its message says what to do.
The CLI prints the message and exits with status 2. This module imports nothing from the package, so
every layer may raise these.
"""

from __future__ import annotations

#: the end of the message for a training folder that another configuration made (the CLI has ``--out``; the Python
#: functions also take ``resume=False``, which starts over)
OTHER_FOLDER = "choose another output folder (--out), or start over with resume=False from Python"


class SeqExplainError(Exception):
    """Base class of the errors a user can cause (bad input, missing files, unsupported requests)."""


class InputError(SeqExplainError, ValueError):
    """The text, target or options given to a call are unusable (empty, too long, unknown label, ...)."""


class UnreadableTextError(InputError):
    """A text holds nothing the tokenizer reads: empty, or only special or invisible characters."""


class ModelLoadError(SeqExplainError):
    """A model directory is missing, incomplete or corrupt, or its kind cannot be detected."""


class UnsupportedError(SeqExplainError):
    """The model cannot do what the method needs (return attentions, take a keep-mask, ...)."""


class UnknownMethodError(SeqExplainError, KeyError):
    """A method name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


class NonFiniteScoresError(SeqExplainError):
    """An attribution contains NaN or infinite values where finite ones were expected."""


class DataError(SeqExplainError):
    """A data or annotation file is missing or malformed (the message names the file and the line)."""


class UnsafeOutputError(InputError, OSError):
    """An output path that seqexplain refuses to write: a symbolic link, folder, FIFO, device or read-only file
    (only regular files are ever replaced), or a path whose folder cannot be written."""
