"""How much quantization changes a language model: top-1 agreement and loss on held-out text.

Numpy + onnxruntime only. Used by the tests (the bundled model's int8 graph must agree with its
float graph on >= 97% of next-token predictions and lose <= 2% in validation loss), by
``python -m tinyllm.cli.build_models`` (which ships the fastest quantization that passes) and by
``benchmarks/onnx_choices.py``, which compares the quantization methods.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyllm.runtime.onnx_decoder import OnnxDecoder

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


AUTO_MAX_TOKENS = 131_072  # `--quant auto` compares at most this many validation tokens


def model_validation_ids(model_dir: str | Path, meta: dict, tokenizer) -> list[int] | None:
    """The validation split of the text a language model was trained on, encoded, when that file
    is still at hand (None otherwise: another task's data, a model from elsewhere, a moved file).
    A relative path is tried from the current directory, then from the package's parent (where
    the bundled models' data lives)."""
    train = meta.get("train") or {}
    if meta.get("task", "lm") != "lm" or not train.get("data"):
        return None
    import tinyllm

    path = Path(train["data"]).expanduser()
    where = [path] if path.is_absolute() else [Path.cwd() / path,
                                               Path(tinyllm.__file__).resolve().parents[1] / path]
    found = next((p for p in where if p.is_file()), None)
    if found is None or found.suffix.lower() not in ("", ".txt", ".text", ".md"):
        return None
    fraction = 0.1
    if train.get("val_tokens") and train.get("corpus_tokens"):
        fraction = train["val_tokens"] / train["corpus_tokens"]
    if fraction <= 0:
        return None
    with open(found, "rb") as f:  # only the start of the split: a corpus may be gigabytes
        f.seek(int(found.stat().st_size * (1 - fraction)))
        text = f.read(AUTO_MAX_TOKENS * 8).decode("utf-8", errors="ignore")
    try:
        ids = tokenizer.encode(text)
    except (KeyError, ValueError):  # e.g. characters a char vocabulary does not have
        return None
    return ids if len(ids) > 2 else None


def choose_quantization(fp32: Path, dst: Path, ids: list[int], context: int,
                        quantize: Callable[[Path, Path, str], None],
                        candidates: tuple[str, ...], log: Callable[[str], None]
                        ) -> tuple[str, dict[str, dict]]:
    """Quantize ``fp32`` into ``dst`` by each of ``candidates`` (fastest first) and keep the first
    that is :func:`acceptable` on ``ids``; if none is, the one that agrees best (with a warning).
    Returns (method, {method: {"agreement", "loss_increase"}}) for every method tried."""
    windows_max = max(1, AUTO_MAX_TOKENS // context)
    tried: dict[str, dict] = {}
    for method in candidates:
        quantize(fp32, dst, method)
        r = compare(fp32, dst, ids, context, max_windows=windows_max)
        tried[method] = {"agreement": round(r["agreement"], 4),
                         "loss_increase": round(r["loss_increase"], 5), "tokens": r["tokens"]}
        log(f"int8 by {method}: top-1 agreement {r['agreement']:.2%}, validation loss "
            f"{r['loss_increase']:+.3%} ({r['tokens']:,} tokens)")
        if acceptable(r):
            return method, tried
    best = max(tried, key=lambda m: tried[m]["agreement"])
    log(f"warning: no 8-bit method keeps {INT8_MIN_AGREEMENT:.0%} top-1 agreement and "
        f"<= {INT8_MAX_LOSS_INCREASE:.0%} loss; keeping {best}, the closest")
    if best != candidates[-1]:
        quantize(fp32, dst, best)
    return best, tried
