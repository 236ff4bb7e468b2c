"""How much quantization changes a language model: top-1 agreement and loss on held-out text.

Numpy + onnxruntime only. Used by the tests (the bundled model's int8 graph must agree with its
float graph on >= 97% of next-token predictions and lose <= 2% in validation loss), by
``python -m tinyllm.bundled.build`` (which ships the fastest quantization that passes) and by
``benchmarks/onnx_choices.py``, which compares the quantization methods.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyllm.runtime.lm import OnnxDecoder

INT8_MIN_AGREEMENT = 0.97      # top-1 next token the same as the float graph's, at least this often
INT8_MAX_LOSS_INCREASE = 0.02  # validation loss at most this much higher (relative)


def acceptable(result: dict[str, float]) -> bool:
    """Whether a quantized graph's :func:`compare` result meets both bars."""
    return (result["agreement"] >= INT8_MIN_AGREEMENT
            and result["loss_increase"] <= INT8_MAX_LOSS_INCREASE)


def windows(ids: list[int], context: int, max_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping (input, target) windows of ``context`` tokens: (N, T) int64 each."""
    n = (len(ids) - 1) // context
    if max_windows:
        n = min(n, max_windows)
    if n < 1:
        raise ValueError(f"need more than {context} tokens of text, got {len(ids)}")
    a = np.asarray(ids[:n * context + 1], dtype=np.int64)
    return a[:-1].reshape(n, context), a[1:].reshape(n, context)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def compare(reference: str | Path, candidate: str | Path, ids: list[int], context: int,
            max_windows: int | None = 256, batch: int = 32) -> dict[str, float]:
    """Run both LM graphs on the same windows of ``ids``.

    Returns ``agreement`` (share of positions where the argmax next token is the same),
    ``loss_reference`` / ``loss_candidate`` (mean next-token cross-entropy) and ``loss_increase``
    (relative, e.g. 0.01 = 1% higher), plus the number of ``tokens`` compared.
    """
    x, y = windows(ids, context, max_windows)
    ref, cand = OnnxDecoder(reference), OnnxDecoder(candidate)
    same = 0
    nll_ref = nll_cand = 0.0
    for i in range(0, len(x), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        a, b = ref.run(xb), cand.run(xb)                               # (B, T, V)
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
        nll_ref -= float(np.take_along_axis(log_softmax(a), yb[..., None], -1).sum())
        nll_cand -= float(np.take_along_axis(log_softmax(b), yb[..., None], -1).sum())
    n = x.size
    return {"tokens": n, "agreement": same / n, "loss_reference": nll_ref / n,
            "loss_candidate": nll_cand / n, "loss_increase": nll_cand / nll_ref - 1.0}


def validation_ids(tokenizer, text: str, fraction: float = 0.1) -> list[int]:
    """The last ``fraction`` of ``text`` (tinyllm's train/val split is by position), encoded."""
    return tokenizer.encode(text[int(len(text) * (1 - fraction)):])
