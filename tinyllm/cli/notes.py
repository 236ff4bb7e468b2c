"""Notes for people on stderr: said once per process, and only to a terminal.

Library code reports through ``log=`` callbacks; the CLI passes :func:`note` (or a function that
prints unconditionally where a command always reports, like training's progress).
"""
from __future__ import annotations

import sys

import click

_SAID: set[str] = set()
QUIET = False  # set by a command's -q/--quiet: notes and progress off, warnings and errors still shown


def _set_quiet(ctx, param, value) -> None:
    global QUIET
    QUIET = bool(value)


def quiet_option(f):
    """``-q/--quiet`` for a command: no notes, progress or log lines on stderr (warnings and
    errors are still shown). Sets :data:`QUIET` before the command runs."""
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_set_quiet,
                        help="No notes or progress on stderr (warnings and errors still).")(f)


def set_quiet(value: bool) -> None:
    """For commands with their own ``--quiet`` value (train, bench-train)."""
    _set_quiet(None, None, value)


def note(message: str) -> None:
    """Print ``message`` on stderr once per process, when stderr is a terminal and not -q.

    Messages that start with "warning:" are shown to pipelines too (see :func:`warn`).
    """
    if message.startswith("warning:"):
        return warn(message)
    if QUIET or message in _SAID or not sys.stderr.isatty():
        return
    _SAID.add(message)
    click.echo(message, err=True)


def warn(message: str) -> None:
    """A warning the user must see: once per process, on stderr, terminal or not."""
    if message in _SAID:
        return
    _SAID.add(message)
    click.echo(message if message.startswith("warning:") else f"warning: {message}", err=True)


def say(message: str) -> None:
    """A line for people on stderr, every time, terminal or not, unless -q: the ``log=`` of
    commands that always report (training and evaluation progress notes). Warnings are shown even
    with -q."""
    if QUIET and not message.startswith("warning:"):
        return
    click.echo(message, err=True)
