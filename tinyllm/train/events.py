"""metrics.jsonl: one JSON object per event, appended and flushed line by line (rank 0 only).

Event formats are documented in docs/training-internals.md. Non-finite floats are written as null so every
line is strict JSON.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tinyllm.atomic import atomic_write_text, reporting_full_disk

METRICS_FILE = "metrics.jsonl"


def event(name: str, step: int, /, **fields: Any) -> dict[str, Any]:
    return {"event": name, "time": round(time.time(), 3), "step": step, **fields}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def dumps(ev: dict[str, Any]) -> str:
    return json.dumps(_clean(ev), ensure_ascii=False)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every parseable line of a metrics.jsonl (a torn last line is skipped)."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsWriter:
    """Appends events to ``metrics.jsonl``; ``truncate_after(step)`` drops lines a resume replays."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = None

    def truncate_after(self, step: int) -> None:
        kept = [e for e in read_metrics(self.path) if e.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(dumps(e) + "\n" for e in kept))

    def write(self, ev: dict[str, Any]) -> None:
        with reporting_full_disk(self.path):
            if self._f is None:
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(dumps(ev) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except OSError:  # a full disk: the error that matters was raised by write()
                pass
            self._f = None
