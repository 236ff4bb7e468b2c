"""Finding and describing model directories, without torch.

A model directory holds ``config.yaml`` (model shape, tokenizer spec, task, labels, template,
provenance), ``model.safetensors`` and optionally a tokenizer file, ``model.onnx`` /
``model.int8.onnx`` and ``train_state/``. Models are found by path, then by name in
``$TINYLLM_HOME/models``, then among the bundled ones.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllm.config import ENCODER_FAMILIES, ConfigError, EncoderConfig, ModelConfig, model_config, read_yaml

BUNDLED_MODELS = Path(__file__).parent / "bundled" / "models"
DEFAULT_LM = "shakespeare-char"
DEFAULT_CLASSIFIER = "sms-spam"
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
FP32_FILE = "model.onnx"          # the float32 graph written by `tinyllm export-onnx`
INT8_FILE = "model.int8.onnx"     # the graph with quantized weights (--int8)
ONNX_GRAPHS = {"int8": INT8_FILE, "fp32": FP32_FILE}  # precision -> file, preferred first


class ModelNotFound(ConfigError):
    """No model directory by that path or name."""


def tinyllm_home() -> Path:
    """``$TINYLLM_HOME`` or ``~/.local/share/tinyllm``."""
    home = os.environ.get("TINYLLM_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "tinyllm"


def models_home() -> Path:
    return tinyllm_home() / "models"


def search_path() -> list[tuple[str, Path]]:
    return [("user", models_home()), ("bundled", BUNDLED_MODELS)]


def resolve(name_or_path: str | Path | None, default: str = DEFAULT_LM) -> Path:
    """The directory of a model given by path or name (None: the default bundled model)."""
    ref = str(name_or_path) if name_or_path else default
    p = Path(ref).expanduser()
    if (p / CONFIG).is_file():
        return p
    if p.exists():
        raise ModelNotFound(f"{p}: not a model directory (no {CONFIG})")
    if "/" not in ref and os.sep not in ref:
        for _, root in search_path():
            if (root / ref / CONFIG).is_file():
                return root / ref
    known = ", ".join(m.name for m in list_models()) or "none"
    raise ModelNotFound(f"model {ref!r} not found as a path, in {models_home()}, or bundled "
                        f"(known: {known})")


@dataclass
class ModelInfo:
    """What ``config.yaml`` says about a model, read without loading weights."""
    path: Path
    source: str                      # "user", "bundled" or "path"
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_config(self) -> ModelConfig | EncoderConfig:
        return model_config(self.meta.get("model"), f"{self.path / CONFIG}: model")

    @property
    def family(self) -> str:
        """The architecture's family: "gpt2" (the default), "bert", ..."""
        return (self.meta.get("model") or {}).get("family") or "gpt2"

    @property
    def is_encoder(self) -> bool:
        return self.family in ENCODER_FAMILIES

    @property
    def task(self) -> str:
        return self.meta.get("task", "lm")

    @property
    def tokenizer(self) -> str:
        return (self.meta.get("tokenizer") or {}).get("type", "gpt2")

    @property
    def onnx_graphs(self) -> list[str]:
        """The exported graphs this directory holds, by precision ("int8", "fp32"), preferred
        first: the one answer `tinyllm models`, `tinyllm info` and the TUI show."""
        return onnx_graphs(self.path)

    @property
    def has_onnx(self) -> bool:
        return "fp32" in self.onnx_graphs

    @property
    def has_int8(self) -> bool:
        return "int8" in self.onnx_graphs

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def summary(self) -> dict[str, Any]:
        cfg = self.model_config
        return {
            "name": self.name, "path": str(self.path), "source": self.source, "task": self.task,
            "family": self.family,
            "tokenizer": self.tokenizer, "params": cfg.num_params(),
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
            "context_length": cfg.context_length, "vocab_size": cfg.vocab_size,
            "flops_per_token": cfg.flops_per_token(), "labels": self.meta.get("labels"),
            "onnx": self.has_onnx, "int8": self.has_int8, "size_bytes": self.size_bytes(),
        }


def onnx_graphs(path: str | Path) -> list[str]:
    """Which ONNX graphs the model directory ``path`` holds ("int8", "fp32"), preferred first."""
    return [p for p, name in ONNX_GRAPHS.items() if (Path(path) / name).is_file()]


def read_info(path: str | Path, source: str = "path") -> ModelInfo:
    path = Path(path)
    meta = read_yaml(path / CONFIG)
    return ModelInfo(path=path, source=source, meta=meta)


def source_of(path: str | Path) -> str:
    """"user" or "bundled" when ``path`` lies in a search-path root, else "path"."""
    path = Path(path).resolve()
    for source, root in search_path():
        if root.resolve() in path.parents:
            return source
    return "path"


def find(name_or_path: str | Path | None, default: str = DEFAULT_LM) -> ModelInfo:
    """:func:`resolve` then :func:`read_info`, with the right ``source``."""
    path = resolve(name_or_path, default)
    return read_info(path, source_of(path))


def list_models() -> list[ModelInfo]:
    """Every model in ``$TINYLLM_HOME/models`` and the bundled ones (user models first)."""
    out, seen = [], set()
    for source, root in search_path():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if (d / CONFIG).is_file() and d.name not in seen:
                seen.add(d.name)
                try:
                    out.append(read_info(d, source))
                except ConfigError:
                    continue
    return out
