"""Model and training configuration: dataclasses, presets, YAML in and out.

This module imports no torch, so the ONNX runtime path and the CLI can read a model directory's
``config.yaml`` without paying for it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tinyllm.errors import UserError


class ConfigError(UserError):
    """A configuration file or ``--set`` override is wrong (the message names which and why)."""


@dataclass
class ModelConfig:
    vocab_size: int = 50257        # number of token ids (GPT-2: 50,257)
    context_length: int = 1024     # longest sequence the position embedding covers (GPT-2: n_positions)
    n_layer: int = 12              # transformer blocks
    n_head: int = 12               # attention heads per block; n_embd must divide by it
    n_embd: int = 768              # width of the residual stream
    dropout: float = 0.0           # dropout on embeddings, attention and residual branches (training only)
    bias: bool = True              # biases in Linear layers and LayerNorms (GPT-2: True)
    qkv_bias: bool = True          # bias on the query/key/value projection (GPT-2: True)
    layer_norm_eps: float = 1e-5   # LayerNorm epsilon (GPT-2: 1e-5)
    gelu: str = "tanh"             # "tanh" (GPT-2's approximation) or "exact"
    tie_weights: bool = True       # LM head shares the token embedding matrix
    n_classes: int = 0             # > 0 adds a classification head with this many outputs
    pooling: str = "last"          # classification pooling: "last" non-padding token or "mean"

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.gelu not in ("tanh", "exact"):
            raise ConfigError(f"gelu must be 'tanh' or 'exact', not {self.gelu!r}")
        if self.pooling not in ("last", "mean"):
            raise ConfigError(f"pooling must be 'last' or 'mean', not {self.pooling!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape (tied LM head counted once)."""
        C, L, V, T = self.n_embd, self.n_layer, self.vocab_size, self.context_length
        b = 1 if self.bias else 0
        qkv_b = 1 if self.qkv_bias else 0
        per_block = (
            2 * C * (1 + b)                     # two LayerNorms
            + C * 3 * C + 3 * C * qkv_b         # qkv projection
            + C * C + C * b                     # attention output projection
            + C * 4 * C + 4 * C * b             # MLP up
            + 4 * C * C + C * b                 # MLP down
        )
        n = L * per_block + C * (1 + b)         # blocks + final LayerNorm
        if include_embeddings:
            n += V * C + T * C
        if not self.tie_weights:
            n += V * C
        if self.n_classes:
            n += C * self.n_classes + self.n_classes
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, 6N + 12*L*H*Q*T (PaLM appendix B); forward only is a third."""
        T = seq_len or self.context_length
        # non-embedding weights plus the LM head matmul (which counts, tied or not)
        n = self.num_params(include_embeddings=False) + self.vocab_size * self.n_embd
        if not self.tie_weights:
            n -= self.vocab_size * self.n_embd  # already counted by num_params
        return 6 * n + 12 * self.n_layer * self.n_head * self.head_size * T


PRESETS: dict[str, dict[str, Any]] = {
    # exact GPT-2 shapes (OpenAI release)
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768),
    # small shapes that train on a laptop CPU
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, context_length=128),
    "small": dict(n_layer=4, n_head=4, n_embd=256, context_length=256),
    "medium": dict(n_layer=6, n_head=6, n_embd=384, context_length=256),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A ModelConfig from a preset name, with field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def from_dict(cls, data: dict[str, Any] | None, where: str = "config"):
    """Build dataclass ``cls`` from a mapping, naming unknown keys and wrong types clearly."""
    data = dict(data or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        return cls(**data)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def write_yaml(path: str | Path, data: dict[str, Any]) -> None:
    """Write YAML atomically (temp file + rename)."""
    from tinyllm.atomic import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], parsed value); the value is read as YAML (numbers, bools, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``--set key=value`` items to a nested mapping (in place; also returned)."""
    for item in items:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k} is not a section")
        node[keys[-1]] = value
    return data


__all__ = [
    "ConfigError", "ModelConfig", "PRESETS", "preset", "from_dict", "to_dict",
    "read_yaml", "write_yaml", "parse_override", "apply_overrides", "field",
]
