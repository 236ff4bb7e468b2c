"""ONNX Runtime sessions with the options this project measured as fastest on a CPU.

See docs/performance.md (ONNX session options) for the measurements behind the defaults: every graph optimisation
(ORT_ENABLE_ALL), sequential execution, one intra-op thread per core, and worker threads that
spin while they wait for work only when the cores they would run on are idle. Spinning made
batch-1 decoding 11 % (int8) to 27 % (4-bit) faster on an idle machine, but when other jobs hold
the cores, spinning threads fight them and decoding ran 1.8x slower; so a decoding session spins
when, over a short sample of ``/proc/stat``, other processes leave its cores free (``spin=None``,
what the decoders ask for; every other session, running whole batches, does not spin).
``TINYLLM_ORT_THREADS`` overrides the thread count, ``TINYLLM_ORT_SPIN=0|1`` the spinning.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import onnxruntime as ort

from tinyllm.errors import UserError

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def default_threads() -> int:
    env = os.environ.get("TINYLLM_ORT_THREADS")
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise UserError(f"TINYLLM_ORT_THREADS={env!r}: expected a whole number") from None
    try:  # one per core this process may run on
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


SPIN_SAMPLE_S = 0.1        # how long the CPU counters are sampled before deciding to spin
SPIN_FREE_MARGIN = 0.3     # cores of other work tolerated on the cores a session would use
_spin_seen: tuple[float, float] | None = None   # (monotonic time, cores busy) of the last sample


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs, from /proc/stat; None where it is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)     # idle + iowait
    total = sum(fields[:8])                                       # guest time is in user already
    return total - idle, total


def cores_busy(sample_s: float = SPIN_SAMPLE_S) -> float | None:
    """How many cores other processes keep busy right now (this one sleeps while it samples);
    None where the counters cannot be read. Reused for 10 seconds."""
    global _spin_seen
    now = time.monotonic()
    if _spin_seen is not None and now - _spin_seen[0] < 10:
        return _spin_seen[1]
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(sample_s)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return None
    busy = (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)
    _spin_seen = (now, busy)
    return busy


def allow_spinning(threads: int) -> bool:
    """Whether ``threads`` intra-op threads should spin while waiting: ``TINYLLM_ORT_SPIN`` when
    set, else only if the cores they need are free of other work (docs/onnx.md)."""
    env = os.environ.get("TINYLLM_ORT_SPIN")
    if env is not None and env.strip() != "":
        if env.strip() not in ("0", "1"):
            raise UserError(f"TINYLLM_ORT_SPIN={env!r}: expected 0 or 1")
        return env.strip() == "1"
    busy = cores_busy()
    if busy is None:
        return False
    cores = os.cpu_count() or 1
    return busy < SPIN_FREE_MARGIN + max(0, cores - (threads or cores))


def session_options(threads: int | None = None, level: str = "all",
                    spin: bool | None = False) -> ort.SessionOptions:
    """ONNX Runtime options for a CPU session: ``threads`` intra-op threads (None: one per core,
    :func:`default_threads`), the graph optimisation ``level``, and whether idle threads ``spin``
    (None: :func:`allow_spinning` decides)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = _LEVELS[level]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = default_threads() if threads is None else threads
    so.inter_op_num_threads = 1
    if spin is None:
        spin = allow_spinning(so.intra_op_num_threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3  # errors only: ORT's warnings are not for end users
    return so


def open_session(path: str | Path, threads: int | None = None, level: str = "all",
                 spin: bool | None = False) -> ort.InferenceSession:
    """An InferenceSession on the CPU (options: :func:`session_options`); a bad or missing file is
    a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file; run `tinyllm export-onnx {path.parent}`")
    try:
        return ort.InferenceSession(str(path), session_options(threads, level, spin),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise UserError(f"{path}: not a loadable ONNX graph ({str(e).strip().splitlines()[0]})"
                        ) from None
