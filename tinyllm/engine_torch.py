"""The torch backend of :class:`tinyllm.runtime.engine.Engine`.

Loads the model directory with :func:`tinyllm.checkpoint.load_model` and decodes with
:class:`tinyllm.generate.TorchDecoder` (a preallocated KV cache, reused across prompts).
"""
from __future__ import annotations

import numpy as np

from tinyllm import modeldir
from tinyllm.checkpoint import load_model
from tinyllm.generate import TorchDecoder
from tinyllm.runtime.engine import Engine


SINGLE_THREAD_FLOPS = 50_000_000  # forward FLOPs per token below which decoding uses one thread


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, info: modeldir.ModelInfo, device: str = "cpu"):
        super().__init__(info)
        self.model = load_model(info.path, device=device).use_decode_layout()
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
        import torch

        if self.info.model_config.flops_per_token() // 3 < SINGLE_THREAD_FLOPS:
            torch.set_num_threads(1)
        return torch.get_num_threads()

    def prefill(self, ids: list[int]) -> np.ndarray:
        return self.decoder.prefill(ids)

    def step(self, token: int) -> np.ndarray:
        return self.decoder.step(token)

    def classify(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, n_classes); input encoding shared with ONNX (runtime.textbatch)."""
        import torch

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
