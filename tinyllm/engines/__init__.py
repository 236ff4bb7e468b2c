"""One factory that opens a model for inference, on torch or on ONNX Runtime.

``open_engine(name_or_path, backend)`` finds the model directory and returns an
:class:`tinyllm.runtime.engine.Engine`: :class:`tinyllm.runtime.onnx_engine.OnnxEngine` (no torch)
or :class:`tinyllm.engines.torch_engine.TorchEngine` (torch is imported only when it is chosen).
"""
from __future__ import annotations

from pathlib import Path

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.runtime.engine import Engine, Log, no_log
from tinyllm.runtime.onnx_engine import OnnxEngine, onnx_graph

BACKENDS = ("torch", "onnx")


def choose_backend(info: modeldir.ModelInfo, backend: str | None = None,
                   precision: str | None = None) -> str:
    """``backend`` when given, else "onnx" when the directory has an exported graph, else "torch"."""
    if backend is None:
        return "onnx" if onnx_graph(info.path, precision) is not None else "torch"
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return backend


def open_engine(name_or_path: str | Path | None = None, backend: str | None = None,
                default: str = modeldir.DEFAULT_LM, precision: str | None = None,
                log: Log | None = None) -> Engine:
    """An engine for a model by path or name (None: ``default``).

    Args:
        name_or_path: a model directory, or a name in ``$TINYLLM_HOME/models`` or the bundled ones.
        backend: "torch", "onnx", or None to pick "onnx" when the directory has an exported graph.
        default: the model used when ``name_or_path`` is None.
        precision: "auto", "fp32" or "int8": which ONNX graph.
        log: receives notes (the backend chosen automatically, stale graphs); library code never
            prints.
    """
    log = log or no_log
    info = modeldir.find(name_or_path, default)
    chosen = choose_backend(info, backend, precision)
    if backend is None and chosen == "onnx":
        graph = onnx_graph(info.path, precision)
        log(f"using the onnx backend ({graph.name} found); --backend torch to override")
    if chosen == "torch":
        from tinyllm.engines.torch_engine import TorchEngine

        return TorchEngine(info, log=log)
    return OnnxEngine(info, precision, log=log)


__all__ = ["BACKENDS", "Engine", "choose_backend", "open_engine"]
