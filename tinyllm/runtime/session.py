"""ONNX Runtime sessions with the options this project measured as fastest on a CPU.

See docs/performance.md (ONNX session options) for the measurements behind the defaults: every graph optimisation
(ORT_ENABLE_ALL), sequential execution, one intra-op thread per core, and worker threads that
sleep instead of spinning while they wait for work. Spinning gains 4-9 % on an idle machine, but
when other jobs hold the cores, spinning threads fight them and batch-1 decoding ran 1.8x slower.
``TINYLLM_ORT_THREADS`` overrides the thread count.
"""
from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from tinyllm.errors import UserError

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def default_threads() -> int:
    env = os.environ.get("TINYLLM_ORT_THREADS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise UserError(f"TINYLLM_ORT_THREADS={env!r}: expected a whole number") from None
    try:  # one per core this process may run on
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def session_options(threads: int | None = None, level: str = "all") -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = _LEVELS[level]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = default_threads() if threads is None else threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: ORT's warnings are not for end users
    return so


def open_session(path: str | Path, threads: int | None = None, level: str = "all"
                 ) -> ort.InferenceSession:
    """An InferenceSession on the CPU; a bad or missing file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file; run `tinyllm export-onnx {path.parent}`")
    try:
        return ort.InferenceSession(str(path), session_options(threads, level),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise UserError(f"{path}: not a loadable ONNX graph ({str(e).strip().splitlines()[0]})"
                        ) from None
