"""The models a server was started with: loaded in the background, each with what it can do.

A :class:`ServedModel` has an id (the name clients send as ``model``), a function that opens its
engine, and once loaded: a :class:`~tinyllm.serve.scheduler.Scheduler` for language models,
a :class:`~tinyllm.serve.batcher.TextBatcher` over ``engine.classify`` for classifiers, and one
over ``engine.embed`` for encoders. Requests can only name these models: nothing in a request
can open a file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tinyllm.serve.batcher import TextBatcher
from tinyllm.serve.scheduler import Scheduler


@dataclass
class Limits:
    """What one request may ask for, and how much work may wait."""
    max_batch: int = 8                 # sequences decoded together (slots per language model)
    max_queue: int = 32                # requests waiting for a slot before 503s
    max_tokens: int = 4096             # max_tokens a request may ask for
    max_body: int = 2 * 1024 * 1024    # request body bytes
    max_items: int = 256               # texts in one embeddings / classifications request


@dataclass
class ServedModel:
    id: str                                        # the name clients use
    open: Callable[[], Any]                        # opens the engine (runs in the loader thread)
    aliases: set[str] = field(default_factory=set)  # other names that reach it (the path given)
    created: int = field(default_factory=lambda: int(time.time()))
    state: str = "loading"                         # "loading", "ready" or "failed"
    error: str | None = None
    engine: Any = None
    scheduler: Scheduler | None = None
    classifier: TextBatcher | None = None
    embedder: TextBatcher | None = None
    seconds: float = 0.0                           # how long loading took

    def load(self, limits: Limits, log: Callable[[str], None]) -> None:
        t0 = time.perf_counter()
        try:
            engine = self.open()
            if getattr(engine, "labels", None):
                self.classifier = TextBatcher(engine.classify, limits.max_items,
                                              limits.max_queue, self.id)
            elif callable(getattr(engine, "embed", None)) and engine.task == "embed":
                self.embedder = TextBatcher(engine.embed, limits.max_items, limits.max_queue,
                                            self.id)
            else:
                self.scheduler = Scheduler(engine, limits.max_batch, limits.max_queue, self.id, log)
            self.engine = engine
        except Exception as e:
            self.state, self.error = "failed", str(e) or type(e).__name__
            return
        self.seconds = time.perf_counter() - t0
        self.state = "ready"

    @property
    def task(self) -> str:
        return getattr(self.engine, "task", "") if self.engine is not None else ""

    def describe(self) -> dict[str, Any]:
        """This model in ``GET /v1/models`` (OpenAI's fields)."""
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "tinyllm"}

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.error:
            out["error"] = self.error
        if self.engine is not None:
            out.update(task=self.task, backend=getattr(self.engine, "backend", ""))
            batcher = self.scheduler or self.classifier or self.embedder
            out.update(batcher.stats())
            if self.scheduler is not None:
                out["batched"] = bool(getattr(self.scheduler.batch, "batched", False))
        return out

    def close(self) -> None:
        for part in (self.scheduler, self.classifier, self.embedder):
            if part is not None:
                part.close()
