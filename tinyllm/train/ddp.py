"""Data-parallel helpers: torchrun detection, process-group set-up (gloo on CPU, nccl on GPU),
collectives that are no-ops in a single process.

Under ``torchrun`` the environment has RANK, LOCAL_RANK and WORLD_SIZE; ``info()`` reads them (before
or after ``setup``). Only the main process (rank 0) writes files and logs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    launched: bool = False  # started by torchrun (even with one process: DDP/FSDP then run as asked)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.launched or self.world_size > 1


def info() -> DistInfo:
    """This process's place in the job (rank 0 of 1, not launched, outside torchrun)."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)),
                    int(env.get("WORLD_SIZE", 1)),
                    launched="TORCHELASTIC_RUN_ID" in env and "WORLD_SIZE" in env)


def setup(backend: str = "auto", device_type: str = "cpu") -> tuple[DistInfo, bool]:
    """Join the process group when launched by torchrun; returns (info, whether this call joined)."""
    d = info()
    if not d.enabled or dist.is_initialized():
        return d, False
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group(backend=backend)
    return d, True


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (returns ``t``); a no-op in one process."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= dist.get_world_size()
    return t


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_bytes(data: bytes | None, device: torch.device | str = "cpu") -> bytes:
    """Rank 0's ``data`` on every rank (no pickling); returns ``data`` itself in one process."""
    if not active():
        return data or b""
    n = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(n, src=0)
    if int(n.item()) == 0:
        return b""
    buf = torch.zeros(int(n.item()), dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return bytes(buf.cpu().numpy())
