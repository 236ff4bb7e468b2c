"""Weights in and out: one importer per Hugging Face ``model_type``, one exporter per family.

``tinyllm import DIR_OR_FILE -o OUT`` (:mod:`tinyllm.cli.import_cmd`) reads ``config.json``'s
``model_type`` and runs the importer named in :data:`IMPORTERS` (``.gguf`` files go to
:data:`GGUF_IMPORTER`); ``tinyllm export-hf`` runs the exporter of the model's family from
:data:`EXPORTERS`. A new importer is a module here and one row in each table. The tables name
functions as ``"module:function"``, imported only when used: this file imports no torch (the GPT-2
hub download runs, and fails offline, before torch is loaded).

Every importer is called as ``fn(src, out, dtype=None, overwrite=False, log=None, **options)``
and returns a summary dict; it writes ``out`` holding its run lock.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Callable

from tinyllm.errors import UserError

# config.json model_type -> the function that imports such a checkpoint
IMPORTERS: dict[str, str] = {
    "gpt2": "tinyllm.convert.gpt2:import_gpt2",
    "bert": "tinyllm.convert.bert:import_bert",
    "llama": "tinyllm.convert.llama:import_hf",
    "qwen2": "tinyllm.convert.llama:import_hf",
    "mistral": "tinyllm.convert.llama:import_hf",
}
GGUF_IMPORTER = "tinyllm.convert.gguf:import_gguf"
# a tinyllm model's family -> the function that writes it as a Hugging Face folder:
#   f(name_or_path, out, dtype=None, overwrite=False, log=None) -> summary
EXPORTERS: dict[str, str] = {
    "gpt2": "tinyllm.convert.gpt2:export_hf",
    "bert": "tinyllm.convert.bert:export_hf",
    "llama": "tinyllm.convert.llama:export_hf",
}


class UnsupportedModel(UserError):
    """A checkpoint whose architecture no importer handles (the message names its model_type)."""


def _function(ref: str) -> Callable[..., dict[str, Any]]:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def _supported() -> str:
    return f"{', '.join(IMPORTERS)}, and .gguf files"


def model_type_of(name_or_path: str | Path) -> str:
    """What ``name_or_path`` holds: "gguf" for a .gguf file, else the ``model_type`` of the
    folder's config.json (or of the config.json beside a weights file).

    A lone weights file without config.json is taken for GPT-2 (its importer reads the shape from
    the tensors), and so is a released GPT-2 name (downloaded by that importer)."""
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return "gguf"
    if not p.exists():
        from tinyllm.convert.hub import HUB_REPOS

        if str(name_or_path) in HUB_REPOS:
            return "gpt2"
        raise UserError(f"{name_or_path}: no such file or folder (nor a GPT-2 name that can be "
                        f"downloaded: {', '.join(HUB_REPOS)})")
    cfg = (p if p.is_dir() else p.parent) / "config.json"
    if not cfg.is_file():
        if p.is_file() and p.suffix in (".safetensors", ".bin"):
            return "gpt2"
        if p.is_dir() and any(p.glob("*.safetensors")) or p.is_dir() and any(p.glob("*.bin")):
            return "gpt2"
        raise UserError(f"{name_or_path}: expected a Hugging Face model folder (with config.json) "
                        f"or a .gguf file")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg}:{e.lineno}: invalid JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{cfg}: unreadable ({e})") from None
    kind = data.get("model_type") if isinstance(data, dict) else None
    if not kind:
        raise UserError(f"{cfg}: no model_type, so the architecture is unknown "
                        f"(importable: {_supported()})")
    return str(kind)


def importer(model_type: str, where: str = "config.json") -> Callable[..., dict[str, Any]]:
    """The import function for ``model_type``; :class:`UnsupportedModel` names it otherwise."""
    ref = GGUF_IMPORTER if model_type == "gguf" else IMPORTERS.get(model_type)
    if ref is None:
        raise UnsupportedModel(f"{where}: model_type {model_type!r} cannot be imported; tinyllm "
                               f"imports {_supported()}")
    return _function(ref)


def importer_for(src: str | Path) -> tuple[str, Callable[..., dict[str, Any]]]:
    """(model type, the importer function) for a folder or file."""
    kind = model_type_of(src)
    return kind, importer(kind, str(src))


def import_model(name_or_path: str | Path, out: str | Path, model_type: str | None = None,
                 **options: Any) -> dict[str, Any]:
    """Import a checkpoint with the importer of its ``model_type`` (read from config.json when
    not given); ``options`` go to the importer (dtype, overwrite, log, ...)."""
    kind = model_type or model_type_of(name_or_path)
    src = name_or_path if kind == "gpt2" else Path(name_or_path).expanduser()  # gpt2: hub names too
    summary = importer(kind, str(name_or_path))(src, out, **options)
    return {"model_type": kind, **summary}


def export_hf(name_or_path: str | Path | None, out: str | Path, **options: Any) -> dict[str, Any]:
    """Write a tinyllm model as a Hugging Face folder with its family's exporter."""
    from tinyllm import modeldir

    info = modeldir.find(name_or_path)
    ref = EXPORTERS.get(info.family)
    if ref is None:
        raise UserError(f"{info.path}: a {info.family} model cannot be exported to Hugging Face "
                        f"format (exportable families: {', '.join(EXPORTERS)})")
    return _function(ref)(info.path, out, **options)
