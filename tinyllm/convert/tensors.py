"""Streaming tensor I/O for GPT-2 import and export: read one tensor at a time, write one at a time.

Reading. Hugging Face checkpoints come as ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``) or as ``pytorch_model.bin``, a pickle. Both are memory-mapped, and
the pages of a mapping that have been read stay resident (they count in the process's RSS) until the
mapping is closed. :class:`WeightsReader` therefore re-opens its file after every ``budget`` bytes it
has handed out, so reading a 6 GB gpt2-xl never holds more than about one tensor of it.

A ``.bin`` pickle is read only with ``torch.load(weights_only=True)``: a pickle that tries to build
anything but tensors (for example, to call ``os.system``) is refused before any of it runs.

Writing. :func:`write_safetensors` writes the safetensors format by hand, header first and then each
tensor as it is produced, so an export never holds a second copy of the model.
"""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors import SafetensorError, safe_open

from tinyllm.atomic import atomic_path
from tinyllm.checkpoint import CheckpointError

# safetensors dtype names <-> torch dtypes (the ones a GPT checkpoint can hold)
ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}

DEFAULT_BUDGET = 128 << 20  # bytes handed out before the file is re-opened (releases mapped pages)


class WeightsError(CheckpointError):
    """A weights file that cannot be read: missing, truncated, not a checkpoint, or unsafe."""


class WeightsReader:
    """Tensors by name from one checkpoint (safetensors or .bin, possibly sharded), one at a time.

    ``shapes`` maps every tensor name to (shape, dtype) without reading tensor data. ``get(name)``
    returns the tensor (memory-mapped where possible); use it before the next ``get``.
    """

    def __init__(self, files: Iterable[str | Path], budget: int = DEFAULT_BUDGET):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise WeightsError("no weights files given")
        self.kind = "safetensors" if self.files[0].suffix == ".safetensors" else "bin"
        self.budget = budget
        self.shapes: dict[str, tuple[tuple[int, ...], torch.dtype | None]] = {}
        self.owner: dict[str, Path] = {}
        self._open_path: Path | None = None
        self._handle = None          # safe_open handle or the state dict of a .bin
        self._handed = 0             # bytes handed out since the file was opened
        for f in self.files:
            self._scan(f)

    # ---- opening ---------------------------------------------------------------------------
    def _scan(self, path: Path) -> None:
        if not path.is_file():
            raise WeightsError(f"{path}: weights file missing")
        if self.kind == "safetensors":
            try:
                with safe_open(str(path), framework="pt") as f:
                    for k in f.keys():
                        s = f.get_slice(k)
                        self._add(path, k, tuple(s.get_shape()), ST_DTYPES.get(s.get_dtype()))
            except (SafetensorError, OSError) as e:
                raise WeightsError(f"{path}: not a readable safetensors file, truncated or "
                                   f"corrupt ({e})") from None
        else:
            sd, mapped = load_bin(path, with_mapped=True)
            for k, t in sd.items():
                self._add(path, k, tuple(t.shape), t.dtype)
            if not mapped:
                self.budget = float("inf")  # a legacy pickle is in memory: never read it twice
            self.close()
            self._handle, self._open_path = sd, path  # keep it open for the first get()

    def _add(self, path: Path, name: str, shape: tuple[int, ...], dtype) -> None:
        self.shapes[name] = (shape, dtype)
        self.owner[name] = path

    def _ensure_open(self, path: Path) -> None:
        if self._handle is not None and self._open_path == path and self._handed < self.budget:
            return
        self.close()
        if self.kind == "safetensors":
            self._handle = safe_open(str(path), framework="pt")
        else:
            self._handle = load_bin(path)
        self._open_path, self._handed = path, 0

    def get(self, name: str) -> torch.Tensor:
        path = self.owner[name]
        self._ensure_open(path)
        try:
            t = self._handle.get_tensor(name) if self.kind == "safetensors" else self._handle[name]
        except (SafetensorError, OSError, RuntimeError) as e:
            raise WeightsError(f"{path}: cannot read tensor {name}: truncated or corrupt ({e})"
                               ) from None
        self._handed += t.numel() * t.element_size()
        return t

    def close(self) -> None:
        self._handle, self._open_path = None, None

    def __enter__(self) -> "WeightsReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_bin(path: str | Path, with_mapped: bool = False):
    """A ``pytorch_model.bin`` as a flat {name: tensor}, read safely (weights only, memory-mapped).

    Refuses a pickle that would run code (nothing from it is executed); names truncated files.
    With ``with_mapped``, returns (state dict, whether it is memory-mapped).
    """
    path = Path(path)
    mapped = True
    try:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap can only be used" not in str(e):
                raise
            # the legacy (pre-zip) format cannot be memory-mapped; still weights only
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
            mapped = False
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines()
                       if "GLOBAL" in ln or "Unsupported" in ln), str(e).splitlines()[0])
        raise WeightsError(
            f"{path}: refused: this pickle tries to run code or build objects other than tensors "
            f"({detail}). Nothing from it was run. Use the model's .safetensors file instead, or "
            f"convert the .bin with a tool you trust.") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint, truncated or corrupt "
                           f"({first})") from None
    if isinstance(sd, dict) and len(sd) == 1 and isinstance(next(iter(sd.values())), dict):
        sd = next(iter(sd.values()))  # {"state_dict": {...}} / {"model": {...}} wrappers
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a mapping of tensor names to tensors")
    return (sd, mapped) if with_mapped else sd


def shard_files(index_path: str | Path) -> list[Path]:
    """The files named by a ``*.index.json`` of a sharded checkpoint, in order."""
    index_path = Path(index_path)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        files = list(dict.fromkeys(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise WeightsError(f"{index_path}: not a valid shard index ({e})") from None
    return [index_path.parent / f for f in files]


# ---- writing -----------------------------------------------------------------------------------
def stacked_producer(reader, plan: dict[str, tuple[list[str], torch.dtype]]
                     ) -> Callable[[str], torch.Tensor]:
    """``produce(name)`` for :func:`write_safetensors`: the source tensors ``plan[name]`` names,
    read from ``reader`` as the plan's dtype and concatenated along the first axis (one tensor
    is returned as it is): how importers join Hugging Face's separate q/k/v into one."""
    def produce(name: str) -> torch.Tensor:
        keys, want = plan[name]
        parts = [reader.get(k).to(want) for k in keys]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    return produce


def write_safetensors(path: str | Path, entries: list[tuple[str, tuple[int, ...], torch.dtype]],
                      produce: Callable[[str], torch.Tensor],
                      metadata: dict[str, str] | None = None) -> int:
    """Write a safetensors file atomically, one tensor at a time; returns the bytes written.

    ``entries`` lists (name, shape, dtype) in file order; ``produce(name)`` returns each tensor just
    before it is written (it is checked against its entry). Format: 8-byte little-endian header
    length, JSON header (padded with spaces to 8 bytes), then the tensors' bytes back to back.
    """
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape, dtype in entries:
        n = _numel(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": ST_NAMES[dtype], "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, shape, dtype in entries:
            t = produce(name)
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise ValueError(f"{name}: produced {tuple(t.shape)} {t.dtype}, "
                                 f"header says {tuple(shape)} {dtype}")
            if t.numel():
                f.write(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
            del t
    return 8 + len(head) + offset


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
