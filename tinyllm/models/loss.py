"""The language-model loss, written once: next-token cross-entropy, its mean over a data set, and
perplexity. Pretraining, the ``lm`` and ``instruct`` tasks, the training benchmark and
:meth:`GPT.loss <tinyllm.models.decoder.GPT.loss>` all use these.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100          # a target with this value is not scored (padding, masked prompts)
MAX_LOG_PERPLEXITY = 700.0   # exp(700) ~ 1e304 is still a finite float; a diverged run reports it


def lm_loss(model, batch: tuple[torch.Tensor, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of ``model(x)`` against ``y``, for a batch ``(x, y)`` of shape (B, T)
    each; targets of :data:`IGNORE_INDEX` are left out.

    ``reduction`` "mean" (per scored target; the training loss, the Trainer's ``loss_fn`` signature)
    or "sum" (for means over many batches, :func:`mean_lm_loss`).
    """
    x, y = batch
    logits = model(x)  # (B, T, vocab)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


@torch.no_grad()
def mean_lm_loss(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The loss per scored target token over every batch ``(x, y)`` (token-weighted, not
    batch-weighted); NaN when no target is scored. The batches move to the model's device."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        total += lm_loss(model, (x, y), reduction="sum").item()
        count += int((y != IGNORE_INDEX).sum())
    return total / count if count else float("nan")


def perplexity(loss: float) -> float:
    """``exp(loss)``, clamped at ``exp(MAX_LOG_PERPLEXITY)`` so it stays a finite number."""
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))


__all__ = ["IGNORE_INDEX", "lm_loss", "mean_lm_loss", "perplexity"]
