"""Learning-rate schedule: linear warmup, then cosine (or linear, or constant) decay to ``min_lr``.

A pure function of the step, so a resumed run needs no scheduler state.
"""
from __future__ import annotations

import math

from tinyllm.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig, wall: float | None = None) -> float:
    """Learning rate for optimizer step ``step`` (0-based: the step about to be taken).

    With a time budget (``cfg.max_time_minutes``) and ``wall`` (seconds the run has used), the decay
    progresses by whichever is further along, steps or time, so it ends at the deadline.
    """
    warmup = cfg.warmup
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, cfg.max_steps - warmup)
    if cfg.max_time_minutes and wall is not None:
        progress = max(progress, wall / (cfg.max_time_minutes * 60))
    progress = min(1.0, progress)
    if cfg.schedule == "linear":
        return cfg.lr - progress * (cfg.lr - cfg.min_lr)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)
