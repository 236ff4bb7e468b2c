"""Exporters (ONNX in :mod:`tinyllm.export.onnx`). This package file imports no torch, so the CLI
can list the choices without paying for it."""

FP32_FILE = "model.onnx"          # the float32 graph written by `tinyllm export-onnx`
INT8_FILE = "model.int8.onnx"     # the graph with quantized weights (--int8)
QUANT_METHODS = ("dynamic", "nbits8", "nbits4")  # ONNX Runtime's quantizers, as `--quant` names them
AUTO_CANDIDATES = ("dynamic", "nbits8")  # what `--quant auto` tries, fastest first (8-bit only)
QUANT_CHOICES = ("auto", *QUANT_METHODS)  # --quant choices; the first is the default
