"""`tinyllm embed`: stdin lines -> one vector per line on stdout (encoder models).

Built like `tinyllm classify`: stdin is read lazily, a batch is whatever lines have arrived (up to
--batch-size), and each batch of JSON lines is written and flushed at once, so `| head` and
`tail -f` work. Torch is imported only for the torch backend (`--backend onnx` never loads it).
"""
from __future__ import annotations

import json
import sys

import click
import numpy as np

from tinyllm.cli.classify_cmd import LineDecoder, stdin_batches
from tinyllm.errors import UserError


def _json_line(text: str, vector: np.ndarray | None) -> str:
    values = None if vector is None else [round(float(x), 7) for x in vector]
    return json.dumps({"text": text, "embedding": values}, ensure_ascii=False)


@click.command()
@click.option("--model", "-m", default=None, metavar="M",
              help="An encoder model (path or name), e.g. one made by `tinyllm import`.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "npy"]), default="jsonl",
              show_default=True,
              help='jsonl: {"text", "embedding"} per line, flushed per batch; npy: one float32 '
                   "array (lines, width), written when stdin ends.")
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default=None,
              help="mean of the tokens' hidden states, or the [CLS] state (default: the model's "
                   "own setting, else mean).")
@click.option("--normalize/--no-normalize", default=None,
              help="Scale every vector to length 1 (default: the model's own setting, on for "
                   "sentence-transformers models; else off).")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Most lines embedded at once (fewer when stdin has no more ready).")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default=None,
              help="torch or ONNX Runtime (default: onnx when the model has model.onnx).")
def embed(model, fmt, pooling, normalize, batch_size, backend):
    """Embed every line of stdin: one vector per input line, in order.

    Empty lines get no vector (jsonl: "embedding": null; npy: a row of NaN). Lines longer than
    the model's maximum length are truncated to it. Invalid UTF-8 is replaced (one warning).

    \b
    Examples:
      tinyllm import ~/all-MiniLM-L6-v2 -o models/minilm
      printf 'A man is eating food.\\nA man is playing guitar.\\n' | tinyllm embed -m models/minilm
      tinyllm embed -m models/minilm --format npy < sentences.txt > vectors.npy
    """
    from tinyllm.cli.notes import note
    from tinyllm.engines import open_engine

    if model is None:
        raise UserError("give --model: an encoder model, e.g. `tinyllm import "
                        "PATH/TO/all-MiniLM-L6-v2 -o models/minilm` then --model models/minilm")
    engine = open_engine(model, backend, log=note)
    engine.embed([], pooling, normalize)  # a model that cannot embed fails before stdin is read
    decode = LineDecoder()
    out = sys.stdout.buffer
    blocks: list[np.ndarray] = []
    for raw in stdin_batches(sys.stdin.buffer, batch_size):
        texts = [decode(r) for r in raw]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        vectors = engine.embed([texts[i] for i in todo], pooling, normalize) if todo else None
        rows: list[np.ndarray | None] = [None] * len(texts)
        for j, i in enumerate(todo):
            rows[i] = vectors[j]
        if fmt == "npy":
            width = engine.info.model_config.n_embd
            blocks.append(np.stack([r if r is not None else np.full(width, np.nan, np.float32)
                                    for r in rows]).astype(np.float32))
            continue
        out.write("".join(_json_line(t, r) + "\n" for t, r in zip(texts, rows)).encode("utf-8"))
        out.flush()
    if fmt == "npy":
        width = engine.info.model_config.n_embd
        np.save(out, np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32))
        out.flush()
