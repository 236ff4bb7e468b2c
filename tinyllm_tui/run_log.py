"""Following a training run's ``metrics.jsonl`` (the event format of ``tinyllm train``).

:class:`MetricsFollower` reads the lines appended since the last call, like ``tail -f``; it notices
when the file is replaced (a resumed run drops lines past its checkpoint) and starts over.
:class:`RunState` folds the events into what the dashboard shows.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tinyllm.train.events import METRICS_FILE


def metrics_path(run: str | Path) -> Path:
    """``run`` may be a run directory or its metrics.jsonl."""
    run = Path(run).expanduser()
    return run if run.suffix == ".jsonl" else run / METRICS_FILE


class MetricsFollower:
    """Returns the complete JSON lines written since the previous ``read()``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pos = 0
        self._inode: int | None = None
        self._partial = b""
        self.bad_lines = 0            # lines that were not JSON objects (skipped)

    def read(self) -> tuple[list[dict], bool]:
        """(new events, reset): ``reset`` is True when the file was replaced and is read anew."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return [], False
        reset = False
        if (self._inode is not None and st.st_ino != self._inode) or st.st_size < self._pos:
            self._pos, self._partial, reset = 0, b"", True
        self._inode = st.st_ino
        if st.st_size == self._pos:
            return [], reset
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read(st.st_size - self._pos)
        self._pos += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.bad_lines += 1
                continue
            if isinstance(ev, dict):
                events.append(ev)
        return events, reset


@dataclass
class RunState:
    """What the dashboard shows, built from events in order."""
    train: list[tuple[int, float]] = field(default_factory=list)    # (step, loss) per step event
    val: list[tuple[int, float]] = field(default_factory=list)      # (step, val_loss) per eval
    train_eval: list[tuple[int, float]] = field(default_factory=list)  # (step, train_loss) per eval
    samples: list[tuple[int, str]] = field(default_factory=list)    # (step, sample text) per eval
    step: int = 0
    max_steps: int = 0
    lr: float | None = None
    tokens_per_s: float | None = None
    eta: float | None = None
    elapsed: float | None = None
    status: str = "waiting for the first event"
    out: str | None = None
    done: dict | None = None          # the "done" event once the run ends

    def apply(self, ev: dict) -> None:
        kind = ev.get("event")
        step = int(ev.get("step", self.step) or 0)
        if kind == "start":
            self.max_steps = int(ev.get("max_steps") or self.max_steps)
            self.out = ev.get("out", self.out)
            self.step, self.done = step, None
            # a resumed run restarts from its checkpoint: forget points past it
            self.train = [p for p in self.train if p[0] <= step]
            self.val = [p for p in self.val if p[0] <= step]
            self.train_eval = [p for p in self.train_eval if p[0] <= step]
            self.status = f"resumed at step {step}" if ev.get("resumed") else "running"
        elif kind == "step":
            self.step = step
            if _num(ev.get("loss")) is not None:
                self.train.append((step, float(ev["loss"])))
            self.lr = _num(ev.get("lr"), self.lr)
            self.tokens_per_s = _num(ev.get("tokens_per_s"), self.tokens_per_s)
            self.eta = _num(ev.get("eta"), self.eta)
            self.elapsed = _num(ev.get("elapsed"), self.elapsed)
            self.status = "running"
        elif kind == "eval":
            self.step = max(self.step, step)
            if _num(ev.get("val_loss")) is not None:
                self.val.append((step, float(ev["val_loss"])))
            if _num(ev.get("train_loss")) is not None:
                self.train_eval.append((step, float(ev["train_loss"])))
            if ev.get("sample"):
                self.samples.append((step, str(ev["sample"])))
        elif kind == "done":
            self.done = ev
            self.step = max(self.step, step)
            self.elapsed = _num(ev.get("elapsed"), self.elapsed)
            self.eta = 0.0
            self.status = f"{ev.get('reason', 'finished')} at step {step}"

    @property
    def train_loss(self) -> float | None:
        return self.train[-1][1] if self.train else None

    @property
    def val_loss(self) -> float | None:
        return self.val[-1][1] if self.val else None


def _num(v, default=None):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def downsample(points: list[tuple[int, float]], n: int = 1500) -> list[tuple[int, float]]:
    """At most ``n`` points, averaging neighbours (keeps the curve's shape on a terminal plot)."""
    if len(points) <= n:
        return points
    k = -(-len(points) // n)
    out = []
    for i in range(0, len(points), k):
        chunk = points[i:i + k]
        out.append((chunk[-1][0], sum(p[1] for p in chunk) / len(chunk)))
    return out
