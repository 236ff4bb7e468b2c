"""Sampling and streaming, on numpy only: shared by the torch and the ONNX Runtime generators.

A backend supplies two functions, ``prefill(ids) -> logits`` and ``step(token_id) -> logits``
(the next-token logits as a 1-D numpy array); :func:`generate_ids` runs the decoding loop with the
chosen sampling rules, and :func:`stream_text` turns the ids into text pieces that never split a
multi-byte UTF-8 character and stop cleanly at a stop string.
"""
from __future__ import annotations

import codecs
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from tinyllm.errors import RunFailed


@dataclass
class SamplingConfig:
    max_new_tokens: int = 200        # how many tokens to generate at most
    temperature: float = 0.8         # 0 means greedy (argmax)
    top_k: int | None = 200          # keep the k most likely tokens (None or 0: all)
    top_p: float | None = None       # nucleus: keep the smallest set with this much probability
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the context (CTRL-style)
    stop: list[str] = field(default_factory=list)  # stop strings (not included in the output)
    stop_at_eos: bool = True         # stop at the tokenizer's end-of-text token
    seed: int | None = None          # fixes the random choices

    def __post_init__(self) -> None:
        for name in ("temperature", "repetition_penalty", "top_p"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v)):
                raise ValueError(f"{name.replace('_', '-')} must be a finite number, not {v!r}")
        for name in ("max_new_tokens", "top_k", "seed"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"{name.replace('_', '-')} must be a whole number, not {v!r}")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if self.max_new_tokens < 0:
            raise ValueError("max_new_tokens must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError("repetition_penalty must be > 0")
        if self.seed is not None and not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"seed must be in [0, 2**63), not {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


class Sampler:
    """Picks the next token from a logits vector under a :class:`SamplingConfig`."""

    def __init__(self, cfg: SamplingConfig, vocab_size: int | None = None):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.vocab_size = vocab_size  # ids the tokenizer can decode: logits beyond are never drawn

    def __call__(self, logits: np.ndarray, context: Iterable[int] = ()) -> int:
        cfg = self.cfg
        logits = np.asarray(logits, dtype=np.float32).reshape(-1)
        if self.vocab_size is not None and self.vocab_size < logits.size:
            logits = logits[:self.vocab_size]  # a model padded past its tokenizer's vocabulary
        if cfg.repetition_penalty != 1.0:
            seen = np.fromiter(set(context), dtype=np.int64)
            if seen.size:
                logits = logits.copy()
                vals = logits[seen]
                logits[seen] = np.where(vals > 0, vals / cfg.repetition_penalty,
                                        vals * cfg.repetition_penalty)
        if cfg.greedy:
            return int(np.argmax(logits))
        logits = logits / cfg.temperature
        if cfg.top_k and cfg.top_k < logits.size:
            idx = np.argpartition(logits, -cfg.top_k)[-cfg.top_k:]
        else:
            idx = np.arange(logits.size)
        sub = logits[idx].astype(np.float64)
        probs = np.exp(sub - sub.max())
        probs /= probs.sum()
        if cfg.top_p is not None and cfg.top_p < 1.0:
            order = np.argsort(-probs)
            cum = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cum, cfg.top_p) + 1)]
            idx, probs = idx[keep], probs[keep] / probs[keep].sum()
        return int(idx[self.rng.choice(len(idx), p=probs)])


