"""Progress on stderr for people: a Rich bar when stderr is a terminal, nothing (bars) or plain
lines (logs) otherwise.

:func:`progress_bar` is the ``progress=`` the CLI gives library code for long work (reading and
tokenising files, answering entries); :class:`TrainProgress` is a Trainer callback that shows step,
loss, tokens/s and ETA, and prints one line per evaluation and checkpoint.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def progress_bar(total: int, description: str, start: int = 0, unit: str = "bytes"
                 ) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a bar only on a terminal: transfer-style for ``unit`` "bytes",
    else a count with the time left."""
    from tinyllm.cli import notes

    if notes.QUIET or not stderr_is_terminal():
        yield lambda n: None
        return
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

    if unit == "bytes":
        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
    else:  # a count: "generating ━━━━━  12/110 entries  0:00:41 elapsed, 0:05:12 left"
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn(unit), TimeElapsedColumn(), TextColumn("elapsed,"),
                   TimeRemainingColumn(), TextColumn("left"))
    with Progress(*columns, console=_console(), transient=True) as bar:
        task = bar.add_task(description, total=total, completed=start)
        yield lambda n: bar.advance(task, n)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_eval(ev: dict) -> str:
    """One line for an eval event: the step and every numeric metric."""
    parts = [f"step {ev['step']}"]
    for k, v in ev.items():
        if k in ("event", "time", "step", "elapsed", "best") or not isinstance(v, (int, float)):
            continue
        parts.append(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}")
    if ev.get("best"):
        parts.append("(best)")
    return "  ".join(parts)


class TrainProgress:
    """Trainer callback: a live bar on a terminal; eval/checkpoint/done lines on stderr unless quiet."""

    def __init__(self, quiet: bool | None = None, show_samples: bool = True):
        from tinyllm.cli import notes

        self.quiet = notes.QUIET if quiet is None else quiet
        self.show_samples = show_samples
        self.bar = None
        self.task = None
        self.live = not quiet and stderr_is_terminal()

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, ev: dict) -> None:
        kind = ev["event"]
        if kind == "start":
            note = "resuming at" if ev.get("resumed") else "training from"
            self._print(f"{note} step {ev['step']}/{ev['max_steps']}: {ev.get('params') or 0:,} params, "
                        f"{ev.get('tokens_per_step') or 0:,} tokens/step, {ev['device']} "
                        f"{ev['precision']}, world size {ev['world_size']} -> {ev['out']}")
            if self.live:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("{task.fields[info]}"), console=_console(),
                                    transient=True)
                self.bar.start()
                self.task = self.bar.add_task("train", total=ev["max_steps"], completed=ev["step"],
                                              info="")
        elif kind == "step" and self.bar is not None:
            info = (f"loss {ev['loss']:.4f}  lr {ev['lr']:.2e}  {ev['tokens_per_s']:,.0f} tok/s  "
                    f"elapsed {_fmt_time(ev['elapsed'])}  ETA {_fmt_time(ev.get('eta'))}")
            self.bar.update(self.task, completed=ev["step"], info=info)
        elif kind == "eval":
            self._print(format_eval(ev))
            if self.show_samples and ev.get("sample"):
                self._print("  sample: " + ev["sample"].strip().replace("\n", "\n          ")[:600])
        elif kind == "checkpoint" and ev["kind"] == "best":
            pass  # the eval line already says (best)
        elif kind == "done":
            self.close()
            self._print(f"{ev['reason']} at step {ev['step']} after {_fmt_time(ev['elapsed'])}; "
                        f"model in {ev['out']}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
