"""The training loop (one for pretraining and fine-tuning) and its parts; see docs/training-internals.md.

``from tinyllm.train import Trainer`` imports torch; ``tinyllm.train.runconfig`` does not.
"""
from __future__ import annotations

from tinyllm import lazy_attributes

_LAZY = {
    "Trainer": "tinyllm.train.trainer",
    "lr_at": "tinyllm.train.schedule",
    "train_lm": "tinyllm.train.pretrain",
    "load_run": "tinyllm.train.runconfig",
    "RunConfig": "tinyllm.train.runconfig",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = list(_LAZY)