class Decoding:
    """One sequence's decoding: what to feed the model next, and the choice of each new token.

    Shared by :func:`generate_ids` (one sequence) and the server's scheduler (many sequences in
    one batch), so both decode exactly alike::

        logits = prefill(d.start())
        while (tok := d.choose(logits)) is not None:   # None: end of text, or no tokens wanted
            ...use tok...
            if d.finished:                              # max_new_tokens reached
                break
            feed = d.next_feed()
            logits = step(tok) if feed is None else prefill(feed)

    When the context fills up, the window slides: ``next_feed`` returns the last half of the
    context to prefill a fresh cache with.
    """

    def __init__(self, prompt_ids: list[int], cfg: SamplingConfig,
                 eos_id: int | Iterable[int] | None = None, context_length: int | None = None,
                 vocab_size: int | None = None):
        if not prompt_ids:
            raise ValueError("the prompt is empty (no tokens)")
        self.cfg = cfg
        # one end-of-text id or several (end of text, end of turn): any of them ends decoding
        self.eos = frozenset() if eos_id is None else \
            frozenset([eos_id] if isinstance(eos_id, int) else eos_id)
        self.window = context_length or 1 << 62
        self.keep = max(1, self.window // 2)
        self.sampler = Sampler(cfg, vocab_size)  # only ids below vocab_size (the tokenizer's)
        self.context = list(prompt_ids)   # the prompt and every token chosen so far
        self.count = 0                    # tokens chosen
        self.used = 0                     # positions in the cache
        self.finish_reason: str | None = None  # "stop" (end of text) or "length" once done

    def start(self) -> list[int]:
        """The ids to prefill a fresh cache with (the prompt's tail if it overflows the window)."""
        ids = self.context[-self.keep:] if len(self.context) > self.window else self.context
        self.used = len(ids)
        return list(ids)

    def choose(self, logits: np.ndarray) -> int | None:
        """The next token from ``logits``, or None when decoding ends here."""
        if self.count >= self.cfg.max_new_tokens:
            self.finish_reason = "length"
            return None
        if np.isnan(logits).any():
            raise RunFailed(f"the model produced NaN logits at step {self.count + 1} (its weights "
                            f"hold NaN or inf values; retrain it or load another checkpoint)")
        tok = self.sampler(logits, self.context)
        if self.cfg.stop_at_eos and tok in self.eos:
            self.finish_reason = "stop"
            return None
        self.count += 1
        self.context.append(tok)
        if self.count >= self.cfg.max_new_tokens:
            self.finish_reason = "length"
        return tok

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def next_feed(self) -> list[int] | None:
        """After a token was chosen: None to append it with ``step``, or the ids to prefill a
        fresh cache with (the window is full)."""
        if self.used >= self.window:
            self.used = self.keep
            return self.context[-self.keep:]
        self.used += 1
        return None


def prompt_window(n_prompt: int, context_length: int | None) -> int:
    """How many of a prompt's ``n_prompt`` tokens :func:`generate_ids` reads: all when they fit
    the context, else the last half context (room for the reply before the window slides)."""
    if not context_length or n_prompt <= context_length:
        return n_prompt
    return max(1, context_length // 2)


def generate_ids(prefill: Callable[[list[int]], np.ndarray], step: Callable[[int], np.ndarray],
                 prompt_ids: list[int], cfg: SamplingConfig,
                 eos_id: int | Iterable[int] | None = None, context_length: int | None = None,
                 vocab_size: int | None = None, slide: bool = True) -> Iterator[int]:
    """Yield new token ids one by one.

    ``prefill(ids)`` starts a fresh cache from ``ids``; ``step(tok)`` appends one token.
    ``eos_id`` is one id or several (end of text, end of turn): any of them ends generation.
    When the context fills up, the window slides: the cache is rebuilt from the last half of the
    context; with ``slide=False`` (chat, whose turns are trimmed beforehand) generation stops.
    Only ids below ``vocab_size`` (the tokenizer's) are drawn. Logits with a NaN (a model whose
    weights hold NaN or inf) are :class:`tinyllm.errors.RunFailed`, not a sample of garbage.
    """
    d = Decoding(prompt_ids, cfg, eos_id, context_length, vocab_size)
    if cfg.max_new_tokens <= 0:
        return
    logits = prefill(d.start())
    while (tok := d.choose(logits)) is not None:
        yield tok
        if d.finished:
            return
        feed = d.next_feed()
        if feed is not None and not slide:
            return
        logits = step(tok) if feed is None else prefill(feed)


class TextStreamer:
    """Turns token bytes into text pieces: holds back incomplete UTF-8 and possible stop strings."""

    def __init__(self, token_bytes: Callable[[int], bytes], stop: Iterable[str] = ()):
        self.token_bytes = token_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stop = [s for s in stop if s]
        self.pending = ""     # decoded text not yet emitted (may be the start of a stop string)
        self.stopped = False

    def feed(self, token_id: int) -> str:
        """Text that is safe to emit after this token ('' while held back)."""
        if self.stopped:
            return ""
        self.pending += self.decoder.decode(self.token_bytes(token_id))
        for s in self.stop:
            at = self.pending.find(s)
            if at >= 0:
                out, self.pending, self.stopped = self.pending[:at], "", True
                return out
        hold = 0
        for s in self.stop:  # keep the longest tail that could still grow into a stop string
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        if self.stopped:
            return ""
        out = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        return out


def stream_text(ids: Iterable[int], token_bytes: Callable[[int], bytes],
                stop: Iterable[str] = ()) -> Iterator[str]:
    """Text pieces for a stream of token ids; ends early at a stop string."""
    streamer = TextStreamer(token_bytes, stop)
    for tok in ids:
        piece = streamer.feed(tok)
        if piece:
            yield piece
        if streamer.stopped:
            return
    tail = streamer.flush()
    if tail:
        yield tail
