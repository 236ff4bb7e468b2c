"""The training loop (one for pretraining and fine-tuning) and its parts; see docs/training-internals.md.

``from tinyllm.train import Trainer`` imports torch; ``tinyllm.train.runconfig`` does not.
"""
from __future__ import annotations

_LAZY = {
    "Trainer": "tinyllm.train.trainer",
    "lr_at": "tinyllm.train.schedule",
    "train_lm": "tinyllm.train.pretrain",
    "load_run": "tinyllm.train.runconfig",
    "RunConfig": "tinyllm.train.runconfig",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tinyllm.train' has no attribute {name!r}")


__all__ = list(_LAZY)
