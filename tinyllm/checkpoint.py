"""Saving and loading model directories (weights in safetensors, never a pickle).

``save_model`` writes ``model.safetensors``, the tokenizer file and ``config.yaml``, each atomically
(temp file + rename), weights first and config last, so a directory with a config always has
complete weights beside it. ``load_model`` reads them back by path or name.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tinyllm import modeldir
from tinyllm.atomic import atomic_path
from tinyllm.config import ConfigError, EncoderConfig, ModelConfig, check_memory, to_dict, write_yaml
from tinyllm.models.decoder import GPT
from tinyllm.models.encoder import Encoder
from tinyllm.modeldir import load_tokenizer  # noqa: F401  (load_model's companion, importable here)
from tinyllm.tokenizer import Tokenizer

Model = GPT | Encoder


def build_model(cfg: ModelConfig | EncoderConfig) -> Model:
    """A freshly initialised model of the architecture the config names (its family)."""
    return Encoder(cfg) if isinstance(cfg, EncoderConfig) else GPT(cfg)


class CheckpointError(ConfigError):
    """Weights that are missing, truncated or of the wrong shape."""


def state_dict_for_save(model: Model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's tensors, contiguous, without the tied LM head (it is the token embedding)."""
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and getattr(model.config, "tie_weights", False):
            continue
        v = v.detach()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[k] = v.contiguous().cpu()
    return sd


def save_weights(model: Model, path: str | Path, dtype: torch.dtype | None = None,
                 metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file(state_dict_for_save(model, dtype), str(tmp), metadata=metadata or {"format": "pt"})


def save_model(model: Model, tokenizer: Tokenizer, out: str | Path, task: str = "lm",
               extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write a complete model directory. ``extra`` adds keys to config.yaml (labels, template, ...).

    ``dtype`` (e.g. torch.float16) stores floating weights smaller; loading gives float32 back.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / modeldir.WEIGHTS, dtype)
    write_meta(out, model.config, tokenizer, task, extra)
    return out


def write_meta(out: str | Path, config: ModelConfig | EncoderConfig, tokenizer: Tokenizer, task: str = "lm",
               extra: dict[str, Any] | None = None) -> None:
    """Write the tokenizer files and config.yaml (last: the weights must already be in place).

    Used by :func:`save_model` and by writers that stream weights to disk (tinyllm.convert.gpt2).
    """
    out = Path(out)
    tokenizer.save(out)
    meta: dict[str, Any] = {
        "format": "tinyllm/1",
        "task": task,
        "model": to_dict(config),
        "tokenizer": tokenizer.spec(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(extra or {})
    write_yaml(out / modeldir.CONFIG, meta)


def load_weights(model: Model, path: str | Path, strict: bool = True) -> None:
    """Copy tensors from a safetensors file into ``model`` one at a time (no second full copy)."""
    path = Path(path)
    own = model.state_dict()
    expected = {k for k in own
                if not (k == "lm_head.weight" and getattr(model.config, "tie_weights", False))}
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing, unexpected = expected - keys, keys - set(own)
            if strict and (missing or unexpected):
                parts = []
                if missing:
                    parts.append(f"missing {', '.join(sorted(missing)[:5])}")
                if unexpected:
                    parts.append(f"unexpected {', '.join(sorted(unexpected)[:5])}")
                raise CheckpointError(f"{path}: weights do not match the config ({'; '.join(parts)})")
            with torch.no_grad():
                for k in sorted(keys & set(own)):
                    t = f.get_tensor(k)
                    if not t.dtype.is_floating_point:
                        raise CheckpointError(f"{path}: tensor {k} is {str(t.dtype).removeprefix('torch.')}, "
                                              f"expected a float type")
                    if t.shape != own[k].shape:
                        raise CheckpointError(f"{path}: tensor {k} has shape {tuple(t.shape)}, "
                                              f"the config needs {tuple(own[k].shape)}")
                    own[k].copy_(t)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file missing") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({e})") from None


def load_model(name_or_path: str | Path | None = None, default: str = modeldir.DEFAULT_LM,
               device: str | torch.device = "cpu") -> Model:
    """Load a model by path or name (a GPT or an Encoder, as its config's family says);
    ``model.meta`` holds its config.yaml, ``model.path`` its folder."""
    info = modeldir.read_info(modeldir.resolve(name_or_path, default))
    check_memory(info.model_config, where=str(info.path / modeldir.CONFIG))
    model = build_model(info.model_config)
    load_weights(model, info.path / modeldir.WEIGHTS)
    model.eval().to(device)
    model.meta = info.meta
    model.path = info.path
    return model

