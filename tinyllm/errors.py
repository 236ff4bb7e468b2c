"""The one exception family for bad user input: the CLI prints its message and exits with code 2."""
from __future__ import annotations


class UserError(ValueError):
    """Bad input or usage. The message names the file (and line) and says what is wrong."""

    exit_code = 2


class RunFailed(RuntimeError):
    """A run that started correctly but failed (exit code 1)."""

    exit_code = 1
