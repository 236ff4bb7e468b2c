"""Exporters (ONNX in :mod:`tinyllm.export.onnx`). This package file imports no torch, so the CLI
can list the choices without paying for it."""

from tinyllm.modeldir import FP32_FILE, INT8_FILE  # noqa: F401  (the graphs' file names)

QUANT_METHODS = ("dynamic", "nbits8", "nbits4")  # ONNX Runtime's quantizers, as `--quant` names them
# what `--quant auto` tries for a language model with text to check on, fastest first on a CPU
# (docs/performance.md: 4-bit decodes ~1.25x faster than dynamic int8, when it keeps the bar)
AUTO_CANDIDATES = ("nbits4", "dynamic", "nbits8")
# encoders, and models with no text to check on, keep to 8 bits
AUTO_8BIT = ("dynamic", "nbits8")
QUANT_CHOICES = ("auto", *QUANT_METHODS)  # --quant choices; the first is the default
