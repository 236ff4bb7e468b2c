"""A classifier on ONNX Runtime: texts -> class probabilities, with no torch.

The graph (see :mod:`tinyllm.export.onnx`) maps right-padded ``input_ids (B, T)`` and ``lengths (B,)``
to ``logits (B, n_classes)``. Texts are encoded by :func:`tinyllm.runtime.textbatch.encode_batch`,
the same function the torch classifier uses, so both backends see identical inputs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tinyllm.runtime.session import open_session
from tinyllm.runtime.textbatch import encode_texts, length_batches, pad_id_of, pad_ids, softmax
from tinyllm.tokenizer import Tokenizer


class OnnxClassifier:
    """``logits(ids, lengths)`` and ``classify(texts)`` over an exported classifier graph."""

    def __init__(self, session: ort.InferenceSession | str | Path, tokenizer: Tokenizer,
                 context_length: int):
        if not isinstance(session, ort.InferenceSession):
            session = open_session(session)
        names = {i.name for i in session.get_inputs()}
        outputs = session.get_outputs()
        if names != {"input_ids", "lengths"} or not outputs or outputs[0].name != "logits" \
                or not isinstance(outputs[0].shape[-1] if outputs[0].shape else None, int):
            raise ValueError(f"not a tinyllm classifier graph (it has inputs "
                             f"{', '.join(sorted(names)) or 'none'}; expected input_ids, lengths "
                             f"in and logits (batch, n_classes) out)")
        self.session = session
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.n_classes = session.get_outputs()[0].shape[-1]

    def logits(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Class logits (B, n_classes) for right-padded ids (B, T) with ``lengths`` real tokens."""
        return self.session.run(["logits"], {"input_ids": ids, "lengths": lengths})[0]

    def classify(self, texts: list[str], chunk: int = 16) -> np.ndarray:
        """Probabilities (N, n_classes).

        The rows are encoded as :func:`tinyllm.runtime.textbatch.encode_batch` does, then run in
        chunks of similar length, so a batch of short messages is not padded to its longest one.
        """
        if not texts:
            return np.zeros((0, self.n_classes))
        rows = encode_texts(self.tokenizer, texts, self.context_length)
        out = np.empty((len(rows), self.n_classes), dtype=np.float32)
        pad = pad_id_of(self.tokenizer)
        for part in length_batches(rows, chunk):
            ids, lengths = pad_ids([rows[i] for i in part], self.context_length, pad)
            out[part] = self.logits(ids, lengths)
        return softmax(out)
