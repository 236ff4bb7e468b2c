"""The run lock: one writer per folder, and the other commands told who it is.

A command that writes a model or run folder (``tinyllm train``, ``finetune``, ``export-onnx``,
``export-hf``, ``import-gpt2``) holds the folder's lock while it writes; a second writer, a
deletion (the TUI's Models screen) or an ``--overwrite`` of a held folder is refused with exit
code 2, naming the holder::

    runs/x is being written by pid 4242 (`tinyllm train --preset tiny --out runs/x`, since 14:05);
    wait for it to finish or stop it, then try again

The lock is an exclusive ``fcntl.flock`` on ``.tinyllm.lock`` in the folder, held for the writer's
life; the file also holds a JSON record (pid, host, command line, start time) for that message.
The operating system releases a flock when its process dies, so a lock left by a crash (kill -9) is
simply taken over; so is one whose recorded process is gone although the lock is still held (an
orphaned child that inherited the descriptor). The holder removes the file when it releases the
lock, and the folder too if it created it and left it empty.

The lock is re-entrant in the thread that holds it (``train_lm`` holds it, and the Trainer it
builds takes it again), and refused to other threads of the same process. Under DDP, rank 0 holds
it for the job.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tinyllm.atomic import LOCK_FILE
from tinyllm.errors import UserError

_RETRY_SECONDS = 2.0   # how long a refused acquire retries while the record looks stale

try:
    import fcntl
except ImportError:  # not on a POSIX system: no locking (documented in docs/safety.md)
    fcntl = None


class FolderLocked(UserError):
    """A folder another process (or thread) is writing; ``holder`` says who."""

    def __init__(self, message: str, holder: "LockInfo"):
        super().__init__(message)
        self.holder = holder


@dataclass
class LockInfo:
    """Who holds a folder's lock (from the record in the lock file)."""
    path: Path                 # the locked folder
    pid: int | None            # the holder's process id (None: the record is not written yet)
    command: str = ""          # its command line, as people typed it
    started: float = 0.0       # when it took the lock (seconds since the epoch)
    host: str = ""             # the machine it runs on

    def describe(self) -> str:
        """``pid 4242 (`tinyllm train ...`, since 14:05)``."""
        if self.pid is None:
            return "another process"
        parts = [f"`{self.command}`"] if self.command else []
        if self.started:
            t = time.localtime(self.started)
            fmt = "%H:%M" if time.strftime("%Y%m%d", t) == time.strftime("%Y%m%d") else "%Y-%m-%d %H:%M"
            parts.append(f"since {time.strftime(fmt, t)}")
        if self.host and self.host != socket.gethostname():
            parts.append(f"on {self.host}")
        return f"pid {self.pid}" + (f" ({', '.join(parts)})" if parts else "")


