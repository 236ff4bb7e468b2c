"""Decoding several sequences at once: the slot interface the server's scheduler drives.

A *decode batch* holds up to ``max_batch`` sequences, each in its own slot of KV cache::

    prefill(slot, ids) -> logits (vocab,)          start the slot's cache from ``ids``
    step(slots, tokens) -> logits (len(slots), vocab)   append one token to each slot, together
    free(slot)                                     the slot's sequence is done

Sequences join and leave between steps, and each slot keeps its own length. The ONNX backend's
:class:`tinyllm.runtime.onnx_decoder.BatchedOnnxDecoder` runs a step as one batch over a shared
cache (weights are read once per step for every sequence, which is where batching pays on a CPU);
:class:`PerSlotBatch` is the fallback for backends without one: one single-sequence decoder per
slot, stepped one after another (same results, no speed-up).
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np


class SingleDecoder(Protocol):
    def prefill(self, ids: list[int]) -> np.ndarray: ...
    def step(self, token: int) -> np.ndarray: ...


class DecodeBatch(Protocol):
    max_batch: int
    batched: bool          # True when a step runs every slot in one pass

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray: ...
    def step(self, slots: list[int], tokens: list[int]) -> np.ndarray: ...
    def free(self, slot: int) -> None: ...


class PerSlotBatch:
    """A decode batch made of single-sequence decoders (``new_decoder()`` makes one per slot, on
    first use, and it is kept for the next sequence in that slot)."""

    batched = False

    def __init__(self, new_decoder: Callable[[], SingleDecoder], max_batch: int):
        self.new_decoder = new_decoder
        self.max_batch = max_batch
        self.decoders: dict[int, SingleDecoder] = {}

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        if slot not in self.decoders:
            self.decoders[slot] = self.new_decoder()
        return self.decoders[slot].prefill(ids)

    def step(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        return np.stack([self.decoders[s].step(t) for s, t in zip(slots, tokens)])

    def free(self, slot: int) -> None:
        pass  # the decoder and its cache stay for the slot's next sequence
