"""`tinyllm classify`: stdin lines -> labels on stdout, one line out per line in, same order.

Built for pipelines: stdin is read lazily, a batch is whatever lines have arrived (up to
--batch-size), and each batch is written and flushed at once, so `tail -f log | tinyllm classify`
streams. Torch is imported only for the torch backend (`--backend onnx` never loads it).
"""
from __future__ import annotations

import json
import os
import select
import sys
from typing import Iterator

import click

from tinyllm import modeldir
from tinyllm.cli.notes import quiet_option
from tinyllm.errors import UserError


def _ready(fd: int) -> bool:
    """True when reading ``fd`` would not block (a regular file is always ready)."""
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def read_batches(fd: int, batch_size: int, chunk: int = 1 << 16) -> Iterator[list[bytes]]:
    """Batches of raw lines (without the newline) from ``fd``: up to ``batch_size`` lines, and never
    waiting for more lines while some are already in hand."""
    partial: list[bytes] = []  # the pieces of a line not yet ended (joined once: a long line
    lines: list[bytes] = []    # costs linear time, not a copy per chunk)
    eof = False
    while True:
        while not eof and (not lines or (len(lines) < batch_size and _ready(fd))):
            data = os.read(fd, chunk)
            if not data:
                eof = True
                if partial:
                    lines.append(b"".join(partial))
                    partial = []
                break
            if b"\n" not in data:
                partial.append(data)
                continue
            first, *complete, rest = data.split(b"\n")
            lines.append(b"".join([*partial, first]))
            lines.extend(complete)
            partial = [rest] if rest else []
        if not lines:
            return
        yield lines[:batch_size]
        del lines[:batch_size]


def stdin_batches(stream, batch_size: int) -> Iterator[list[bytes]]:
    """Batches of lines from a binary stream: through its file descriptor when it has one (a pipe,
    a file, a terminal), else line by line (in-process test runners)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        yield from read_batches(fd, batch_size)
        return
    batch: list[bytes] = []
    for line in stream:
        batch.append(line[:-1] if line.endswith(b"\n") else line)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class LineDecoder:
    """Bytes -> text, replacing invalid UTF-8 and warning once on stderr."""

    def __init__(self) -> None:
        self.n = 0
        self.warned = False

    def __call__(self, raw: bytes) -> str:
        self.n += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if not self.warned:
                self.warned = True
                click.echo(f"warning: stdin line {self.n} is not valid UTF-8; invalid bytes are "
                           "replaced with U+FFFD (warned once)", err=True)
            return raw.decode("utf-8", errors="replace")


def format_line(fmt: str, text: str, label: str | None, probs: dict[str, float] | None) -> str:
    if fmt == "jsonl":
        return json.dumps({"text": text, "label": label, "probs": probs}, ensure_ascii=False)
    return f"{label or ''}\t{text}"


@click.command()
@click.option("--model", "-m", default=None, metavar="M",
              help=f"Classifier model (path or name; default: the bundled {modeldir.DEFAULT_CLASSIFIER}).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "jsonl"]), default="tsv", show_default=True,
              help='tsv: "label<TAB>text"; jsonl: {"text", "label", "probs"}.')
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Most lines classified at once (fewer when stdin has no more ready).")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default=None,
              help="torch or ONNX Runtime (default: onnx when the model has model.onnx).")
@quiet_option
def classify(model, fmt, batch_size, backend):
    """Label every line of stdin: one output line per input line, in order.

    Empty lines give an empty label (tsv: a line with just a TAB; jsonl: "label": null). Lines longer
    than the model's context are truncated to it. Invalid UTF-8 is replaced (one warning).

    \b
    Examples:
      printf 'Free entry! Text WIN to 80086\\nSee you at lunch?\\n' | tinyllm classify
      tinyllm classify --format jsonl < msgs.txt > labels.jsonl
      tail -f chat.log | tinyllm classify --batch-size 16
    """
    from tinyllm.cli.notes import note
    from tinyllm.engines import open_engine

    engine = open_engine(model, backend, default=modeldir.DEFAULT_CLASSIFIER, log=note)
    labels = engine.labels
    if not labels:
        raise UserError(f"{engine.info.path}: not a classifier (task {engine.task}); "
                        "train one with `tinyllm finetune classify`")
    decode = LineDecoder()
    out = sys.stdout.buffer
    for raw in stdin_batches(sys.stdin.buffer, batch_size):
        texts = [decode(r) for r in raw]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        probs = engine.classify([texts[i] for i in todo]) if todo else None
        results: list[tuple[str | None, dict | None]] = [(None, None)] * len(texts)
        for j, i in enumerate(todo):
            p = probs[j]
            results[i] = (labels[int(p.argmax())], {x: round(float(v), 6) for x, v in zip(labels, p)})
        text = "".join(format_line(fmt, t, lab, pr) + "\n" for t, (lab, pr) in zip(texts, results))
        out.write(text.encode("utf-8"))
        out.flush()
