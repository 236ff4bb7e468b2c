"""Stateless samplers: which items make up optimizer step ``s``, as a pure function of ``s``.

A sampler is an endless stream of item indices (sample 0, 1, 2, ...). Step ``s`` of a run with
global batch ``G = batch_size * grad_accum * world_size`` uses samples ``[s*G, (s+1)*G)``; micro-batch
``m`` on rank ``r`` takes the slice ``[(m*W + r)*B, (m*W + r + 1)*B)``. Because nothing is stored, the
data position of a run is just its step (exact resume for free), and a run on W processes with batch B
sees exactly the samples of a one-process run with batch W*B.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit integer hash (SplitMix64's finaliser), vectorised; wraps around mod 2**64."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return x ^ (x >> np.uint64(31))


class RandomSampler:
    """Uniform random items in ``[0, n)``: sample k is ``hash(seed, k) mod n`` (counter-based).

    ``span``: how many of the ``n`` positions one item covers (a window of ``seq_len`` tokens
    starting at any token covers ``seq_len`` of them), so that :meth:`epoch` counts passes over
    the data, not over the start positions.
    """

    def __init__(self, n: int, seed: int = 0, span: int = 1):
        if n < 1:
            raise ValueError("RandomSampler needs n >= 1")
        self.n, self.span = int(n), max(1, int(span))
        self.key = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]

    def indices(self, start: int, count: int) -> np.ndarray:
        k = np.arange(start, start + count, dtype=np.uint64)
        with np.errstate(over="ignore"):
            h = _splitmix64(k ^ self.key)
        return (h % np.uint64(self.n)).astype(np.int64)

    def epoch(self, samples: int) -> float:
        return samples * self.span / self.n


class EpochSampler:
    """Every item once per epoch, in an order shuffled per epoch (seeded by ``(seed, epoch)``)."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        if n < 1:
            raise ValueError("EpochSampler needs n >= 1")
        self.n, self.seed, self.shuffle = int(n), int(seed), shuffle
        self._perm: tuple[int, np.ndarray] | None = None

    def _order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n, dtype=np.int64)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1]

    def indices(self, start: int, count: int) -> np.ndarray:
        out = np.empty(count, dtype=np.int64)
        k, filled = start, 0
        while filled < count:
            epoch, pos = divmod(k, self.n)
            take = min(count - filled, self.n - pos)
            out[filled:filled + take] = self._order(epoch)[pos:pos + take]
            k, filled = k + take, filled + take
        return out

    def epoch(self, samples: int) -> float:
        return samples / self.n


class StepBatches:
    """``batches(step, micro)``: this rank's micro-batch of optimizer step ``step``, via ``fetch``.

    ``fetch(indices: np.ndarray) -> batch`` turns item indices into tensors (a collate function).
    """

    def __init__(self, sampler, fetch: Callable[[np.ndarray], Any], batch_size: int,
                 grad_accum: int = 1, rank: int = 0, world_size: int = 1):
        self.sampler, self.fetch = sampler, fetch
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.rank, self.world_size = rank, world_size

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world_size

    def indices(self, step: int, micro: int) -> np.ndarray:
        B, W = self.batch_size, self.world_size
        start = step * self.global_batch + (micro * W + self.rank) * B
        return self.sampler.indices(start, B)

    def __call__(self, step: int, micro: int = 0):
        return self.fetch(self.indices(step, micro))

    def epoch(self, step: int) -> float:
        """Epochs completed after ``step`` optimizer steps."""
        return self.sampler.epoch(step * self.global_batch)
