"""An exported encoder on ONNX Runtime: ids -> last hidden states, with no torch.

The embedder graph (see :mod:`tinyllm.export.onnx`) maps right-padded ``input_ids (B, T)`` and
``lengths (B,)`` to ``hidden (B, T, n_embd)``; :meth:`tinyllm.runtime.engine.Engine.embed` pools
and normalises them, as it does for the torch backend. An encoder classifier's graph has the
decoder classifier's inputs and output and runs on :class:`tinyllm.runtime.onnx_classifier.OnnxClassifier`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tinyllm.runtime.session import open_session


class OnnxEncoder:
    """``hidden(ids, lengths)`` over an exported embedder graph."""

    def __init__(self, session: ort.InferenceSession | str | Path):
        if not isinstance(session, ort.InferenceSession):
            session = open_session(session)
        names = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if names != {"input_ids", "lengths"} or "hidden" not in outputs:
            raise ValueError("not a tinyllm encoder graph (inputs input_ids, lengths; output hidden)")
        self.session = session

    def hidden(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Last hidden states (B, T, C) float32 for right-padded ids (B, T) with ``lengths``."""
        return self.session.run(["hidden"], {"input_ids": ids, "lengths": lengths})[0]
