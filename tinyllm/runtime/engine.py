"""One way for the CLI and the TUI to run a model, on torch or on ONNX Runtime.

``open_engine(name_or_path, backend)`` finds the model directory and returns an :class:`Engine`.
Every engine has ``info``, ``meta``, ``tokenizer``, ``backend``, ``labels``, ``task``,
``generate(prompt, cfg) -> Iterator[str]`` and, for classifiers, ``classify(texts) -> probs``.
A backend only supplies ``prefill(ids)`` / ``step(token)`` (next-token logits as numpy); the
sampling loop, instruct templates and UTF-8-safe streaming are shared here.

:class:`OnnxEngine` runs ``model.int8.onnx`` when the directory has one (``tinyllm export-onnx
--int8`` wrote it, so the user asked for it), else ``model.onnx``; ``precision="fp32"`` (or the
environment variable ``TINYLLM_ONNX_PRECISION=fp32``) picks the float graph.

This module imports no torch: the torch backend (:mod:`tinyllm.engine_torch`) is imported only when
it is chosen.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.export import FP32_FILE, INT8_FILE
from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
from tinyllm.tokenizer import Tokenizer, from_spec

BACKENDS = ("torch", "onnx")


class Engine:
    """What a loaded model can do, whatever runs it. Subclasses set ``backend`` and the two hooks."""

    backend: str = ""

    def __init__(self, info: modeldir.ModelInfo):
        self.info = info
        self.meta: dict = info.meta
        self.task: str = info.task
        self.labels: list[str] | None = info.meta.get("labels")
        self.tokenizer: Tokenizer = from_spec(info.meta.get("tokenizer"), info.path)
        self.context_length: int = info.model_config.context_length

    # ---- backend hooks ------------------------------------------------------------------------
    def prefill(self, ids: list[int]) -> np.ndarray:
        """Start a fresh KV cache from ``ids``; the next-token logits (vocab,)."""
        raise NotImplementedError

    def step(self, token: int) -> np.ndarray:
        """Append one token to the cache; the next-token logits (vocab,)."""
        raise NotImplementedError

    # ---- shared surface -----------------------------------------------------------------------
    @property
    def template(self):
        """The instruct prompt template from config.yaml (None for plain language models)."""
        return self.meta.get("template") if self.task == "instruct" else None

    def prompt_and_stops(self, prompt: str, cfg: SamplingConfig, input: str = ""
                         ) -> tuple[str, list[str]]:
        """The text the model sees and the stop strings: instruct models get their template
        (``prompt`` is the instruction, ``input`` its optional input)."""
        stops = list(cfg.stop)
        if self.task == "instruct":
            from tinyllm.runtime import templates

            prompt = templates.format_prompt(self.template, prompt, input)
            stops += [s for s in templates.stop_strings(self.template) if s not in stops]
        return prompt, stops

    def generate(self, prompt: str, cfg: SamplingConfig | None = None, input: str = ""
                 ) -> Iterator[str]:
        """Stream the continuation of ``prompt`` (for instruct models: only the response)."""
        if self.labels:
            raise UserError(f"{self.info.path}: a {self.task} model does not generate text; "
                            "use `tinyllm classify`")
        cfg = cfg or SamplingConfig()
        text, stops = self.prompt_and_stops(prompt, cfg, input)
        tok = self.tokenizer
        ids = tok.encode(text) or [tok.eot_id if tok.eot_id is not None else 0]
        new_ids = generate_ids(self.prefill, self.step, ids, cfg, tok.eot_id, self.context_length)
        return stream_text(new_ids, tok.token_bytes, stops)

    def classify(self, texts: list[str]) -> np.ndarray:
        """Class probabilities (N, n_classes) for classifier models."""
        raise UserError(f"{self.info.path}: the {self.backend} backend cannot classify with this "
                        f"model (task {self.task})")


ONNX_GRAPHS = {"int8": INT8_FILE, "fp32": FP32_FILE}
PRECISIONS = ("auto", "fp32", "int8")


def onnx_graph(path: Path, precision: str | None = None) -> Path | None:
    """The graph an ONNX engine runs for the model directory ``path`` (None: it has none).

    "auto" (the default, or ``$TINYLLM_ONNX_PRECISION``) prefers the int8 graph when present.
    """
    precision = precision or os.environ.get("TINYLLM_ONNX_PRECISION") or "auto"
    if precision not in PRECISIONS:
        raise UserError(f"unknown ONNX precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    for p in (["int8", "fp32"] if precision == "auto" else [precision]):
        if (path / ONNX_GRAPHS[p]).is_file():
            return path / ONNX_GRAPHS[p]
    return None


class OnnxEngine(Engine):
    """A model directory's exported graph on ONNX Runtime (numpy + onnxruntime, no torch)."""

    backend = "onnx"

    def __init__(self, info: modeldir.ModelInfo, precision: str | None = None,
                 threads: int | None = None):
        from tinyllm.runtime.session import open_session

        super().__init__(info)
        graph = onnx_graph(info.path, precision)
        if graph is None:
            flag = " --int8" if precision == "int8" else ""
            raise UserError(f"{info.path}: no {ONNX_GRAPHS.get(precision or '', 'model.onnx')}; "
                            f"run `tinyllm export-onnx {info.path}{flag}` first or use --backend torch")
        self.graph = graph
        self.session = open_session(graph, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.precision = "fp32" if props.get("tinyllm.quant", "none") == "none" else "int8"
        saved = props.get("tinyllm.saved_at")
        if saved and saved != str(self.meta.get("saved_at")):
            print(f"warning: {graph} was exported from other weights (saved {saved}); run "
                  f"`tinyllm export-onnx {info.path}` again", file=sys.stderr)
        inputs = {i.name for i in self.session.get_inputs()}
        self.kind = props.get("tinyllm.kind") or ("classify" if "lengths" in inputs else "lm")
        if self.kind == "classify":
            from tinyllm.runtime.classifier import OnnxClassifier

            self.classifier = OnnxClassifier(self.session, self.tokenizer, self.context_length)
        else:
            from tinyllm.runtime.lm import OnnxDecoder

            self.decoder = OnnxDecoder(self.session, max_len=self.context_length)

    def prefill(self, ids: list[int]) -> np.ndarray:
        if self.kind != "lm":
            return super().prefill(ids)
        return self.decoder.prefill(ids)

    def step(self, token: int) -> np.ndarray:
        return self.decoder.step(token)

    def classify(self, texts: list[str]) -> np.ndarray:
        if self.kind != "classify" or not self.labels:
            return super().classify(texts)
        return self.classifier.classify(texts)


def open_engine(name_or_path: str | Path | None = None, backend: str | None = None,
                default: str = modeldir.DEFAULT_LM, quiet: bool = False,
                precision: str | None = None) -> Engine:
    """An engine for a model by path or name (None: ``default``).

    ``backend`` None picks "onnx" when the directory has an exported graph (and says so on
    stderr), else "torch". ``precision`` ("auto", "fp32", "int8") chooses the ONNX graph.
    """
    info = modeldir.find(name_or_path, default)
    if backend is None:
        graph = onnx_graph(info.path, precision)
        backend = "onnx" if graph is not None else "torch"
        if graph is not None and not quiet:
            print(f"using the onnx backend ({graph.name} found); --backend torch to override",
                  file=sys.stderr)
    if backend == "torch":
        from tinyllm.engine_torch import TorchEngine

        return TorchEngine(info)
    if backend == "onnx":
        return OnnxEngine(info, precision)
    raise UserError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
