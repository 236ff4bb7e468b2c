"""Finding and describing model directories, without torch.

A model directory holds ``config.yaml`` (model shape, tokenizer spec, task, labels, template,
provenance), ``model.safetensors`` and optionally a tokenizer file, ``model.onnx`` /
``model.int8.onnx`` and ``train_state/``. Models are found by path, then by name in
``$TINYLLM_HOME/models``, then in the folders of ``$TINYLLM_PATH`` (``:``-separated), then among
the bundled ones.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyllm.config import ConfigError, ModelConfig, from_dict, read_yaml
from tinyllm.tokenizer import Tokenizer, from_spec

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


PATH_ENV = "TINYLLM_PATH"          # ":"-separated extra folders of models, searched by name


def extra_folders() -> list[Path]:
    """The folders of ``$TINYLLM_PATH`` (``:``-separated, like ``$PATH``; empty entries skipped)."""
    return [Path(p).expanduser() for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]


def search_path(extra: list[str | Path] | tuple = ()) -> list[tuple[str, Path]]:
    """(source, folder) in the order names are looked up: ``$TINYLLM_HOME/models`` ("user"),
    the folders of ``extra`` and ``$TINYLLM_PATH`` (the source is the folder), the bundled ones."""
    folders = [Path(p).expanduser() for p in extra] + extra_folders()
    return [("user", models_home()), *((str(f), f) for f in folders), ("bundled", BUNDLED_MODELS)]


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
    raise ModelNotFound(not_found_message(ref))


def not_found_message(ref: str) -> str:
    """Where a model name was looked for, and the closest names there are."""
    import difflib

    names = sorted({m.name for m in list_models()})
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5)
    where = ", ".join([str(models_home()), *(f"{f} (${PATH_ENV})" for f in extra_folders())])
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return (f"model {ref!r} not found as a path, by name in {where}, or bundled{hint} "
            f"(known: {', '.join(names) or 'none'}; `tinyllm models` lists them)")


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
    def model_config(self) -> ModelConfig:
        return from_dict(ModelConfig, self.meta.get("model"), f"{self.path / CONFIG}: model")

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
    def onnx_label(self) -> str:
        """The graphs as people are shown them (:func:`onnx_label`)."""
        return onnx_label(self.onnx_graphs)

    @property
    def has_onnx(self) -> bool:
        return "fp32" in self.onnx_graphs

    @property
    def has_int8(self) -> bool:
        return "int8" in self.onnx_graphs

    def load_tokenizer(self) -> Tokenizer:
        """The tokenizer ``config.yaml`` names (its files are read from this directory)."""
        return from_spec(self.meta.get("tokenizer"), self.path)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def summary(self) -> dict[str, Any]:
        cfg = self.model_config
        return {
            "name": self.name, "path": str(self.path), "source": self.source, "task": self.task,
            "tokenizer": self.tokenizer, "params": cfg.num_params(),
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
            "context_length": cfg.context_length, "vocab_size": cfg.vocab_size,
            "flops_per_token": cfg.flops_per_token(), "labels": self.meta.get("labels"),
            "onnx_graphs": self.onnx_graphs, "onnx": bool(self.onnx_graphs), "int8": self.has_int8,
            "size_bytes": self.size_bytes(),
        }


def onnx_graphs(path: str | Path) -> list[str]:
    """Which ONNX graphs the model directory ``path`` holds ("int8", "fp32"), preferred first."""
    return [p for p, name in ONNX_GRAPHS.items() if (Path(path) / name).is_file()]


def onnx_label(graphs: list[str]) -> str:
    """Graphs as :func:`onnx_graphs` lists them, as people are shown them: "int8 + fp32", "int8",
    "fp32" or "-" (`tinyllm models`, the TUI)."""
    return " + ".join(graphs) or "-"


def read_info(path: str | Path, source: str = "path") -> ModelInfo:
    path = Path(path)
    meta = read_yaml(path / CONFIG)
    return ModelInfo(path=path, source=source, meta=meta)


def source_of(path: str | Path) -> str:
    """"user", "bundled" or the ``$TINYLLM_PATH`` folder when ``path`` lies in a search-path
    root, else "path"."""
    path = Path(path).resolve()
    for source, root in search_path():
        if root.resolve() in path.parents:
            return source
    return "path"


def find(name_or_path: str | Path | None, default: str = DEFAULT_LM) -> ModelInfo:
    """:func:`resolve` then :func:`read_info`, with the right ``source``."""
    path = resolve(name_or_path, default)
    return read_info(path, source_of(path))


def load_tokenizer(name_or_path: str | Path | None = None, default: str = DEFAULT_LM) -> Tokenizer:
    """The tokenizer of a model directory or name; ``gpt2`` by name when it is not a model."""
    if name_or_path == "gpt2":
        return from_spec("gpt2")
    return read_info(resolve(name_or_path, default)).load_tokenizer()


def list_models(extra: list[str | Path] | tuple = ()) -> list[ModelInfo]:
    """Every model found by name: in ``$TINYLLM_HOME/models``, the folders of ``extra`` and of
    ``$TINYLLM_PATH``, and the bundled ones, in that order (a name is listed once, where
    :func:`resolve` finds it)."""
    out, seen = [], set()
    for source, root in search_path(extra):
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
