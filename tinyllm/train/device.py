"""Device and precision choices: ``device: auto`` and ``precision: auto`` resolved by measurement.

On this project's reference CPU (AMD EPYC, AVX2 only: no AVX-512 BF16, no AMX) bf16 autocast
measured slower than fp32 (docs/performance.md, training speed), so ``auto`` picks bf16 on a CPU
only when it has AMX or AVX-512 BF16 instructions, bf16 on CUDA GPUs that support it, fp16 with a grad scaler on older GPUs.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache

import torch

from tinyllm.config import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda" and torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank}")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA GPU is available (use cpu or auto)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("train.device is 'mps' but MPS is not available (use cpu or auto)")
    return dev


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX-BF16 or AVX-512 BF16 (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if device.type == "cpu":
            return "bf16" if cpu_has_fast_bf16() else "fp32"
        return "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA GPU (it uses a grad scaler); "
                          "use bf16 or fp32 on this device")
    return name


def autocast(device: torch.device, precision: str):
    """The autocast context for a precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])
