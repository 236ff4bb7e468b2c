"""The torch-free runtime: numpy + onnxruntime generator and classifier, and the shared sampling code.

Nothing in this package may import torch (a test checks ``sys.modules`` in a subprocess).
"""
