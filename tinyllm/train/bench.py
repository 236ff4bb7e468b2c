"""Training speed of the real loop: ms per step, tokens/s and model FLOPs utilisation (MFU).

``bench_run(run)`` builds the run's tokenizer, token file, model and batches as ``tinyllm train``
does, drives the :class:`~tinyllm.train.trainer.Trainer` one optimizer step at a time (so autocast,
torch.compile, fused AdamW, clipping, accumulation and DDP are the loop's own), leaves out the warm-up
steps (the first one pays for torch.compile) and reports the median step. FLOPs per token are PaLM's
``6N + 12*L*H*Q*T`` (:meth:`ModelConfig.flops_per_token`); the machine's peak is estimated from the
CPU (cores x GHz x FLOPs per cycle) where that is known.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# FP32 FLOPs per cycle per core from the widest FMA the CPU flags show (two FMA pipes, as on
# Zen 2-4 and Intel cores since Haswell): AVX2+FMA: 2 pipes x 8 lanes x 2 = 32; AVX-512: 64.
FLOPS_PER_CYCLE = (("avx512f", 64), ("avx2", 32))


@dataclass
class Peak:
    flops: float | None   # peak FLOP/s of the devices this process uses (None: unknown)
    how: str              # how it was estimated, or why it is unknown


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (Linux); {} elsewhere."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _cpu_ghz(info: dict[str, str]) -> float | None:
    """Maximum clock if the kernel exposes it, else the current clock from /proc/cpuinfo."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6
    except (OSError, ValueError):
        pass
    try:
        return float(info["cpu MHz"]) / 1000
    except (KeyError, ValueError):
        return None


def cpu_cores() -> int:
    """Physical cores this process may run on (logical CPUs / hardware threads per core)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    info = _cpuinfo()
    try:
        per_core = int(info["siblings"]) // int(info["cpu cores"])
    except (KeyError, ValueError, ZeroDivisionError):
        per_core = 1
    return max(1, logical // max(1, per_core))


# Dense matrix peaks of GPUs by the vendors' datasheets, TFLOP/s (bf16/fp16 tensor cores; fp32 is
# TF32-free). Matched against torch.cuda.get_device_name(); $TINYLLM_PEAK_TFLOPS overrides.
GPU_PEAK_TFLOPS = {  # name fragment: (bf16/fp16, fp32)
    "H200": (989.4, 66.9), "H100": (989.4, 66.9), "A100": (312.0, 19.5), "L40S": (362.1, 91.6),
    "A10G": (70.0, 31.2), "L4": (121.0, 30.3), "RTX 4090": (165.2, 82.6), "V100": (125.0, 15.7),
}


def gpu_peak(device: torch.device, precision: str) -> Peak:
    """Dense peak FLOP/s of one GPU at ``precision`` from :data:`GPU_PEAK_TFLOPS` (or the env)."""
    import os

    env = os.environ.get("TINYLLM_PEAK_TFLOPS")
    if env:
        return Peak(float(env) * 1e12, f"$TINYLLM_PEAK_TFLOPS = {env}")
    name = torch.cuda.get_device_name(device)
    for fragment, (half, fp32) in GPU_PEAK_TFLOPS.items():
        if fragment in name:
            tflops = fp32 if precision == "fp32" else half
            return Peak(tflops * 1e12, f"{name}: {tflops} TFLOP/s dense {precision} (datasheet)")
    return Peak(None, f"unknown for {name} (set $TINYLLM_PEAK_TFLOPS)")


def peak_flops(device: torch.device | str = "cpu", threads: int | None = None,
               precision: str = "fp32") -> Peak:
    """Peak FLOP/s of the device: for a CPU, FP32 of the cores used (``threads`` of them, at most
    the cores there are); for a GPU, its datasheet dense peak at ``precision`` (times the GPUs of
    the run is for the caller).

    Unknown for CPUs whose flags or clock this cannot read and for GPUs not in the table.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return gpu_peak(device, precision)
    if device.type != "cpu":
        return Peak(None, f"unknown for {device.type} devices")
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    per_cycle = next((n for flag, n in FLOPS_PER_CYCLE if flag in flags and "fma" in flags), None)
    ghz = _cpu_ghz(info)
    if per_cycle is None or ghz is None:
        return Peak(None, "unknown (no AVX2/AVX-512 FMA flags or clock in /proc/cpuinfo)")
    cores = min(cpu_cores(), threads or torch.get_num_threads())
    isa = "AVX-512" if per_cycle == 64 else "AVX2"
    return Peak(cores * ghz * 1e9 * per_cycle,
                f"{cores} cores x {ghz:.2f} GHz x {per_cycle} FP32 FLOPs/cycle ({isa} FMA)")


def machine() -> dict:
    """What the numbers were measured on: CPU model, cores, threads, load average."""
    info = _cpuinfo()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": info.get("model name", "unknown"), "nproc": os.cpu_count(), "cores": cpu_cores(),
            "threads": torch.get_num_threads(), "load_avg_1m": round(load[0], 2),
            "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


