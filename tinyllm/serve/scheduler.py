"""Continuous batching: concurrent generations decoded together, one token each per step.

One :class:`Scheduler` per served language model owns the engine's decode batch
(:mod:`tinyllm.runtime.decode_batch`) and runs in its own thread. Each round it

1. admits waiting generations into free slots (lowest first) and prefills them, one by one;
2. picks the next token of every generation that has fresh logits, exactly as
   ``tinyllm generate`` does (:class:`tinyllm.runtime.sampling.Decoding`: the same sampler, seed,
   end-of-text and sliding window), and turns it into text (stop strings, UTF-8 held back until
   whole, :class:`tinyllm.runtime.sampling.TextStreamer`);
3. steps every generation that needs it in one pass over the batch.

A generation joins or leaves between rounds, each with its own cache length. A cancelled one (the
client went away) leaves at the next round and frees its slot; a full queue refuses new work
(:class:`Overloaded`, a 503 upstream) instead of growing without bound.

Text and the end of each generation reach the asyncio side through ``loop.call_soon_threadsafe``
into the generation's own :class:`asyncio.Queue`.
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import AsyncIterator, Callable

import numpy as np

from tinyllm.runtime.sampling import Decoding, SamplingConfig, TextStreamer


class Overloaded(Exception):
    """The queue is full."""


class GenerationFailed(Exception):
    """The model failed while decoding this generation (the message says why)."""


_DONE = object()


class Generation:
    """One request's generation: its decoding state, and the text it has produced so far."""

    def __init__(self, prompt_ids: list[int], cfg: SamplingConfig, stops: list[str],
                 eos_id, context_length: int, token_bytes: Callable[[int], bytes],
                 loop: asyncio.AbstractEventLoop, vocab_size: int | None = None):
        self.prompt_ids = prompt_ids
        self.decoding = Decoding(prompt_ids, cfg, eos_id, context_length, vocab_size)
        self.streamer = TextStreamer(token_bytes, stops)
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.finish_reason: str | None = None   # "stop" or "length" (None: cancelled or failed)
        self.error: str | None = None
        self.completion_tokens = 0
        self.first_token_at: float | None = None  # perf_counter of the first text (TTFT)
        self.slot: int | None = None
        self.logits: np.ndarray | None = None   # scheduler side: logits waiting for a choice
        self.token: int | None = None           # scheduler side: a token waiting for a step

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    # ---- scheduler thread -> event loop ------------------------------------------------------
    def _send(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:       # the event loop is closed: nobody is listening any more
            self.cancelled = True

    def emit(self, text: str) -> None:
        if text:
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            self._send(text)

    def finish(self, reason: str | None, error: str | None = None) -> None:
        self.finish_reason, self.error = reason, error
        self._send(_DONE)

    # ---- event loop side ---------------------------------------------------------------------
    async def pieces(self) -> AsyncIterator[str]:
        """The text as it comes; ends when the generation ends (GenerationFailed on an error)."""
        while True:
            item = await self.queue.get()
            if item is _DONE:
                if self.error:
                    raise GenerationFailed(self.error)
                return
            yield item

    async def text(self) -> str:
        return "".join([p async for p in self.pieces()])


class Scheduler:
    """Decodes the generations submitted to it together, in a thread of its own."""

    def __init__(self, engine, max_batch: int = 8, max_queue: int = 32, name: str = "",
                 log: Callable[[str], None] | None = None):
        self.engine = engine
        self.batch = engine.decode_batch(max_batch)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.log = log or (lambda message: None)
        self.waiting: collections.deque[Generation] = collections.deque()
        self.active: dict[int, Generation] = {}
        self.cond = threading.Condition()
        self.closed = False
        self.steps = 0                        # batched steps run (for tests and /health)
        self.rows = 0                         # sequences stepped, summed over those steps
        self.thread = threading.Thread(target=self._run, name=f"tinyllm-scheduler-{name}",
                                       daemon=True)
        self.thread.start()

    def new_generation(self, prompt_ids: list[int], cfg: SamplingConfig, stops: list[str],
                       loop: asyncio.AbstractEventLoop) -> Generation:
        tok = self.engine.tokenizer
        eos = getattr(tok, "eos_ids", None) or tok.eot_id  # every end-of-text / end-of-turn id
        return Generation(prompt_ids, cfg, stops, eos, self.engine.context_length,
                          tok.token_bytes, loop, tok.vocab_size)

    def submit(self, gen: Generation) -> None:
        with self.cond:
            if self.closed:
                raise Overloaded("the server is shutting down")
            if len(self.waiting) + len(self.active) >= self.max_batch + self.max_queue:
                raise Overloaded(f"{len(self.active)} generations running and {len(self.waiting)} "
                                 "waiting; try again shortly")
            self.waiting.append(gen)
            self.cond.notify()

    def cancel(self, gen: Generation) -> None:
        """Stop ``gen`` (its client went away): out of the queue now, out of its slot next round."""
        with self.cond:
            gen.cancelled = True
            try:
                self.waiting.remove(gen)
            except ValueError:
                pass

    def stats(self) -> dict[str, int]:
        return {"active": len(self.active), "queued": len(self.waiting), "slots": self.max_batch,
                "steps": self.steps}

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(timeout=10)

    # ---- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self.cond:
                while not (self.waiting or self.active or self.closed):
                    self.cond.wait()
                if self.closed:
                    break
                admitted = []
                free = [s for s in range(self.max_batch) if s not in self.active]
                while self.waiting and len(admitted) < len(free):
                    admitted.append(self.waiting.popleft())
            try:
                self._round(list(zip(free, admitted)))
            except Exception as e:   # the model failed: every generation in flight fails with it
                message = f"{type(e).__name__}: {e}"
                self.log(f"error: decoding failed: {message}")
                for slot in list(self.active):
                    self._release(slot, None, message)
        for slot in list(self.active):
            self._release(slot, None, "the server is shutting down")
        for gen in self.waiting:
            gen.finish(None, "the server is shutting down")

    def _release(self, slot: int, reason: str | None, error: str | None = None) -> None:
        gen = self.active.pop(slot)
        self.batch.free(slot)
        gen.slot = gen.logits = gen.token = None
        gen.finish(reason, error)

    def _round(self, admitted: list[tuple[int, Generation]]) -> None:
        stepping: list[int] = []
        for slot, gen in admitted:        # each new one's first token goes out after its prefill
            if gen.cancelled:
                gen.finish(None)
                continue
            self.active[slot] = gen
            gen.slot = slot
            if gen.decoding.cfg.max_new_tokens <= 0:
                self._release(slot, "length")
                continue
            gen.logits = self.batch.prefill(slot, gen.decoding.start())
            self._advance(slot, gen, stepping)
        fresh = {slot for slot, _ in admitted}
        for slot, gen in sorted(self.active.items()):
            if slot not in fresh:
                self._advance(slot, gen, stepping)
        if stepping:
            logits = self.batch.step(stepping, [self.active[s].token for s in stepping])
            for slot, row in zip(stepping, logits):
                gen = self.active[slot]
                gen.token, gen.logits = None, row
            self.steps += 1
            self.rows += len(stepping)

    def _advance(self, slot: int, gen: Generation, stepping: list[int]) -> None:
        """Choose ``gen``'s next token from its fresh logits and send its text; then it either
        ends, waits for the batched step (its slot goes on ``stepping``), or refills its cache."""
        if gen.cancelled:
            self._release(slot, None)
            return
        if gen.logits is None:
            return
        logits, gen.logits = gen.logits, None
        tok = gen.decoding.choose(logits)
        if tok is None:                                  # end of text
            gen.emit(gen.streamer.flush())
            self._release(slot, gen.decoding.finish_reason)
            return
        gen.completion_tokens += 1
        gen.emit(gen.streamer.feed(tok))
        if gen.streamer.stopped:                         # a stop string
            self._release(slot, "stop")
            return
        if gen.decoding.finished:                        # max_tokens
            gen.emit(gen.streamer.flush())
            self._release(slot, "length")
            return
        feed = gen.decoding.next_feed()
        if feed is None:
            gen.token = tok
            stepping.append(slot)
        else:                                            # the window slides: a fresh cache
            gen.logits = self.batch.prefill(slot, feed)
