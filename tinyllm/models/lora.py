"""Which parameters train when fine-tuning: freezing (``--train-layers``) and LoRA (``--lora-rank``).

LoRA (Hu et al., 2021) keeps a Linear's weight W frozen and learns a low-rank update
``W + (alpha / r) * B @ A`` with A (r, in) and B (out, r); B starts at zero, so training starts from
the original model. :func:`merge_lora` folds the update into W and puts plain Linears back, so a
saved model is an ordinary GPT (no LoRA code needed to load or export it).
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from tinyllm.errors import UserError

TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")  # the Linears of a block that get LoRA


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank = rank
        self.scale = (alpha if alpha is not None else rank) / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def delta(self) -> torch.Tensor:
        """The weight update (out, in) that the adapter adds."""
        return (self.lora_B @ self.lora_A) * self.scale

    def merged(self) -> nn.Linear:
        """A plain Linear with the update folded into its weight."""
        base = self.base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(base.weight + self.delta())
            if base.bias is not None:
                out.bias.copy_(base.bias)
        if getattr(base, "residual_scale", False):
            out.residual_scale = True
        return out


def parse_train_layers(spec: str | None, n_layer: int) -> int:
    """``all`` -> n_layer; ``last-N`` -> N (0 <= N <= n_layer); ``head`` -> 0 (no block trains)."""
    spec = (spec or "all").strip().lower()
    if spec == "all":
        return n_layer
    if spec == "head":
        return 0
    m = re.fullmatch(r"last-(\d+)", spec)
    if not m:
        raise UserError(f"--train-layers {spec!r}: expected 'all', 'head' or 'last-N' (e.g. last-2)")
    n = int(m.group(1))
    if not 0 <= n <= n_layer:
        raise UserError(f"--train-layers {spec}: the model has {n_layer} layers")
    return n


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


def add_lora(model: nn.Module, rank: int, blocks: list[int], alpha: float | None = None) -> list[str]:
    """Wrap the target Linears of ``model.blocks[i]`` for i in ``blocks``; the names wrapped."""
    if rank < 1:
        raise UserError(f"--lora-rank must be at least 1, got {rank}")
    names = []
    for i in blocks:
        for t in TARGETS:
            name = f"blocks.{i}.{t}"
            lin = _get(model, name)
            if isinstance(lin, nn.Linear):
                _set(model, name, LoRALinear(lin, rank, alpha))
                names.append(name)
    return names


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its Linear (in place); how many were merged."""
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in wrapped:
        _set(model, name, _get(model, name).merged())
    return len(wrapped)


def set_trainable(model: nn.Module, train_layers: str | None = "all", lora_rank: int = 0,
                  lora_alpha: float | None = None) -> dict[str, int]:
    """Freeze what should not train; with ``lora_rank`` add adapters to the trainable blocks.

    Trainable: the last N blocks (all of them for ``all``, none for ``head``), the final
    LayerNorm (decoders), the pooler (encoders) and the classification head. ``all`` without LoRA
    trains the embeddings too. With LoRA the blocks' weights stay frozen and only the adapters
    (plus ln_f or the pooler, and the head) learn.
    Returns parameter counts: {"trainable", "total", "lora_modules"}.
    """
    n_layer = len(model.blocks)
    n = parse_train_layers(train_layers, n_layer)
    selected = list(range(n_layer - n, n_layer))
    full = n == n_layer and not lora_rank
    for p in model.parameters():
        p.requires_grad_(full)
    if not full:
        if not lora_rank:
            for i in selected:
                model.blocks[i].requires_grad_(True)
        for name in ("ln_f", "pooler"):  # what sits between the blocks and the head
            if getattr(model, name, None) is not None:
                getattr(model, name).requires_grad_(True)
    if getattr(model, "cls_head", None) is not None:
        model.cls_head.requires_grad_(True)
    wrapped = add_lora(model, lora_rank, selected, lora_alpha) if lora_rank else []
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "lora_modules": len(wrapped)}
