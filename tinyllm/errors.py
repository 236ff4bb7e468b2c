"""The one exception family for bad user input: the CLI prints its message and exits with code 2.

Library code never prints: what goes wrong is raised from here; what a person should know
(a note, a warning) is said through a ``log=`` callback of type :data:`Log`, silent by default
(:func:`no_log`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

Log = Callable[[str], None]


def no_log(message: str) -> None:
    """The default ``log=`` callback: library code never prints."""


class UserError(ValueError):
    """Bad input or usage. The message names the file (and line) and says what is wrong."""

    exit_code = 2


class DataError(UserError):
    """A data file that cannot be used (missing, empty, not UTF-8, malformed); the message starts
    with ``file:line:`` (or the file alone)."""


class RunFailed(RuntimeError):
    """A run that started correctly but failed (exit code 1)."""

    exit_code = 1


class DiskFull(RunFailed):
    """A write that ran out of space: "no space left on DEVICE writing FILE" (exit code 1).

    ``path`` is the file being written; whoever knows more (the training loop: which checkpoint is
    intact) raises a new one with that added."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path
