"""Exporters (ONNX in :mod:`tinyllm.export.onnx`). This package file imports no torch, so the CLI
can list the choices without paying for it."""

from tinyllm.modeldir import FP32_FILE, INT8_FILE  # noqa: F401  (the graphs' file names)

QUANT_METHODS = ("dynamic", "nbits8", "nbits4")  # ONNX Runtime's quantizers, as `--quant` names them
AUTO_CANDIDATES = ("dynamic", "nbits8")  # what `--quant auto` tries, fastest first (8-bit only)
QUANT_CHOICES = ("auto", *QUANT_METHODS)  # --quant choices; the first is the default
