"""Weights in and out. ``IMPORTERS`` maps a Hugging Face ``model_type`` (config.json) to the
function that imports such a folder; ``.gguf`` files go to :func:`tinyllm.convert.gguf.import_gguf`.

Every importer is called as ``fn(src, out, dtype=None, overwrite=False, log=None)`` and returns a
summary dict; ``tinyllm import`` (:mod:`tinyllm.cli.import_cmd`) dispatches through
:func:`importer_for`. Importers are named as "module:function" so choosing one imports only it.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Callable

from tinyllm.errors import UserError

IMPORTERS: dict[str, str] = {
    "gpt2": "tinyllm.convert.gpt2:import_gpt2",
    "llama": "tinyllm.convert.llama:import_hf",
    "qwen2": "tinyllm.convert.llama:import_hf",
    "mistral": "tinyllm.convert.llama:import_hf",
}
GGUF_IMPORTER = "tinyllm.convert.gguf:import_gguf"


def _load(target: str) -> Callable:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def model_type_of(src: str | Path) -> str:
    """What ``src`` holds: "gguf" for a .gguf file, else the folder's config.json model_type."""
    from tinyllm.convert.hub import HUB_REPOS

    p = Path(src).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return "gguf"
    if str(src) in HUB_REPOS and not p.exists():
        return "gpt2"  # a released GPT-2 name: downloaded when online
    config = (p if p.is_dir() else p.parent) / "config.json"
    if not config.is_file():
        if p.is_file() and p.suffix in (".safetensors", ".bin"):
            return "gpt2"  # a lone GPT-2 weights file: its importer reads the shape from it
        raise UserError(f"{src}: expected a Hugging Face model folder (with config.json) or a "
                        f".gguf file")
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, OSError, AttributeError) as e:
        raise UserError(f"{config}: not a readable config.json ({e})") from None
    if kind not in IMPORTERS:
        raise UserError(f"{config}: model_type {kind!r} cannot be imported (supported: "
                        f"{', '.join(IMPORTERS)}, and .gguf files)")
    return kind


def importer_for(src: str | Path) -> tuple[str, Callable]:
    """(model type, the importer function) for a folder or file."""
    kind = model_type_of(src)
    return kind, _load(GGUF_IMPORTER if kind == "gguf" else IMPORTERS[kind])


def export_hf(name_or_path, out, dtype=None, overwrite: bool = False, log=None) -> dict:
    """Export a model directory as a Hugging Face folder: GPT-2, or a Llama-family model."""
    from tinyllm import modeldir

    info = modeldir.find(name_or_path)
    if info.model_config.family == "llama":
        return _load("tinyllm.convert.llama:export_hf")(info, out, dtype, overwrite, log)
    return _load("tinyllm.convert.gpt2:export_hf")(info.path, out, dtype, overwrite, log)
