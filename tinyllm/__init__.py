"""tinyllm: build, pretrain, import, fine-tune, chat with and serve small GPT models from a terminal.

``import tinyllm`` stays light: torch is imported only when a torch-backed name is first used, so the
ONNX runtime path (``tinyllm.runtime``) and the CLI start fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "GPT": "tinyllm.models.decoder",
    "KVCache": "tinyllm.models.decoder",
    "ModelConfig": "tinyllm.config",
    "load_model": "tinyllm.checkpoint",
    "save_model": "tinyllm.checkpoint",
    "load_tokenizer": "tinyllm.modeldir",
    "generate": "tinyllm.engines.torch_engine",
    "generate_text": "tinyllm.engines.torch_engine",
    "SamplingConfig": "tinyllm.runtime.sampling",
}


def lazy_attributes(module: str, names: dict[str, str]):
    """A module ``__getattr__`` that imports ``names[attr]`` (a module path) when ``attr`` is first
    used, so importing the package stays light."""
    def __getattr__(name: str):
        if name in names:
            import importlib

            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["__version__", *_LAZY]
