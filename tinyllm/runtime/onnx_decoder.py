"""A language model on ONNX Runtime: ``prefill`` / ``step`` for the shared sampling loop.

The graph (see :mod:`tinyllm.export.onnx`) takes ``input_ids``, ``seqlens_k`` / ``total_sequence_length``
and ``past.{i}.key/value``, and returns ``logits`` and ``present.{i}.key/value``. The cache never
leaves ONNX Runtime:

* ``shared`` graphs (attention is GroupQueryAttention, the default export): one buffer per layer,
  sized for the whole context, is bound (IOBinding) as both ``past`` and ``present``; the operator
  writes each new position in place, so a step copies and allocates nothing.
* ``concat`` graphs (the TorchScript fallback): each step's presents, kept as ORT-owned OrtValues,
  are bound as the next step's pasts; the graph's Concat is the only copy, never a numpy round trip.

Graphs with a ``logits_index`` input (:func:`tinyllm.export.onnx_passes.logits_at_positions`)
compute the LM head only at the positions asked for: a prompt's last one when decoding, every
one for the quality check. A decode step on a shared cache binds nothing anew: the token, the
lengths and the logits live in small numpy buffers bound once, which ONNX Runtime reads and
fills in place.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tinyllm.runtime.session import open_session

LOGITS_INDEX = "logits_index"  # the graph input of :func:`tinyllm.export.onnx_passes.logits_at_positions`


class OnnxDecoder:
    """``prefill(ids)`` and ``step(token)`` returning next-token logits (vocab,) as numpy."""

    def __init__(self, session: ort.InferenceSession | str | Path, max_len: int | None = None):
        if not isinstance(session, ort.InferenceSession):
            session = open_session(session, spin=None)  # one token a run: spin if idle
        self.session = session
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        self.past_names = [n for n in inputs if n.startswith("past.")]
        self.present_names = [n for n in outputs if n.startswith("present.")]
        found = f"inputs {', '.join(inputs) or 'none'}; outputs {', '.join(outputs) or 'none'}"
        if "input_ids" not in inputs or not self.past_names or "logits" not in outputs:
            raise ValueError(f"not a tinyllm language-model graph (it has {found}; expected "
                             f"input_ids and past.N.key/value in, logits and present.N.key/value "
                             f"out)")
        if inputs["input_ids"].type != "tensor(int64)" or \
                [n.replace("past.", "present.", 1) for n in self.past_names] != self.present_names:
            raise ValueError(f"not a tinyllm language-model graph (it has {found})")
        self.has = set(inputs)
        shape = inputs[self.past_names[0]].shape        # (batch, n_head, past, head_size)
        if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in (shape[1], shape[3])):
            raise ValueError(f"not a tinyllm language-model graph ({self.past_names[0]} has shape "
                             f"{shape}, expected (batch, n_head, past, head_size))")
        self.n_head, self.head_size = shape[1], shape[3]
        props = session.get_modelmeta().custom_metadata_map
        self.shared = props.get("tinyllm.kv_cache") == "shared"
        self.max_len = max_len or int(props.get("tinyllm.context_length", 0)) or 1024
        self.io = session.io_binding()
        self.cache: list[ort.OrtValue] = []   # shared: the buffers; concat: the last presents
        self.batch = 0
        self.length = 0                       # positions in the cache
        self.vocab = session.get_outputs()[0].shape[-1]
        self.picks_logits = LOGITS_INDEX in inputs   # the graph computes only the positions asked
        self._stepping: dict[str, np.ndarray] | None = None  # the buffers a bound step reads/fills

    def _buffers(self, batch: int) -> list[ort.OrtValue]:
        """The shared cache buffers for ``batch`` rows (allocated once, reused by every run)."""
        if self.batch != batch or not self.cache:
            shape = (batch, self.n_head, self.max_len, self.head_size)
            self.cache = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32)
                          for _ in self.past_names]
            self.batch = batch
        return self.cache

    def run(self, ids: np.ndarray, reset: bool = True, last_only: bool = False) -> np.ndarray:
        """Run ``ids`` (B, T) after an empty cache (``reset``) or after the cache so far; returns
        the logits (B, T, vocab), or (B, 1, vocab) of the last position with ``last_only``, and
        keeps the new cache."""
        B, T = ids.shape
        past = 0 if reset else self.length
        total = past + T
        if self.shared and total > self.max_len:
            raise ValueError(f"{total} positions exceed the cache of {self.max_len}")
        self._stepping = None
        io = self.io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        io.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        if "seqlens_k" in self.has:
            io.bind_cpu_input("seqlens_k", np.full((B,), total - 1, dtype=np.int32))
        if "total_sequence_length" in self.has:
            io.bind_cpu_input("total_sequence_length", np.array(total, dtype=np.int32))
        if self.picks_logits:
            io.bind_cpu_input(LOGITS_INDEX, np.arange(T - 1 if last_only else 0, T, dtype=np.int64))
        io.bind_output("logits", "cpu")                # outputs come back in binding order
        if self.shared:
            for p_name, o_name, buf in zip(self.past_names, self.present_names, self._buffers(B)):
                io.bind_ortvalue_input(p_name, buf)
                io.bind_ortvalue_output(o_name, buf)   # the same buffer: updated in place
        else:
            if reset:
                empty = np.zeros((B, self.n_head, 0, self.head_size), dtype=np.float32)
                for name in self.past_names:
                    io.bind_cpu_input(name, empty)
            else:
                for name, value in zip(self.past_names, self.cache):
                    io.bind_ortvalue_input(name, value)
            for name in self.present_names:
                io.bind_output(name, "cpu")
        self.session.run_with_iobinding(io)
        outs = io.get_outputs()
        if not self.shared:
            self.cache = list(outs[1:])
        self.length = total
        logits = outs[0].numpy()
        return logits[:, -1:] if last_only and not self.picks_logits else logits

    def _bind_step(self) -> dict[str, np.ndarray]:
        """Bind one-token steps on the shared cache once: every input and the logits are numpy
        buffers that ONNX Runtime reads and writes in place, so a step only sets three numbers."""
        io = self.io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        bufs = {"input_ids": np.zeros((1, 1), dtype=np.int64),
                "seqlens_k": np.zeros((1,), dtype=np.int32),
                "total_sequence_length": np.zeros((), dtype=np.int32),
                LOGITS_INDEX: np.zeros((1,), dtype=np.int64),
                "logits": np.zeros((1, 1, self.vocab), dtype=np.float32)}
        for name, buf in bufs.items():
            if name in self.has:
                io.bind_input(name, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        io.bind_output("logits", "cpu", 0, np.float32, [1, 1, self.vocab], bufs["logits"].ctypes.data)
        for p_name, o_name, buf in zip(self.past_names, self.present_names, self._buffers(1)):
            io.bind_ortvalue_input(p_name, buf)
            io.bind_ortvalue_output(o_name, buf)
        return bufs

    def prefill(self, ids: list[int]) -> np.ndarray:
        return self.run(np.asarray([ids], dtype=np.int64), reset=True, last_only=True)[0, -1]

    def step(self, token: int) -> np.ndarray:
        """The next-token logits (vocab,) after appending ``token`` to the cache."""
        if not (self.shared and self.batch == 1 and isinstance(self.vocab, int)):
            return self.run(np.asarray([[token]], dtype=np.int64), reset=False, last_only=True)[0, -1]
        if self.length + 1 > self.max_len:
            raise ValueError(f"{self.length + 1} positions exceed the cache of {self.max_len}")
        if self._stepping is None:
            self._stepping = self._bind_step()
        bufs = self._stepping
        bufs["input_ids"][0, 0] = token
        bufs["seqlens_k"][0] = self.length                 # cache + 1 new - 1
        bufs["total_sequence_length"][()] = self.length + 1
        self.session.run_with_iobinding(self.io)
        self.length += 1
        return bufs["logits"][0, 0].copy()  # the buffer is refilled by the next step


class BatchedOnnxDecoder:
    """A decode batch (:mod:`tinyllm.runtime.decode_batch`) on ONNX Runtime: one slot per sequence
    in a shared cache, and one run of the graph per step for all of them.

    Each layer's keys and values live in one numpy buffer (rows, n_head, max_len, head_size),
    bound to ONNX Runtime without a copy (as both past and present, so GroupQueryAttention writes
    new positions in place). ``prefill(slot, ids)`` fills one slot from a prompt (batch 1 over that
    row of the buffer); ``step(slots, tokens)`` appends one token to each given slot in one run,
    every row at its own length (``seqlens_k`` per row; the graph places each row's token at its
    own position, see :func:`tinyllm.export.onnx.row_positions`). A step runs rows 0..max(slots):
    rows in that range that are not stepped (free, or waiting for a fresh prefill) ride along on a
    dummy token written just past their end, where their own next token overwrites it; take
    slots lowest first.

    A row's numbers must not depend on its neighbours. Float graphs compute each row alike at any
    batch size, but ONNX Runtime's int8 matmul (``MatMulNBits``) works through the rows in pairs
    and rounds a lone last row differently (measured: rows of an odd-sized batch agree with each
    other except the last), so quantized graphs always run an even number of rows: a lone
    sequence gets a dummy neighbour, which costs little since a step is bound by reading the
    weights. Graphs quantized with ``dynamic`` share one activation scale across the rows of a
    step, so there a row's result can still move slightly with the company it keeps; ``nbits8``
    has no such coupling.

    Needs a graph exported with per-row positions (metadata ``tinyllm.positions = per_row``);
    ``supports(session)`` says whether a graph is one.
    """

    batched = True

    def __init__(self, session: ort.InferenceSession | str | Path, max_batch: int,
                 max_len: int | None = None):
        if not isinstance(session, ort.InferenceSession):
            session = open_session(session, spin=None)  # one token a run: spin if idle
        if not self.supports(session):
            raise ValueError("this graph cannot decode rows of different lengths together; "
                             "export it again with `tinyllm export-onnx`")
        self.one = OnnxDecoder(session, max_len)        # names, shapes and context of the graph
        self.session, self.max_batch, self.max_len = session, max_batch, self.one.max_len
        self.quant = session.get_modelmeta().custom_metadata_map.get("tinyllm.quant", "none")
        self.even_rows = self.quant != "none"   # see the class docstring
        rows = max_batch + (max_batch % 2 if self.even_rows else 0)
        shape = (rows, self.one.n_head, self.max_len, self.one.head_size)
        self.cache = [np.zeros(shape, dtype=np.float32) for _ in self.one.past_names]
        self.lengths = np.zeros(rows, dtype=np.int64)   # positions held by each slot
        self._rows: dict[tuple[int, int], list[ort.OrtValue]] = {}
        self.io = session.io_binding()

    @staticmethod
    def supports(session: ort.InferenceSession) -> bool:
        props = session.get_modelmeta().custom_metadata_map
        return (props.get("tinyllm.kv_cache") == "shared"
                and props.get("tinyllm.positions") == "per_row")

    def _views(self, start: int, stop: int) -> list[ort.OrtValue]:
        """OrtValues over rows start..stop-1 of every layer's buffer (the same memory, no copy)."""
        key = (start, stop)
        if key not in self._rows:
            self._rows[key] = [ort.OrtValue.ortvalue_from_numpy(buf[start:stop])
                               for buf in self.cache]
        return self._rows[key]

    def _run(self, ids: np.ndarray, seqlens: np.ndarray, total: int, rows: tuple[int, int]
             ) -> np.ndarray:
        io = self.io
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        io.bind_cpu_input("input_ids", ids)
        io.bind_cpu_input("seqlens_k", seqlens.astype(np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(total, dtype=np.int32))
        if self.one.picks_logits:  # only the last position's logits are used
            io.bind_cpu_input(LOGITS_INDEX, np.array([ids.shape[1] - 1], dtype=np.int64))
        io.bind_output("logits", "cpu")
        for p_name, o_name, buf in zip(self.one.past_names, self.one.present_names,
                                       self._views(*rows)):
            io.bind_ortvalue_input(p_name, buf)
            io.bind_ortvalue_output(o_name, buf)
        self.session.run_with_iobinding(io)
        return io.get_outputs()[0].numpy()

    def prefill(self, slot: int, ids: list[int]) -> np.ndarray:
        """Fill ``slot`` with ``ids`` from an empty cache; the next-token logits (vocab,)."""
        T = len(ids)
        if not 0 < T <= self.max_len:
            raise ValueError(f"{T} positions do not fit the cache of {self.max_len}")
        logits = self._run(np.asarray([ids], dtype=np.int64), np.array([T - 1]), T,
                           (slot, slot + 1))
        self.lengths[slot] = T
        return logits[0, -1]

    def step(self, slots: list[int], tokens: list[int]) -> np.ndarray:
        """Append ``tokens[i]`` to ``slots[i]`` for every i in one run; logits (len(slots), vocab)."""
        idx = np.asarray(slots, dtype=np.int64)
        if (self.lengths[idx] >= self.max_len).any():
            raise ValueError(f"a sequence would exceed the cache of {self.max_len}")
        n = int(idx.max()) + 1
        n += n % 2 if self.even_rows else 0
        ids = np.zeros((n, 1), dtype=np.int64)
        ids[idx, 0] = tokens
        # rows not stepped take a dummy token at their next position (free rows: at 0); a full
        # row is always refilled before it steps again, so its last position may take it
        seqlens = np.minimum(self.lengths[:n], self.max_len - 1)    # cache + 1 new - 1
        seqlens[idx] = self.lengths[idx]
        logits = self._run(ids, seqlens, int(seqlens.max()) + 1, (0, n))
        self.lengths[idx] += 1
        return logits[idx, -1]

    def free(self, slot: int) -> None:
        self.lengths[slot] = 0
