"""How much quantization changes a model: a language model's top-1 agreement and loss on
held-out text; an encoder's embeddings (cosine to the float graph's) or labels on sample texts.

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


COMPARE_LOGITS_BYTES = 256 << 20   # a compared batch's logits stay under this (per graph)


def compare(reference: str | Path, candidate: str | Path, ids: list[int], context: int,
            max_windows: int | None = 256, batch: int = 32) -> dict[str, float]:
    """Run both LM graphs on the same windows of ``ids``, ``batch`` windows at a time (fewer when
    their logits would pass :data:`COMPARE_LOGITS_BYTES`: a 49k vocabulary and long windows).

    Returns ``agreement`` (share of positions where the argmax next token is the same),
    ``loss_reference`` / ``loss_candidate`` (mean next-token cross-entropy) and ``loss_increase``
    (relative, e.g. 0.01 = 1% higher), plus the number of ``tokens`` compared.
    """
    x, y = windows(ids, context, max_windows)
    ref, cand = OnnxDecoder(reference), OnnxDecoder(candidate)
    vocab = ref.vocab if isinstance(ref.vocab, int) else 65536
    batch = max(1, min(batch, COMPARE_LOGITS_BYTES // (x.shape[1] * vocab * 4)))
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
HELD_OUT_TEXT = "the-verdict.txt"   # bundled text an imported model is checked on (~5k tokens)
HELD_OUT_CONTEXT = 512              # window length there (a pretrained model's context may be 8k)


def held_out_ids(tokenizer) -> list[int] | None:
    """The bundled short story (The Verdict), encoded: held-out text to check a quantization of
    imported pretrained weights on. None when the tokenizer cannot encode it or it is too short."""
    from tinyllm.tokenizer import BUNDLED

    text = (BUNDLED / "data" / HELD_OUT_TEXT).read_text(encoding="utf-8")
    try:
        ids = tokenizer.encode(text)
    except (KeyError, ValueError):
        return None
    return ids if len(ids) > HELD_OUT_CONTEXT else None


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

    def measure(method: str) -> dict:
        r = compare(fp32, dst, ids, context, max_windows=windows_max)
        log(f"{method}: top-1 agreement {r['agreement']:.2%}, loss "
            f"{r['loss_increase']:+.3%} ({r['tokens']:,} tokens)")
        return {"agreement": round(r["agreement"], 4),
                "loss_increase": round(r["loss_increase"], 5), "tokens": r["tokens"]}

    return first_acceptable(fp32, dst, quantize, candidates, measure, acceptable, "agreement",
                            f"{INT8_MIN_AGREEMENT:.0%} top-1 agreement and <= "
                            f"{INT8_MAX_LOSS_INCREASE:.0%} loss", log)


def first_acceptable(fp32: Path, dst: Path, quantize: Callable[[Path, Path, str], None],
                     candidates: tuple[str, ...], measure: Callable[[str], dict],
                     ok: Callable[[dict], bool], score: str, bar: str,
                     log: Callable[[str], None]) -> tuple[str, dict[str, dict]]:
    """Quantize ``fp32`` into ``dst`` by each candidate in turn and stop at the first whose
    ``measure(method)`` result is ``ok``; if none is, keep the one with the highest ``score``
    (with a warning naming the ``bar``). Returns (method, {method: result})."""
    tried: dict[str, dict] = {}
    for method in candidates:
        quantize(fp32, dst, method)
        tried[method] = measure(method)
        if ok(tried[method]):
            return method, tried
    best = max(tried, key=lambda m: tried[m][score])
    log(f"warning: no quantization keeps {bar}; keeping {best}, the closest")
    if best != candidates[-1]:
        quantize(fp32, dst, best)
    return best, tried


# ---- encoders -----------------------------------------------------------------------------------
ENCODER_MIN_COSINE = 0.99      # every sample text's int8 embedding this close to the float one
ENCODER_MIN_AGREEMENT = 0.99   # an int8 classifier gives the float graph's label this often
ENCODER_SAMPLES = 256          # texts compared


def _encoder_outputs(path: Path, rows: list[list[int]], pad: int, batch: int = 32) -> list[np.ndarray]:
    """Per text: its mean-pooled hidden state (an embedder graph) or its logits (a classifier)."""
    from tinyllm.runtime.session import open_session
    from tinyllm.runtime.textbatch import length_batches, mean_pool, pad_ids

    sess = open_session(path)
    name = sess.get_outputs()[0].name
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    for part in length_batches(rows, batch):
        ids, lengths = pad_ids([rows[i] for i in part], max(len(rows[i]) for i in part), pad)
        y = sess.run([name], {"input_ids": ids, "lengths": lengths})[0]
        if name == "hidden":
            y = mean_pool(y, lengths)
        for j, i in enumerate(part):
            out[i] = y[j]
    return out


def compare_encoder(reference: str | Path, candidate: str | Path, rows: list[list[int]],
                    pad: int) -> dict[str, float]:
    """Run both encoder graphs on token ``rows``: ``min_cosine`` / ``mean_cosine`` of the pooled
    embeddings (or of the logits), and ``agreement``, the share of rows whose argmax is the same
    (the label, for a classifier)."""
    a = np.stack(_encoder_outputs(Path(reference), rows, pad))
    b = np.stack(_encoder_outputs(Path(candidate), rows, pad))
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"texts": len(rows), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "agreement": float((a.argmax(1) == b.argmax(1)).mean())}


def choose_encoder_quantization(fp32: Path, dst: Path, rows: list[list[int]], pad: int, kind: str,
                                quantize: Callable[[Path, Path, str], None],
                                candidates: tuple[str, ...], log: Callable[[str], None]
                                ) -> tuple[str, dict[str, dict]]:
    """The fastest candidate that keeps every sample embedding within cosine
    :data:`ENCODER_MIN_COSINE` of the float graph's (``kind`` "embed"), or a classifier's label on
    :data:`ENCODER_MIN_AGREEMENT` of the samples ("classify")."""
    def measure(method: str) -> dict:
        r = compare_encoder(fp32, dst, rows, pad)
        label = f"; same label {r['agreement']:.2%}" if kind == "classify" else ""
        log(f"{method}: cosine to float min {r['min_cosine']:.4f}, mean "
            f"{r['mean_cosine']:.4f}{label} ({r['texts']} texts)")
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()}

    if kind == "classify":
        ok, score, bar = (lambda r: r["agreement"] >= ENCODER_MIN_AGREEMENT, "agreement",
                          f"{ENCODER_MIN_AGREEMENT:.0%} label agreement")
    else:
        ok, score, bar = (lambda r: r["min_cosine"] >= ENCODER_MIN_COSINE, "min_cosine",
                          f"cosine >= {ENCODER_MIN_COSINE} on every text")
    return first_acceptable(fp32, dst, quantize, candidates, measure, ok, score, bar, log)
