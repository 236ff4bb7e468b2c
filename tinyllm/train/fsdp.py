"""Sharded data parallelism (``train.fsdp: true`` under torchrun) with PyTorch's FSDP2.

``shard(model)`` calls ``fully_shard`` on every transformer block, then on the whole model: each rank
keeps 1/world_size of every parameter, gradient and AdamW state, and a block's weights are gathered
only while it runs. The checkpoint files stay those of a single process: the full weights and
optimizer state are gathered to rank 0 on the CPU (``full_state``, a collective: every rank calls
it, rank 0 alone gets the tensors) and loaded back from rank 0 (``load_full_state``, broadcast to
the shards). The optimizer state is stored keyed by parameter index, as ``optimizer.state_dict()``
does, so a train state resumes with or without FSDP.
"""
from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Iterator

import torch
import torch.nn as nn

from tinyllm.errors import UserError
from tinyllm.train import ddp
from tinyllm.train.state import load_state

FORWARD_METHODS = ("classify",)  # model methods used in place of forward() (they skip __call__)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every tensor on the meta device (no memory), to be filled with full
    weights for ``save_fn``. Take it before ``shard``."""
    memo: dict[int, Any] = {}
    for t in [*model.parameters(), *model.buffers()]:
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


@contextlib.contextmanager
def filled(skeleton: nn.Module, state: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
    """``skeleton`` (from ``meta_copy``) holding ``state`` for the duration of the block."""
    skeleton.load_state_dict(state, assign=True)
    try:
        yield skeleton
    finally:
        skeleton.to_empty(device="meta")


def shard(model: nn.Module) -> None:
    """``fully_shard`` each block of ``model.blocks`` (if any), then ``model`` itself, in place."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    for block in getattr(model, "blocks", ()):
        fully_shard(block)
    fully_shard(model)
    for name in FORWARD_METHODS:
        if hasattr(model, name):
            register_fsdp_forward_method(model, name)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None = None
               ) -> tuple[dict, dict | None]:
    """(model state dict, optimizer state dict), full and on the CPU on rank 0, empty on the others.

    A collective: every rank must call it at the same point."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    msd = get_model_state_dict(model, options=_options())
    if optimizer is None:
        return msd, None
    osd = get_optimizer_state_dict(model, optimizer, options=_options())
    return msd, (_by_index(osd) if osd else {})


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, msd: dict, osd: dict) -> None:
    """Load rank 0's full state dicts into the shards (the other ranks pass empty dicts). Collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    opts = _options(broadcast_from_rank0=True)
    set_model_state_dict(model, msd, options=opts)
    set_optimizer_state_dict(model, optimizer, _by_name(model, optimizer, osd) if osd else {},
                             options=opts)


def _by_index(osd: dict) -> dict:
    """Parameter-name keys (get_optimizer_state_dict) -> indices in param-group order (state_dict())."""
    index: dict[str, int] = {}
    groups = []
    for g in osd["param_groups"]:
        groups.append({**g, "params": [index.setdefault(name, len(index)) for name in g["params"]]})
    return {"state": {index[k]: v for k, v in osd["state"].items()}, "param_groups": groups}


def _by_name(model: nn.Module, optimizer: torch.optim.Optimizer, osd: dict) -> dict:
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in osd["param_groups"]]
    return {"state": {order[i]: v for i, v in osd["state"].items()}, "param_groups": groups}


def misfit(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> str | None:
    """Why a train state does not fit the (sharded) model and optimizer, or None if it does."""
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}  # DTensors: global shapes
    theirs = {k: tuple(v.shape) for k, v in state["model"].items()}
    if ours.keys() != theirs.keys():
        diff = sorted(ours.keys() ^ theirs.keys())
        return f"parameter names differ: {', '.join(diff[:5])}"
    for k, shape in ours.items():
        if theirs[k] != shape:
            return f"{k} has shape {list(theirs[k])}, the model {list(shape)}"
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g["params"]) for g in state["optimizer"]["param_groups"]] != sizes:
        return "the optimizer's parameter groups differ"
    return None


def load_state_on_rank0(path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        device: torch.device) -> dict:
    """Rank 0 reads the train state (``load_state``: weights only) and checks that it fits; every
    rank gets its small entries (step, RNG, ...), and ``model`` and ``optimizer``: the full dicts on
    rank 0, empty on the others. A bad state is a UserError on every rank."""
    state, small = None, None
    if ddp.info().is_main:
        try:
            state = load_state(path)
            why = misfit(model, optimizer, state)
            if why:
                raise UserError(f"{path}: the train state does not fit this model/optimizer ({why})")
            small = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
        except UserError as e:
            small = {"error": str(e)}
        except (KeyError, TypeError, AttributeError) as e:  # not the dicts a train state holds
            small = {"error": f"{path}: the train state does not fit this model/optimizer "
                              f"({type(e).__name__}: {e})"}
        buf = io.BytesIO()
        torch.save(small, buf)
        small = buf.getvalue()
    small = torch.load(io.BytesIO(ddp.broadcast_bytes(small, device)), weights_only=True)
    if "error" in small:
        raise UserError(small["error"])
    if state is None:
        return {**small, "model": {}, "optimizer": {}}
    return state
