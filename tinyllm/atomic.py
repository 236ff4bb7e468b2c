"""Files in and out, safely: atomic writes, reads that refuse what is not a regular file, and a
full disk reported as such.

* **Atomic writes**: write to a temporary file in the same folder (``.NAME.XXXXXXXX.tmp``), fsync,
  then rename over the target. A reader (or a crash) sees either the old file or the new one, never
  half of one; on an error the temporary file is removed. A crash (kill -9) can leave one behind:
  :func:`remove_stale_temps` clears them at the next run or export in that folder.
* **Reads**: :func:`open_regular` opens a file for reading and refuses a directory, a device
  (``/dev/zero``), a pipe or a socket, so no reader can grow without bound on an endless stream;
  :func:`read_bytes_limited` reads a whole file up to a size limit.
* **A full disk**: a write that fails for want of space raises :class:`tinyllm.errors.DiskFull`
  ("no space left on DEVICE writing FILE"), whichever library failed (Python's own ``OSError``,
  safetensors' or torch's errors that drop the errno).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import IO, BinaryIO, Iterator

from tinyllm.errors import DataError, DiskFull
from tinyllm.units import human_bytes


def _umask_mode() -> int:
    """The mode a plain ``open()`` gives a new file (mkstemp's temp files are 0600)."""
    return _FILE_MODE


def _read_umask() -> int:
    mask = os.umask(0)  # read once at import, before any threads start
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()
# what mkstemp(prefix=".NAME.", suffix=".tmp") names: ".model.safetensors.k3j_x9a1.tmp"
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
EXPORT_TEMP_PREFIX = ".export-onnx-"   # tinyllm.export.onnx's working folder inside the output
LOCK_FILE = ".tinyllm.lock"            # a folder's run lock (tinyllm.runlock)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_LOW_SPACE = 1 << 20  # a failed write with less than this left on its file system: a full disk


# ---- full disk ----------------------------------------------------------------------------------
def _mount_point(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def device_name(path: str | Path) -> str:
    """The file system ``path`` is on, for messages: ``tmpfs (/mnt/small)``, ``/dev/sda1 (/)``."""
    mount = _mount_point(Path(path))
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1] == str(mount):
                    return f"{parts[0]} ({mount})"
    except OSError:
        pass
    return str(mount)


def _space_left(path: Path) -> int | None:
    try:
        st = os.statvfs(_mount_point(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_disk_full(error: BaseException, path: str | Path) -> bool:
    """Whether ``error``, raised while writing ``path``, means its file system is full.

    An ``OSError`` says so by its errno; safetensors and torch wrap the cause in their own errors
    (``SafetensorError ... StorageFull``, ``RuntimeError: ... file write failed``), so for any
    other error the file system itself is asked how much room is left."""
    if isinstance(error, DiskFull):
        return True
    if isinstance(error, OSError) and error.errno in NO_SPACE:
        return True
    text = str(error)
    if "No space left" in text or "StorageFull" in text or "Disk quota" in text:
        return True
    if isinstance(error, (OSError, RuntimeError)) or type(error).__name__ == "SafetensorError":
        left = _space_left(Path(path))
        return left is not None and left < _LOW_SPACE
    return False


def disk_full(path: str | Path) -> DiskFull:
    """The error for a write of ``path`` that ran out of space."""
    return DiskFull(f"no space left on {device_name(Path(path).parent)} writing {path}",
                    path=Path(path))


@contextlib.contextmanager
def reporting_full_disk(path: str | Path) -> Iterator[None]:
    """Context: an error of a full disk while writing ``path`` becomes :class:`DiskFull`."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if is_disk_full(e, path):
            raise disk_full(path) from None
        raise


# ---- atomic writes ------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with reporting_full_disk(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _umask_mode())
    try:
        with reporting_full_disk(path):
            with os.fdopen(fd, mode, encoding=encoding) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def temp_path_for(path: str | Path) -> Path:
    """A fresh temp path beside ``path`` for writers that need a file name (safetensors, onnx)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with reporting_full_disk(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write by name; it is renamed over ``path`` on success, removed on error."""
    tmp = temp_path_for(path)
    try:
        with reporting_full_disk(path):  # asked before the temp file frees its space
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # writers may have recreated the file (0600 again)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_tool_file(name: str) -> bool:
    """Whether a file name is one of tinyllm's own bookkeeping files (a temp file, an export's
    working folder, the run lock) rather than part of a model or a user's file."""
    return bool(TEMP_NAME.match(name)) or name.startswith(EXPORT_TEMP_PREFIX) or name == LOCK_FILE


def remove_stale_temps(directory: str | Path, subfolders: tuple[str, ...] = ("last", "train_state")
                       ) -> list[Path]:
    """Remove what interrupted writes of tinyllm left in ``directory`` (and its ``subfolders``):
    temp files of this module (``.NAME.XXXXXXXX.tmp``) and export working folders
    (``.export-onnx-*``). Call it only while holding the folder's run lock
    (:mod:`tinyllm.runlock`), so no live writer's files are taken. Returns what was removed."""
    removed = []
    for d in (Path(directory), *(Path(directory) / s for s in subfolders)):
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.is_file() and not p.is_symlink() and TEMP_NAME.match(p.name):
                p.unlink(missing_ok=True)
                removed.append(p)
            elif d == Path(directory) and p.name.startswith(EXPORT_TEMP_PREFIX) and p.is_dir() \
                    and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


# ---- reads --------------------------------------------------------------------------------------
def open_regular(path: str | Path, what: str = "data file") -> BinaryIO:
    """``path`` opened for reading in binary, refusing what is not a regular file.

    ``what`` names the expected kind in the message (``is a directory, not a data file``)."""
    path = Path(path)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a {what}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: is a directory, not a {what}")
        raise DataError(f"{path}: not a regular file (a device, pipe or socket), not a {what}")
    return os.fdopen(fd, "rb")


def read_bytes_limited(path: str | Path, limit: int, what: str = "file") -> bytes:
    """A whole regular file as bytes, refused (:class:`DataError`) when larger than ``limit``."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(limit + 1) if size <= limit else b""
    if size > limit or len(raw) > limit:
        raise DataError(f"{path}: {human_bytes(max(size, len(raw)))}, larger than the "
                        f"{human_bytes(limit)} a {what} may be")
    return raw
