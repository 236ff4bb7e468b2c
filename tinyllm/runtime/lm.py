"""A language model on ONNX Runtime: ``prefill`` / ``step`` for the shared sampling loop.

The graph (see :mod:`tinyllm.export.onnx`) takes ``input_ids`` and ``past.{i}.key/value`` and returns
``logits`` and ``present.{i}.key/value``. The cache never leaves ONNX Runtime between steps: the
presents of one step are bound, as OrtValues, as the pasts of the next (IOBinding), so each step
pays only the graph's own Concat, never a numpy round trip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tinyllm.runtime.session import open_session


class OnnxDecoder:
    """``prefill(ids)`` and ``step(token)`` returning next-token logits (vocab,) as numpy."""

    def __init__(self, session: ort.InferenceSession | str | Path, batch_size: int = 1):
        if not isinstance(session, ort.InferenceSession):
            session = open_session(session)
        self.session = session
        names = [i.name for i in session.get_inputs()]
        if "input_ids" not in names or not any(n.startswith("past.") for n in names):
            raise ValueError("not a tinyllm language-model graph (no input_ids / past.* inputs)")
        self.past_names = [n for n in names if n.startswith("past.")]
        self.output_names = [o.name for o in session.get_outputs()]
        shape = next(i.shape for i in session.get_inputs() if i.name == self.past_names[0])
        n_head, head_size = shape[1], shape[3]       # (batch, n_head, past, head_size)
        self.empty = np.zeros((batch_size, n_head, 0, head_size), dtype=np.float32)
        self.io = session.io_binding()
        self.cache: list[ort.OrtValue] = []           # the presents of the last run
        self.length = 0                               # positions in the cache

    def run(self, ids: np.ndarray, past: list | None) -> np.ndarray:
        """Run the graph on ``ids`` (B, T) after ``past`` (None: an empty cache); logits (B, T, V).

        The new cache is kept in ``self.cache``.
        """
        io = self.io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        io.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        if past is None:
            empty = self.empty if self.empty.shape[0] == ids.shape[0] else \
                np.zeros((ids.shape[0], *self.empty.shape[1:]), np.float32)
            for name in self.past_names:
                io.bind_cpu_input(name, empty)
        else:
            for name, value in zip(self.past_names, past):
                io.bind_ortvalue_input(name, value)
        for name in self.output_names:
            io.bind_output(name, "cpu")
        self.session.run_with_iobinding(io)
        outs = io.get_outputs()
        self.cache = outs[1:]
        self.length = (0 if past is None else self.length) + ids.shape[1]
        return outs[0].numpy()

    def prefill(self, ids: list[int]) -> np.ndarray:
        return self.run(np.asarray([ids], dtype=np.int64), None)[0, -1]

    def step(self, token: int) -> np.ndarray:
        return self.run(np.asarray([[token]], dtype=np.int64), self.cache)[0, -1]
