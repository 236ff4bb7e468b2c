"""A model directory's exported graph on ONNX Runtime (numpy + onnxruntime, no torch).

:class:`OnnxEngine` runs ``model.int8.onnx`` when the directory has one (``tinyllm export-onnx
--int8`` wrote it, so the user asked for it), else ``model.onnx``; ``precision="fp32"`` (or the
environment variable ``TINYLLM_ONNX_PRECISION=fp32``) picks the float graph.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tinyllm import modeldir
from tinyllm.errors import UserError
from tinyllm.runtime.engine import Engine, Log

PRECISIONS = ("auto", "fp32", "int8")


def onnx_graph(path: Path, precision: str | None = None) -> Path | None:
    """The graph an ONNX engine runs for the model directory ``path`` (None: it has none).

    "auto" (the default, or ``$TINYLLM_ONNX_PRECISION``) prefers the int8 graph when present.
    """
    precision = precision or os.environ.get("TINYLLM_ONNX_PRECISION") or "auto"
    if precision not in PRECISIONS:
        raise UserError(f"unknown ONNX precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    for p in (["int8", "fp32"] if precision == "auto" else [precision]):
        if (path / modeldir.ONNX_GRAPHS[p]).is_file():
            return path / modeldir.ONNX_GRAPHS[p]
    return None


class OnnxEngine(Engine):
    """A model directory's exported graph on ONNX Runtime."""

    backend = "onnx"

    def __init__(self, info: modeldir.ModelInfo, precision: str | None = None,
                 threads: int | None = None, log: Log | None = None):
        from tinyllm.runtime.session import open_session

        super().__init__(info, log)
        graph = onnx_graph(info.path, precision)
        if graph is None:
            flag = " --int8" if precision == "int8" else ""
            raise UserError(f"{info.path}: no {modeldir.ONNX_GRAPHS.get(precision or '', 'model.onnx')}; "
                            f"run `tinyllm export-onnx {info.path}{flag}` first or use --backend torch")
        self.graph = graph
        # a language model runs one token a run: its threads spin when the cores are idle
        # (tinyllm.runtime.session); batches (classify, embed) skip the 0.1 s that deciding costs
        self.session = open_session(graph, threads, spin=None if info.task == "lm" else False)
        props = self.session.get_modelmeta().custom_metadata_map
        self.precision = "fp32" if props.get("tinyllm.quant", "none") == "none" else "int8"
        saved = props.get("tinyllm.saved_at")
        if saved and saved != str(self.meta.get("saved_at")):
            self.log(f"warning: {graph} was exported from other weights (saved {saved}); run "
                     f"`tinyllm export-onnx {info.path}` again")
        inputs = {i.name for i in self.session.get_inputs()}
        self.kind = props.get("tinyllm.kind") or ("classify" if "lengths" in inputs else "lm")
        try:
            if self.kind == "classify":
                from tinyllm.runtime.onnx_classifier import OnnxClassifier

                self.classifier = OnnxClassifier(self.session, self.tokenizer, self.context_length)
            elif self.kind == "embed":
                from tinyllm.runtime.onnx_encoder import OnnxEncoder

                self.encoder = OnnxEncoder(self.session)
            else:
                from tinyllm.runtime.onnx_decoder import OnnxDecoder

                self.decoder = OnnxDecoder(self.session, max_len=self.context_length)
        except ValueError as e:
            raise UserError(f"{graph}: {e}") from None
        if self.kind == "classify" and self.labels and self.classifier.n_classes != len(self.labels):
            raise UserError(f"{graph}: the graph has {self.classifier.n_classes} classes, config.yaml "
                            f"{len(self.labels)} labels; run `tinyllm export-onnx {info.path}` again")

    def _run(self, fn, *args):
        """A graph that loads but fails to run (wrong shapes or types inside) is the graph's
        fault: a UserError naming it, never onnxruntime's traceback."""
        try:
            return fn(*args)
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise UserError(f"{self.graph}: the graph failed to run ({first}); run `tinyllm "
                            f"export-onnx {self.info.path}` again or use --backend torch") from None

    def prefill(self, ids: list[int]) -> np.ndarray:
        if self.kind != "lm":
            return super().prefill(ids)
        return self._run(self.decoder.prefill, ids)

    def step(self, token: int) -> np.ndarray:
        return self._run(self.decoder.step, token)

    def decode_batch(self, max_batch: int):
        """One batched pass per step when the graph places rows at their own positions (graphs
        exported before that decode each sequence on its own)."""
        if self.kind != "lm":
            return super().decode_batch(max_batch)
        from tinyllm.runtime.decode_batch import PerSlotBatch
        from tinyllm.runtime.onnx_decoder import BatchedOnnxDecoder, OnnxDecoder

        if BatchedOnnxDecoder.supports(self.session):
            batch = BatchedOnnxDecoder(self.session, max_batch, self.context_length)
            if batch.quant == "dynamic" and max_batch > 1:
                self.log(f"note: {self.graph.name} quantizes each step's activations with one "
                         "scale for the whole batch, so a batched reply can differ slightly from "
                         f"the same request alone; `tinyllm export-onnx {self.info.path} --int8 "
                         "--quant nbits8` keeps them identical")
            return batch
        if max_batch > 1:
            self.log(f"note: {self.graph} decodes one sequence at a time; run `tinyllm export-onnx "
                     f"{self.info.path}` again to batch concurrent requests")
        return PerSlotBatch(lambda: OnnxDecoder(self.session, self.context_length), max_batch)

    def classify(self, texts: list[str]) -> np.ndarray:
        if self.kind != "classify" or not self.labels:
            return super().classify(texts)
        return self._run(self.classifier.classify, texts)

    def hidden_states(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if self.kind != "embed":
            if self.is_encoder:
                raise UserError(f"{self.graph}: an exported classifier graph gives labels, not "
                                f"embeddings; use --backend torch to embed with this model")
            return super().hidden_states(ids, lengths)
        return self._run(self.encoder.hidden, ids, lengths)
