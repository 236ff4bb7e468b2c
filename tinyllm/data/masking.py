"""Masked-language-model batches (BERT's pretraining objective), as a pure function of the step.

Each window of ``seq_len - 2`` corpus tokens becomes ``[CLS] window [SEP]``. Of its tokens, 15% are
chosen (never [CLS] or [SEP]); of those, 80% become ``[MASK]``, 10% a random token and 10% stay as
they are. The targets are the chosen tokens' original ids and -100 (ignored) everywhere else.
The choice is drawn from a generator seeded by (seed, step, micro-batch, rank), so a resumed run
masks exactly what the uninterrupted run would have, and evaluation windows are masked the same
way at every evaluation (seeded by their index).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tinyllm.data.batching import StepBatches
from tinyllm.data.text import SlidingWindowDataset

MASK_FRACTION = 0.15                     # tokens chosen per window
MASK_SPLIT = (0.8, 0.1, 0.1)             # chosen tokens: -> [MASK], -> a random token, unchanged


def wrap(windows: np.ndarray, cls_id: int, sep_id: int) -> np.ndarray:
    """(B, n) corpus tokens -> (B, n + 2) ``[CLS] tokens [SEP]``."""
    B = windows.shape[0]
    return np.concatenate([np.full((B, 1), cls_id, np.int64), windows.astype(np.int64),
                           np.full((B, 1), sep_id, np.int64)], axis=1)


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, mask_id: int, vocab_size: int,
                special_ids, fraction: float = MASK_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) for ids (B, T): see the module docstring. Every row gets at least one
    chosen token, so no row is without a target."""
    special = np.isin(ids, np.fromiter(special_ids, dtype=np.int64))
    chosen = (rng.random(ids.shape) < fraction) & ~special
    for r in np.flatnonzero(~chosen.any(axis=1)):  # a short or unlucky row: choose one token
        candidates = np.flatnonzero(~special[r])
        if len(candidates):
            chosen[r, rng.choice(candidates)] = True
    targets = np.where(chosen, ids, -100)
    roll = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (roll < MASK_SPLIT[0])] = mask_id
    random = chosen & (roll >= MASK_SPLIT[0]) & (roll < MASK_SPLIT[0] + MASK_SPLIT[1])
    inputs[random] = rng.integers(0, vocab_size, size=int(random.sum()))
    return inputs, targets


class MaskedBatches(StepBatches):
    """``batches(step, micro)`` -> (inputs, targets) LongTensors (B, seq_len) of masked windows."""

    def __init__(self, sampler, windows: SlidingWindowDataset, tokenizer, vocab_size: int,
                 batch_size: int, grad_accum: int = 1, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        super().__init__(sampler, self._fetch, batch_size, grad_accum, rank, world_size)
        self.windows, self.tokenizer, self.vocab_size, self.seed = windows, tokenizer, vocab_size, seed
        self._key: tuple[int, ...] = ()

    def __call__(self, step: int, micro: int = 0) -> Any:
        self._key = (self.seed, step, micro, self.rank)
        return self.fetch(self.indices(step, micro))

    def _fetch(self, indices: np.ndarray):
        return masked_batch(self.windows, indices, self.tokenizer, self.vocab_size,
                            np.random.default_rng(list(self._key)))


def masked_batch(windows: SlidingWindowDataset, indices, tokenizer, vocab_size: int,
                 rng: np.random.Generator):
    """(inputs, targets) LongTensors for the windows ``indices``, masked with ``rng``."""
    import torch

    x, _ = windows.batch(indices)  # (B, seq_len - 2)
    ids = wrap(x.numpy(), tokenizer.cls_id, tokenizer.sep_id)
    inputs, targets = mask_tokens(ids, rng, tokenizer.mask_id, vocab_size, tokenizer.special_ids)
    return torch.from_numpy(inputs), torch.from_numpy(targets)