def command_line(argv: list[str] | None = None) -> str:
    """The running command as people type it: ``tinyllm train --out runs/x`` (``python -m
    tinyllm`` and the entry point's full path both become ``tinyllm``), cut to 200 characters."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    prog = Path(argv[0]).name
    if prog == "__main__.py":
        prog = Path(argv[0]).parent.name or "python"
    text = " ".join([prog, *argv[1:]])
    return text if len(text) <= 200 else text[:199] + "…"


# ---- this process's locks -----------------------------------------------------------------------
@dataclass
class _Held:
    fd: int
    count: int
    thread: int
    info: LockInfo
    created_dir: bool


_HELD: dict[Path, _Held] = {}
_GUARD = threading.Lock()


def _key(directory: str | Path) -> Path:
    return Path(os.path.abspath(Path(directory).expanduser()))


def _read_record(fd: int, path: Path) -> LockInfo:
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        data = {}
    pid = data.get("pid")
    return LockInfo(path=path, pid=pid if isinstance(pid, int) else None,
                    command=str(data.get("command") or ""),
                    started=float(data.get("started") or 0.0), host=str(data.get("host") or ""))


def _alive(info: LockInfo) -> bool:
    """Whether the recorded holder still runs (unknown, or on another host: assume it does)."""
    if info.pid is None or (info.host and info.host != socket.gethostname()):
        return True
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def holder(directory: str | Path) -> LockInfo | None:
    """Who is writing ``directory`` now, or None when nobody is (a stale lock file is nobody)."""
    key = _key(directory)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            return held.info
    if fcntl is None:
        return None
    path = key / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    try:
        if _try_flock(fd, fcntl.LOCK_SH):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        info = _read_record(fd, key)
        return info if _alive(info) else None
    finally:
        os.close(fd)


def _message(info: LockInfo, action: str) -> str:
    return f"{info.path} is being written by {info.describe()}; {action}"


WAIT_ADVICE = "wait for it to finish or stop it, then try again"


def ensure_free(directory: str | Path, action: str = WAIT_ADVICE) -> None:
    """Raise :class:`FolderLocked` (exit 2) when someone is writing ``directory``.

    ``action`` ends the message: what the user can do (``it cannot be deleted while it runs``)."""
    info = holder(directory)
    if info is not None:
        raise FolderLocked(_message(info, action), info)


class RunLock:
    """A held lock (from :func:`acquire`); ``release()`` or leave the ``with`` block to let go."""

    def __init__(self, key: Path):
        self.path = key
        self._released = False

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _GUARD:
            held = _HELD.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _HELD[self.path]
        lock_path = self.path / LOCK_FILE
        if _same_file(held.fd, lock_path):
            try:
                lock_path.unlink()
            except OSError:
                pass
        os.close(held.fd)  # releases the flock
        if held.created_dir:
            try:
                self.path.rmdir()  # only when empty: nothing else was written
            except OSError:
                pass


def acquire(directory: str | Path, command: str | None = None, action: str = WAIT_ADVICE
            ) -> RunLock:
    """Take ``directory``'s lock (creating the folder if needed) and return it, held until
    ``release()`` or the end of a ``with`` block; :class:`FolderLocked` when another process or
    thread holds it. ``command`` is recorded for the message others see (default: this process's
    command line)."""
    key = _key(directory)
    me = threading.get_ident()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            if held.thread != me:
                raise FolderLocked(_message(held.info, action), held.info)
            held.count += 1
            return RunLock(key)
    info = LockInfo(path=key, pid=os.getpid(), command=command or command_line(),
                    started=time.time(), host=socket.gethostname())
    if fcntl is None:
        with _GUARD:
            _HELD[key] = _Held(-1, 1, me, info, False)
        return RunLock(key)
    created = not key.exists()
    if key.exists() and not key.is_dir():
        raise UserError(f"{key}: is a file, not a directory (a folder to write a model or run into)")
    try:
        key.mkdir(parents=True, exist_ok=True)
        fd = _lock_file(key, action)
    except OSError as e:  # a read-only folder (an installed package's bundled models), a full disk
        raise UserError(f"{key}: cannot write here ({e.strerror or e})") from None
    os.ftruncate(fd, 0)
    record = {"pid": info.pid, "host": info.host, "command": info.command, "started": info.started}
    os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
    with _GUARD:
        _HELD[key] = _Held(fd, 1, me, info, created)
    return RunLock(key)


def _lock_file(key: Path, action: str) -> int:
    """An open descriptor of ``key/.tinyllm.lock`` with the flock held."""
    path = key / LOCK_FILE
    deadline = time.monotonic() + _RETRY_SECONDS
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if _try_flock(fd, fcntl.LOCK_EX):
            if _same_file(fd, path):  # not a file its holder unlinked while we waited
                return fd
            os.close(fd)
            continue
        info = _read_record(fd, key)
        if info.pid is not None and _alive(info):
            os.close(fd)
            raise FolderLocked(_message(info, action), info)
        if time.monotonic() < deadline:  # a reader's brief look, or a record being written
            os.close(fd)
            time.sleep(0.02)
            continue
        if info.pid is not None and _same_file(fd, path):
            # held, but by no live process we know of: an orphan kept the descriptor; take over
            # with a fresh file (the old one keeps its lock, nobody looks at it again)
            path.unlink(missing_ok=True)
            os.close(fd)
            deadline = time.monotonic() + _RETRY_SECONDS
            continue
        os.close(fd)
        raise FolderLocked(_message(info, action), info)


__all__ = ["LOCK_FILE", "FolderLocked", "LockInfo", "RunLock", "acquire", "command_line",
           "ensure_free", "holder"]
