"""Shared pieces for the TUI tests: a scripted fake engine, a fake training run, and waiting.

Nothing here sleeps to pace a test: a gated FakeEngine yields a piece only when the test releases
it, and a FakeRun holds at a chosen step until it is stopped, so what a test sees does not depend on
how fast the machine is. ``HANG_SECONDS`` only keeps a broken test from hanging forever.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tinyllm.config import ModelConfig, to_dict, write_yaml
from tinyllm.tokenizer import CharTokenizer

HANG_SECONDS = 300.0   # hang protection for waits on a condition; never a speed limit


class FakeEngine:
    """The Engine surface (generate / chat / classify / info / task / labels) with scripted output.

    ``gated=True``: ``generate`` yields each piece only after the test calls :meth:`release`.
    """

    backend = "fake"

    def __init__(self, pieces=("Once", " upon", " a", " time", ".") * 4, gated: bool = False,
                 labels=None, task="lm", name="fake-model"):
        self.pieces, self.labels, self.task = list(pieces), labels, task
        self.gate = threading.Semaphore(0) if gated else None
        self.info = SimpleNamespace(name=name, model_config=ModelConfig(
            vocab_size=65, context_length=64, n_layer=2, n_head=2, n_embd=32))
        self.prompts: list[str] = []
        self.messages: list[list[dict]] = []   # the conversation each chat() call was given
        self.configs: list = []
        self.closed = threading.Event()   # set when the consumer closed the stream early

    def release(self, n: int = 1) -> None:
        """Let ``n`` more pieces through the gate."""
        self.gate.release(n)

    def generate(self, prompt, cfg):
        self.prompts.append(prompt)
        self.configs.append(cfg)
        try:
            for p in self.pieces:
                if self.gate is not None and not self.gate.acquire(timeout=HANG_SECONDS):
                    raise RuntimeError("the test never released the next piece")
                yield p
        except GeneratorExit:
            self.closed.set()
            raise

    def chat(self, messages, cfg):
        """The last user message is recorded as the prompt; the whole list in ``messages``."""
        self.messages.append([dict(m) for m in messages])
        return self.generate(next(m["content"] for m in reversed(messages)
                                  if m["role"] == "user"), cfg)

    def chat(self, messages, cfg):
        """The last user message is recorded as the prompt; the whole list in ``messages``."""
        self.messages.append([dict(m) for m in messages])
        return self.generate(next(m["content"] for m in reversed(messages)
                                  if m["role"] == "user"), cfg)

    def classify(self, texts):
        self.prompts += list(texts)
        return np.array([[0.25, 0.75]] * len(texts))


class FakeRun:
    """Stands in for TrainProcess: a thread that writes metrics.jsonl like `tinyllm train` does.

    ``hold_at``: after writing that step, wait until the run is stopped (as a long run would still
    be going when the user presses Stop); without it the run writes every step at once.
    ``go``: write nothing until this event is set (as a real run takes a while to start).
    """

    def __init__(self, spec, steps: int = 40, hold_at: int | None = None,
                 go: threading.Event | None = None):
        self.spec, self.out, self.steps, self.hold_at = spec, Path(spec.out), steps, hold_at
        self.go = go
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.code: int | None = None

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.go is not None and not self.go.wait(HANG_SECONDS):
            raise RuntimeError("the test never let the run start")
        path = self.out / "metrics.jsonl"
        start = 0
        if self.spec.resume and path.exists():
            start = max(json.loads(x).get("step", 0) for x in path.read_text().splitlines() if x)
        with open(path, "a") as f:
            def emit(**ev):
                f.write(json.dumps({"time": time.time(), **ev}) + "\n")
                f.flush()
            emit(event="start", step=start, max_steps=self.steps, resumed=self.spec.resume,
                 out=str(self.out), params=1234, device="cpu", precision="fp32")
            step = start
            for step in range(start + 1, self.steps + 1):
                if self._stop.is_set():
                    (self.out / "train_state").mkdir(exist_ok=True)
                    emit(event="done", step=step - 1, reason="interrupted", out=str(self.out))
                    self.code = 130
                    return
                emit(event="step", step=step, loss=4.0 / step ** 0.3, lr=1e-3, tokens_per_s=5000.0,
                     elapsed=step * 0.01, eta=(self.steps - step) * 0.01)
                if step % 10 == 0:
                    emit(event="eval", step=step, train_loss=4.0 / step ** 0.3,
                         val_loss=4.1 / step ** 0.3, sample=f"sample text at {step}")
                if step == self.hold_at:
                    self._stop.wait(HANG_SECONDS)
            (self.out / "train_state").mkdir(exist_ok=True)
            emit(event="done", step=step, reason="finished", out=str(self.out))
        self.code = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll(self):
        return None if self.running else self.code

    def stop(self) -> None:
        self._stop.set()

    def kill(self, wait: float = 5.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(wait)

    def tail(self, lines: int = 12) -> str:
        return ""


async def wait_for(pilot, condition, step: float = 0.02) -> None:
    """Let the app run (its timers, workers and messages) until ``condition()`` is true.

    For conditions that a worker thread or a timer makes true, which the app cannot signal to a
    test; the ``HANG_SECONDS`` limit only stops a broken test from hanging, it is no speed limit.
    """
    deadline = time.monotonic() + HANG_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {HANG_SECONDS:.0f} s for {condition}")
        await pilot.pause(step)


def text_of(widget) -> str:
    """The plain text a Static shows (strings, rich Text, tables and groups alike)."""
    import io

    from rich.console import Console

    content = widget.content
    if isinstance(content, str):
        return content
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(content)
    return console.export_text()


def make_model(root: Path, name: str, task: str = "lm", n_layer: int = 2, labels=None,
               weights: int = 4096, **extra) -> Path:
    """A model directory as config.yaml sees it (the list never loads weights)."""
    d = root / name
    d.mkdir(parents=True)
    cfg = ModelConfig(vocab_size=65, context_length=64, n_layer=n_layer, n_head=2, n_embd=32,
                      n_classes=len(labels or []))
    meta = {"format": "tinyllm/1", "task": task, "model": to_dict(cfg),
            "tokenizer": {"type": "char", "file": "tokenizer.json"},
            "saved_at": "2024-01-01T00:00:00+0000", **extra}
    if labels:
        meta["labels"] = labels
    write_yaml(d / "config.yaml", meta)
    CharTokenizer([chr(32 + i) for i in range(65)]).save(d)
    (d / "model.safetensors").write_bytes(safetensors_bytes(weights))
    return d


def safetensors_bytes(size: int) -> bytes:
    """A well-formed safetensors file of about ``size`` bytes (one float32 tensor of zeros): what
    `tinyllm models` checks (its header) without the weights of a real model."""
    import json
    import struct

    n = max(1, (size - 128) // 4)
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}})
    header += " " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header.encode() + b"\0" * (4 * n)
