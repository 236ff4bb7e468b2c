"""Models on torch: the KV-cached decoder, text generation, and the torch :class:`Engine`.

:class:`TorchDecoder` supplies ``prefill(ids)`` / ``step(token)`` over a preallocated KV cache for
the shared sampling loop (:mod:`tinyllm.runtime.sampling`: greedy, temperature, top-k, top-p,
repetition penalty, stop strings, EOS, seed, UTF-8-safe streaming), the same loop the ONNX backend
uses. :class:`TorchEngine` is the torch backend of :class:`tinyllm.runtime.engine.Engine`;
:func:`tinyllm.engines.open_engine` chooses between it and the ONNX engine.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from tinyllm import modeldir
from tinyllm.checkpoint import load_model
from tinyllm.models.decoder import GPT
from tinyllm.runtime.engine import Engine, Log
from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
from tinyllm.tokenizer import Tokenizer

__all__ = ["SamplingConfig", "TorchDecoder", "TorchEngine", "generate", "generate_text",
           "generate_token_ids"]


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
                       eos_id: int | Iterable[int] | None = None, vocab_size: int | None = None
                       ) -> Iterator[int]:
    """New token ids for a prompt, one at a time (only ids below ``vocab_size`` are drawn)."""
    dec = TorchDecoder(model)
    return generate_ids(dec.prefill, dec.step, prompt_ids, cfg, eos_id,
                        context_length=model.config.context_length, vocab_size=vocab_size)


def generate(model: GPT, tokenizer: Tokenizer, prompt: str, cfg: SamplingConfig | None = None
             ) -> Iterator[str]:
    """Stream the continuation of ``prompt`` as text pieces."""
    cfg = cfg or SamplingConfig()
    ids = tokenizer.prompt_ids(prompt) if prompt else []
    if not ids:
        ids = [tokenizer.eot_id if tokenizer.eot_id is not None else 0]
    return stream_text(generate_token_ids(model, ids, cfg, tokenizer.eos_ids, tokenizer.vocab_size),
                       tokenizer.token_bytes, cfg.stop)


def generate_text(model: GPT, tokenizer: Tokenizer, prompt: str,
                  cfg: SamplingConfig | None = None) -> str:
    """The whole continuation as one string."""
    return "".join(generate(model, tokenizer, prompt, cfg))


SINGLE_THREAD_FLOPS = 50_000_000  # forward FLOPs per token below which decoding uses one thread


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, info: modeldir.ModelInfo, device: str = "cpu", log: Log | None = None):
        super().__init__(info, log)
        model = load_model(info.path, device=device)
        self.model = model.use_decode_layout() if isinstance(model, GPT) else model
        self._decoder: TorchDecoder | None = None

    @property
    def decoder(self) -> TorchDecoder:
        if self._decoder is None:  # the cache is allocated on first use, then reused
            self._decoder = TorchDecoder(self.model)
        return self._decoder

    def use_decode_threads(self) -> int:
        """Set torch's thread count for batch-1 decoding of this model (process-wide; for the CLI).

        A small model's per-token matmuls are far too small to split: on this project's 2-core
        machine the bundled 0.8M-parameter model decodes at 3.9 ms/token on 1 thread and
        27 ms/token on 2 when other processes compete for the cores. Models under
        ``SINGLE_THREAD_FLOPS`` forward FLOPs per token get one thread; larger ones keep torch's
        default.
        """
        if self.info.model_config.flops_per_token() // 3 < SINGLE_THREAD_FLOPS:
            torch.set_num_threads(1)
        return torch.get_num_threads()

    def prefill(self, ids: list[int]) -> np.ndarray:
        return self.decoder.prefill(ids)

    def step(self, token: int) -> np.ndarray:
        return self.decoder.step(token)

    def decode_batch(self, max_batch: int):
        """One cached decoder per slot, stepped in turn: the torch KV cache keeps one length for
        the whole batch, so rows of different lengths cannot share a pass (the ONNX backend
        batches them)."""
        from tinyllm.runtime.decode_batch import PerSlotBatch

        if self.labels:
            return super().decode_batch(max_batch)
        return PerSlotBatch(lambda: TorchDecoder(self.model), max_batch)

    def classify(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, n_classes); input encoding shared with ONNX (runtime.textbatch)."""
        from tinyllm.runtime.textbatch import encode_batch, softmax

        if not self.labels or self.model.cls_head is None:
            return super().classify(texts)
        if not texts:
            return np.zeros((0, len(self.labels)))
        ids, lengths = encode_batch(self.tokenizer, texts, self.context_length)
        device = self.model.tok_emb.weight.device
        with torch.inference_mode():
            logits = self.model.classify(torch.from_numpy(ids).to(device),
                                         torch.from_numpy(lengths).to(device))
        return softmax(logits.float().cpu().numpy())

    def hidden_states(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """An encoder's last hidden states (B, T, C), for :meth:`Engine.embed`."""
        if not self.is_encoder:
            return super().hidden_states(ids, lengths)
        device = self.model.tok_emb.weight.device
        with torch.inference_mode():
            h = self.model.hidden(torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device))
        return h.float().cpu().numpy()