class LoopStepper:
    """One optimizer step of the real Trainer per call to :meth:`step` (returns its seconds)."""

    def __init__(self, model, cfg, batches: Callable, out_dir: str | Path,
                 loss_fn: Callable | None = None):
        from tinyllm.models.loss import lm_loss
        from tinyllm.train.trainer import Trainer

        self.trainer = Trainer(model, cfg, batches, loss_fn or lm_loss, out_dir)
        self.n = 0
        self.loss = float("nan")

    def step(self) -> float:
        t0 = time.perf_counter()
        self.loss, _, self.tokens = self.trainer._train_step(self.n)
        self.n += 1
        return time.perf_counter() - t0

    def close(self) -> None:
        self.trainer._close()


def summarize(times: list[float], tokens_per_step: int, flops_per_token: int, peak: Peak) -> dict:
    """Median step time -> ms/step, tokens/s, achieved GFLOP/s and MFU (None when the peak is unknown)."""
    med = statistics.median(times)
    tps = tokens_per_step / med
    achieved = tps * flops_per_token
    return {"ms_per_step": round(med * 1000, 3), "ms_per_step_min": round(min(times) * 1000, 3),
            "tokens_per_s": round(tps, 1), "gflops": round(achieved / 1e9, 4),
            "mfu": round(achieved / peak.flops, 6) if peak.flops else None}


def random_batches(span, cfg, seq_len: int, name: str = "corpus"):
    """``batches(step, micro)`` of random ``seq_len`` windows of a token span (this rank's share)."""
    from tinyllm.data.batching import RandomSampler, StepBatches
    from tinyllm.data.text import SlidingWindowDataset
    from tinyllm.train import ddp

    ds = SlidingWindowDataset(span, seq_len, 1, name)
    dist = ddp.info()
    return StepBatches(RandomSampler(len(ds), cfg.seed), ds.batch, cfg.batch_size, cfg.grad_accum,
                       dist.rank, dist.world_size)


def bench_run(run, steps: int = 10, warmup: int = 2, log: Callable[[str], None] | None = None,
              progress: Callable | None = None) -> dict:
    """Time ``steps`` optimizer steps (after ``warmup`` untimed ones) of ``run`` (a RunConfig).

    Uses the run's data for real batches (tokenised once, cached) but writes nothing to ``run.out``:
    the Trainer's files go to a temporary directory. ``log`` gets a line per step, ``progress``
    shows reading the corpus (both silent by default).
    """
    from tinyllm.data.text import prepare_tokens, split_tokens
    from tinyllm.models.decoder import GPT
    from tinyllm.train import ddp
    from tinyllm.train.pretrain import build_tokenizer

    cfg = run.train
    log = log or (lambda s: None)
    tok = build_tokenizer(cfg, progress)
    tokens = prepare_tokens(cfg.data, tok, cfg.cache_dir, progress=progress)
    torch.manual_seed(cfg.seed)
    model_cfg = run.model_config(vocab_size=max(int(run.model.get("vocab_size") or 0), tok.vocab_size))
    model = GPT(model_cfg)
    seq_len = cfg.seq_len or model_cfg.context_length
    train_span, _ = split_tokens(tokens, cfg.val_fraction)
    batches = random_batches(train_span, cfg, seq_len, str(cfg.data))
    dist = ddp.info()
    with tempfile.TemporaryDirectory(prefix="tinyllm-bench-") as tmp:
        stepper = LoopStepper(model, cfg, batches, tmp)
        try:
            t = stepper.trainer
            first = []
            for i in range(warmup):
                first.append(stepper.step())
                log(f"warm-up step {i + 1}/{warmup}: {first[-1]:.2f} s")
            times = []
            for i in range(steps):
                times.append(stepper.step())
                log(f"step {i + 1}/{steps}: {times[-1] * 1000:.0f} ms, loss {stepper.loss:.3f}")
            tokens_per_step = stepper.tokens
            precision, fused, device = t.precision, t.fused, t.device
        finally:
            stepper.close()
    fpt = model_cfg.flops_per_token(seq_len)
    peak = peak_flops(device, precision=precision)
    if peak.flops and device.type == "cuda" and dist.world_size > 1:
        peak = Peak(peak.flops * dist.world_size, f"{peak.how} x {dist.world_size} GPUs")
    return {
        "model": {k: getattr(model_cfg, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size")},
        "params": model.num_params(), "seq_len": seq_len, "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum, "world_size": dist.world_size, "tokens_per_step": tokens_per_step,
        "device": str(device), "precision": precision, "compile": cfg.compile, "fused_adamw": fused,
        "warmup_steps": warmup, "steps": steps,
        "first_step_s": round(first[0], 2) if first else None,
        **summarize(times, tokens_per_step, fpt, peak),
        "flops_per_token": fpt, "peak_gflops": round(peak.flops / 1e9, 1) if peak.flops else None,
        "peak_how": peak.how, "machine": machine(),
    }


__all__ = ["Peak", "peak_flops", "cpu_cores", "machine", "LoopStepper", "summarize", "random_batches",
           "bench_run"]
