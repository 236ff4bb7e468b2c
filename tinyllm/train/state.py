"""The train state file: everything exact resume needs, saved with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only: no pickled objects).
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinyllm.atomic import atomic_path
from tinyllm.errors import UserError

STATE_DIR = "train_state"
STATE_FILE = "state.pt"


def state_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / STATE_DIR / STATE_FILE


def capture_rng() -> dict[str, Any]:
    """Every RNG the training step may draw from (torch CPU and CUDA, numpy's global, Python's)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": list(random.getstate()[1]) + [random.getstate()[0]],
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    py = state["python"]
    random.setstate((py[-1], tuple(py[:-1]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash leaves the previous state file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no train state to resume from") from None
    except pickle.UnpicklingError:  # torch's message advises weights_only=False: never do that
        raise UserError(f"{path}: not a tinyllm train state: it holds pickled Python objects, "
                        f"which tinyllm never loads (a train state holds tensors, numbers and "
                        f"strings only); start over with --overwrite") from None
    except Exception as e:  # truncated file, or something that is not a weights-only state
        raise UserError(f"{path}: unreadable train state ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
