"""AdamW with weight decay on matrices and embeddings only (not on biases or LayerNorm gains)."""
from __future__ import annotations

import inspect

import torch

from tinyllm.config import TrainConfig

# Fused AdamW on this project's reference CPU (2-core AMD EPYC, AVX2) measured slower or equal to the
# default foreach implementation for the small models trained here (docs/performance.md, "Training
# speed"), so on CPU `fused: null` means off; on CUDA it means on.
FUSED_DEFAULT = {"cuda": True, "cpu": False}


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: tensors with 2+ dimensions decay, the rest do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fused_supported(device_type: str) -> bool:
    return "fused" in inspect.signature(torch.optim.AdamW).parameters and device_type in ("cuda", "cpu")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str
                   ) -> tuple[torch.optim.AdamW, bool]:
    """The AdamW optimizer and whether it is the fused implementation."""
    fused = cfg.fused if cfg.fused is not None else FUSED_DEFAULT.get(device_type, False)
    fused = bool(fused) and fused_supported(device_type)
    kwargs = {"fused": True} if fused else {}
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **kwargs)
    return opt, fused
