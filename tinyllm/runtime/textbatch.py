"""Encoding a batch of texts for a classifier, shared by the torch and ONNX backends (no torch).

Each text is cut to what the context can hold (before tokenising: a 10 MB line costs what a short
one does), tokenized, truncated to the context (its start is kept), and right-padded; ``lengths``
counts the real tokens, so the classifier pools at ``lengths - 1`` (or over the first ``lengths``).
An empty text becomes one pad token (length 1): every row then has a last real position, and the
torch and ONNX paths agree on it. :func:`length_batches` groups rows of similar length, so a batch of
short messages is not padded to the longest one.
"""
from __future__ import annotations

from typing import Iterator, Sized

import numpy as np

from tinyllm.tokenizer import Tokenizer


def pad_id_of(tokenizer: Tokenizer) -> int:
    """The padding id: the tokenizer's own ([PAD]), else its end-of-text token, else 0."""
    if tokenizer.pad_id is not None:
        return tokenizer.pad_id
    return tokenizer.eot_id if tokenizer.eot_id is not None else 0


def cut_text(tokenizer: Tokenizer, text: str, max_tokens: int) -> str:
    """``text`` cut to what its first ``max_tokens`` tokens can cover, before tokenising it: a
    10 MB line costs what a few kB cost. The cut keeps twice the longest token's characters per
    token, plus one token's worth, so the tokens kept come out as they would from the whole text."""
    limit = 2 * (max_tokens + 1) * tokenizer.max_token_chars
    return text if len(text) <= limit else text[:limit]


def encode_texts(tokenizer: Tokenizer, texts: list[str], max_tokens: int | None = None
                 ) -> list[list[int]]:
    """Token ids of each text (the batched encoder when the tokenizer has one); with
    ``max_tokens``, each text is cut first (:func:`cut_text`) and its ids to ``max_tokens`` by the
    tokenizer (a WordPiece input keeps its closing [SEP])."""
    texts = list(texts)
    if max_tokens is not None:
        texts = [cut_text(tokenizer, t, max_tokens) for t in texts]
    batch = getattr(tokenizer, "encode_batch", None)
    rows = batch(texts) if batch is not None else [tokenizer.encode(t) for t in texts]
    return rows if max_tokens is None else [tokenizer.truncate(r, max_tokens) for r in rows]


def pad_ids(rows: list[list[int]], context_length: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncate each row to ``context_length``, right-pad to the longest: (ids (B,T), lengths (B,))."""
    rows = [(r[:context_length] if r else [pad]) for r in rows]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))  # (B,)
    T = int(lengths.max()) if len(rows) else 1
    ids = np.full((len(rows), T), pad, dtype=np.int64)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, lengths


def encode_batch(tokenizer: Tokenizer, texts: list[str], context_length: int,
                 pad_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Texts -> (ids int64 (B, T), lengths int64 (B,)), T = the longest row after truncation."""
    if pad_id is None:
        pad_id = pad_id_of(tokenizer)
    return pad_ids(encode_texts(tokenizer, texts, context_length), context_length, pad_id)


def length_batches(items: list[Sized], batch_size: int) -> Iterator[list[int]]:
    """Indices of ``items``, shortest first, ``batch_size`` at a time (equal lengths keep their order)."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]))
    for at in range(0, len(order), batch_size):
        yield order[at:at + batch_size]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (B, n) -> probabilities summing to 1."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mean_pool(hidden: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The mean of each row's first ``lengths`` hidden states: (B, T, C), (B,) -> (B, C)."""
    mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(hidden.dtype)
    return (hidden * mask[:, :, None]).sum(1) / np.maximum(lengths, 1)[:, None].astype(hidden.dtype)


def normalize_rows(v: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (a zero row stays zero)."""
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)
