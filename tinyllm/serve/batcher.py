"""Batching texts for classifiers and encoders: requests that arrive together run together.

A :class:`TextBatcher` owns one function ``fn(texts) -> array (N, ...)`` (``engine.classify`` or
``engine.embed``) and a thread. While one batch runs, new requests queue; the next batch takes all
of them (up to ``max_items`` texts), so under load many small requests become a few large calls,
and each request gets back its own rows. A full queue refuses work (:class:`Overloaded`).
"""
from __future__ import annotations

import asyncio
import collections
import threading
from typing import Callable

import numpy as np

from tinyllm.serve.scheduler import Overloaded


class TextBatcher:
    def __init__(self, fn: Callable[[list[str]], np.ndarray], max_items: int = 64,
                 max_queue: int = 64, name: str = ""):
        self.fn = fn
        self.max_items = max_items
        self.max_queue = max_queue
        self.jobs: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.closed = False
        self.calls = 0                       # batches run (for tests)
        self.thread = threading.Thread(target=self._run, name=f"tinyllm-batcher-{name}",
                                       daemon=True)
        self.thread.start()

    async def run(self, texts: list[str]) -> np.ndarray:
        """The rows of ``fn`` for ``texts``, computed together with other requests' texts."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.cond:
            if self.closed or len(self.jobs) >= self.max_queue:
                raise Overloaded(f"{len(self.jobs)} requests waiting; try again shortly")
            self.jobs.append((texts, future, loop))
            self.cond.notify()
        return await future

    def stats(self) -> dict[str, int]:
        return {"queued": len(self.jobs), "calls": self.calls}

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.jobs and not self.closed:
                    self.cond.wait()
                if self.closed:
                    jobs, self.jobs = list(self.jobs), collections.deque()
                    for _, future, loop in jobs:
                        _resolve(loop, future, error=Overloaded("the server is shutting down"))
                    return
                batch, n = [], 0
                while self.jobs and (not batch or n + len(self.jobs[0][0]) <= self.max_items):
                    job = self.jobs.popleft()
                    if job[1].cancelled():          # the client went away while it waited
                        continue
                    batch.append(job)
                    n += len(job[0])
            if not batch:
                continue
            try:
                out = self.fn([t for texts, _, _ in batch for t in texts])
                self.calls += 1
            except Exception as e:   # the request's own error (e.g. a UserError) goes back to it
                for _, future, loop in batch:
                    _resolve(loop, future, error=e)
                continue
            at = 0
            for texts, future, loop in batch:
                _resolve(loop, future, result=out[at:at + len(texts)])
                at += len(texts)


def _resolve(loop, future, result=None, error: BaseException | None = None) -> None:
    def done():
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)
    try:
        loop.call_soon_threadsafe(done)
    except RuntimeError:  # the event loop is closed
        pass
