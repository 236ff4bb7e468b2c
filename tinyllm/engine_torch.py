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


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, info: modeldir.ModelInfo, device: str = "cpu"):
        super().__init__(info)
        self.model = load_model(info.path, device=device)
        self._decoder: TorchDecoder | None = None

    @property
    def decoder(self) -> TorchDecoder:
        if self._decoder is None:  # the cache is allocated on first use, then reused
            self._decoder = TorchDecoder(self.model)
        return self._decoder

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
