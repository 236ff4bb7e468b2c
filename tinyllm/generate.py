"""Text generation with the torch model: a KV-cached backend for the shared sampling loop.

The sampling rules (greedy, temperature, top-k, top-p, repetition penalty, stop strings, EOS, seed)
and the UTF-8-safe streaming live in :mod:`tinyllm.runtime.sampling`, shared with the ONNX backend;
this module only supplies ``prefill`` and ``step`` that run the torch model.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from tinyllm.model import GPT
from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
from tinyllm.tokenizer import Tokenizer

__all__ = ["SamplingConfig", "TorchDecoder", "generate", "generate_text", "generate_token_ids"]


class TorchDecoder:
    """``prefill(ids)`` and ``step(token)`` over a preallocated KV cache, returning numpy logits."""

    def __init__(self, model: GPT, batch_size: int = 1):
        self.model = model
        self.cache = model.new_cache(batch_size)
        self.device = model.tok_emb.weight.device

    @torch.inference_mode()
    def prefill(self, ids: list[int]) -> np.ndarray:
        self.cache.reset()
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.model(x, self.cache, last_only=True)[0, -1].float().cpu().numpy()

    @torch.inference_mode()
    def step(self, token: int) -> np.ndarray:
        x = torch.tensor([[token]], dtype=torch.long, device=self.device)
        return self.model(x, self.cache, last_only=True)[0, -1].float().cpu().numpy()


def generate_token_ids(model: GPT, prompt_ids: list[int], cfg: SamplingConfig,
                       eos_id: int | None = None) -> Iterator[int]:
    """New token ids for a prompt, one at a time."""
    dec = TorchDecoder(model)
    return generate_ids(dec.prefill, dec.step, prompt_ids, cfg, eos_id,
                        context_length=model.config.context_length)


def generate(model: GPT, tokenizer: Tokenizer, prompt: str, cfg: SamplingConfig | None = None
             ) -> Iterator[str]:
    """Stream the continuation of ``prompt`` as text pieces."""
    cfg = cfg or SamplingConfig()
    ids = tokenizer.encode(prompt)
    if not ids:
        ids = [tokenizer.eot_id if tokenizer.eot_id is not None else 0]
    return stream_text(generate_token_ids(model, ids, cfg, tokenizer.eot_id),
                       tokenizer.token_bytes, cfg.stop)


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str,
                  cfg: SamplingConfig | None = None) -> str:
    """The whole continuation as one string."""
    return "".join(generate(model, tokenizer, prompt, cfg))
