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


ENCODER_FAMILIES = ("bert",)  # `family:` values that name an encoder (tinyllm.models.encoder)


@dataclass
class EncoderConfig:
    """The shape of a BERT-style encoder (``family: bert`` under ``model:`` in config.yaml).

    Field names shared with :class:`ModelConfig` mean the same thing, so code that reads a shape
    (``n_layer``, ``n_embd``, ``context_length``, ``num_params()``...) works on either."""
    family: str = "bert"           # the architecture: "bert" (tinyllm.models.encoder.Encoder)
    vocab_size: int = 30522        # WordPiece ids (bert-base-uncased: 30,522)
    context_length: int = 512      # positions the position embedding covers (max_position_embeddings)
    type_vocab_size: int = 2       # token types (segments A and B of a sentence pair)
    n_layer: int = 12              # transformer blocks (num_hidden_layers)
    n_head: int = 12               # attention heads per block; n_embd must divide by it
    n_embd: int = 768              # width of the hidden states (hidden_size)
    intermediate_size: int = 0     # MLP width; 0 = 4 * n_embd
    dropout: float = 0.1           # dropout on embeddings, attention and residual branches (training only)
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (BERT: 1e-12)
    gelu: str = "exact"            # "exact" (erf, BERT's "gelu") or "tanh"
    pooler: bool = True            # BERT's pooler: tanh(Linear(hidden of [CLS]))
    mlm_head: bool = True          # masked-LM head: Linear + GELU + LayerNorm, decoder tied to the word embedding
    n_classes: int = 0             # > 0 adds a classification head with this many outputs
    pooling: str = "cls"           # classification pooling: "cls" ([CLS] through the pooler) or "mean"

    def __post_init__(self) -> None:
        if self.family not in ENCODER_FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(ENCODER_FAMILIES)} for an encoder, "
                              f"not {self.family!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.gelu not in ("tanh", "exact"):
            raise ConfigError(f"gelu must be 'tanh' or 'exact', not {self.gelu!r}")
        if self.pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean' for an encoder, not {self.pooling!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_size(self) -> int:
        """The MLP's hidden width (``intermediate_size``, or 4 * n_embd when that is 0)."""
        return self.intermediate_size or 4 * self.n_embd

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape (the MLM decoder shares the word embedding)."""
        C, L, V, T, inner = self.n_embd, self.n_layer, self.vocab_size, self.context_length, self.mlp_size
        per_block = (
            3 * (C * C + C)                     # query, key, value
            + C * C + C                         # attention output projection
            + 2 * C                             # LayerNorm after attention
            + C * inner + inner                 # MLP up
            + inner * C + C                     # MLP down
            + 2 * C                             # LayerNorm after the MLP
        )
        n = L * per_block + 2 * C               # blocks + the embedding LayerNorm
        if include_embeddings:
            n += V * C + T * C + self.type_vocab_size * C
        if self.pooler:
            n += C * C + C
        if self.mlm_head:
            n += C * C + C + 2 * C + V          # transform, its LayerNorm, the decoder's bias
        if self.n_classes:
            n += C * self.n_classes + self.n_classes
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, 6N + 12*L*H*Q*T as for decoders (N: the non-embedding weights,
        plus the MLM decoder's matmul when the model has that head)."""
        T = seq_len or self.context_length
        n = self.num_params(include_embeddings=False)
        if self.mlm_head:
            n += self.vocab_size * self.n_embd
        return 6 * n + 12 * self.n_layer * self.n_head * self.head_size * T


def config_class(family: str | None) -> type:
    """The config dataclass of a model family: EncoderConfig for encoders, else ModelConfig."""
    return EncoderConfig if family in ENCODER_FAMILIES else ModelConfig


def model_config(data: dict[str, Any] | None, where: str = "config") -> "ModelConfig | EncoderConfig":
    """The config a ``model:`` mapping describes, its class chosen by ``family`` (a decoder when
    the mapping has none)."""
    data = dict(data or {})
    return from_dict(config_class(data.get("family")), data, where)


def is_encoder(cfg: Any) -> bool:
    """Whether a model config (or a model holding one) is an encoder's."""
    return isinstance(getattr(cfg, "config", cfg), EncoderConfig)


@dataclass
class TrainConfig:
    """How to train: data, optimisation, evaluation, checkpoints, hardware.

    See docs/training-internals.md for what each field does inside the loop."""
    # data (LM pretraining; fine-tuning tasks read their own data and may ignore these)
    data: str | None = None        # UTF-8 text corpus; relative paths in a YAML resolve against its folder
    objective: str = "lm"          # lm: next-token prediction (decoders) | mlm: masked tokens (encoders)
    tokenizer: str = "char"        # gpt2 | char | bpe | wordpiece (trained on the corpus, saved with the
                                   # model; mlm runs default to wordpiece)
    bpe_vocab_size: int = 4096     # vocabulary size when training a bpe or wordpiece tokenizer
    init_from: str | None = None   # start from this model (path or name) instead of random init
    seq_len: int = 0               # tokens per training window (max_length); 0 = the model's context_length
    stride: int = 0                # distance between window starts for sampling="windows"; 0 = seq_len
    sampling: str = "random"       # "random": windows at random offsets | "windows": shuffled sliding windows
    val_fraction: float = 0.1      # the last fraction of the tokens is the validation split
    cache_dir: str | None = None   # token-file cache; None = $TINYLLM_HOME/cache/tokens
    # optimisation
    batch_size: int = 16           # sequences per micro-batch per process
    grad_accum: int = 1            # micro-batches per optimizer step (global batch = batch*accum*world)
    max_steps: int = 1000          # optimizer steps in total (a resumed run continues up to this)
    max_time_minutes: float = 0.0  # also stop after this much wall time (evals included; 0 = no limit);
                                   # the lr decay then ends at whichever of the two limits comes first
    lr: float = 1e-3               # peak learning rate
    min_lr: float = 1e-4           # learning rate at the end of the decay
    warmup_steps: int | None = None  # linear warmup from 0; None = min(100, max_steps // 10)
    schedule: str = "cosine"       # decay after warmup: cosine | linear | constant
    weight_decay: float = 0.1      # AdamW weight decay, on matrices and embeddings only
    beta1: float = 0.9             # AdamW beta1
    beta2: float = 0.95            # AdamW beta2
    eps: float = 1e-8              # AdamW epsilon
    grad_clip: float = 1.0         # clip the global gradient norm to this (0 = off)
    # evaluation, logging, checkpoints
    eval_every: int = 200          # evaluate every N steps and at the end (0 = only at the end)
    eval_batches: int = 20         # micro-batches per split per evaluation
    log_every: int = 1             # a "step" line in metrics.jsonl every N steps
    save_every: int = 0            # write last/ + train_state every N steps (0 = at each eval)
    best_metric: str = "val_loss"  # eval metric that chooses the best checkpoint
    best_mode: str = "min"         # "min" or "max" for best_metric
    sample_prompt: str = "\n"      # prompt of the sample generated at each eval
    sample_tokens: int = 200       # tokens sampled at each eval (0 = no sample)
    # speed and hardware
    device: str = "auto"           # auto (cuda if available, else cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"        # auto | fp32 | bf16 | fp16 (autocast; fp16 adds a grad scaler, GPU)
    compile: bool = False          # torch.compile the model + loss
    fused: bool | None = None      # fused AdamW; None = when the device supports it
    num_threads: int = 0           # torch intra-op threads (0 = torch's default)
    ddp_backend: str = "auto"      # under torchrun: auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    fsdp: bool = False             # under torchrun: shard the model with FSDP2 instead of DDP
    seed: int = 1337               # seeds init, window sampling and dropout
    out: str | None = None         # output model directory; None = $TINYLLM_HOME/models/<run name>

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML reads 3e-4 as a string (YAML 1.1 wants 3.0e-4): accept it
            v = getattr(self, f.name)
            if f.type == "float" and isinstance(v, (str, int)) and not isinstance(v, bool):
                try:
                    setattr(self, f.name, float(v))
                except ValueError:
                    raise ConfigError(f"train.{f.name} must be a number, not {v!r}") from None
        choices = {"tokenizer": ("gpt2", "char", "bpe", "wordpiece"), "objective": ("lm", "mlm"),
                   "sampling": ("random", "windows"),
                   "schedule": ("cosine", "linear", "constant"), "best_mode": ("min", "max"),
                   "precision": ("auto", "fp32", "bf16", "fp16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name} must be one of {', '.join(allowed)}, "
                                  f"not {getattr(self, name)!r}")
        positive = ("batch_size", "grad_accum", "max_steps", "eval_batches", "log_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be a positive integer, not {getattr(self, name)!r}")
        for name in ("seq_len", "stride", "eval_every", "save_every", "sample_tokens", "num_threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, not {getattr(self, name)!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction must be in [0, 1), not {self.val_fraction!r}")
        if self.max_time_minutes < 0:
            raise ConfigError(f"train.max_time_minutes must be >= 0, not {self.max_time_minutes!r}")
        if not self.lr > 0 or self.min_lr < 0:
            raise ConfigError("train.lr must be > 0 and train.min_lr >= 0")
        if not isinstance(self.fsdp, bool):
            raise ConfigError(f"train.fsdp must be true or false, not {self.fsdp!r}")

    @property
    def warmup(self) -> int:
        """Warmup steps in effect (``warmup_steps``, or the default for ``max_steps``)."""
        if self.warmup_steps is None:
            return min(100, self.max_steps // 10)
        return min(self.warmup_steps, self.max_steps)


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
    # encoders (family: bert), the released shapes with bert-base-uncased's 30,522 WordPiece ids
    "bert-base": dict(family="bert", n_layer=12, n_head=12, n_embd=768),
    "bert-large": dict(family="bert", n_layer=24, n_head=16, n_embd=1024),
    "minilm-l6": dict(family="bert", n_layer=6, n_head=12, n_embd=384),  # all-MiniLM-L6-v2
    "bert-tiny": dict(family="bert", n_layer=2, n_head=2, n_embd=128),   # google/bert_uncased_L-2_H-128_A-2
}


def preset(name: str, **overrides: Any) -> "ModelConfig | EncoderConfig":
    """A model config from a preset name, with field overrides (an EncoderConfig for encoders)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return model_config({**PRESETS[name], **overrides}, f"preset {name}")


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
        # libyaml's safe loader when PyYAML has it: same safe subset, about 10x faster to parse
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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
    "ConfigError", "ModelConfig", "EncoderConfig", "ENCODER_FAMILIES", "config_class", "model_config",
    "is_encoder", "TrainConfig", "PRESETS", "preset", "from_dict", "to_dict",
    "read_yaml", "write_yaml", "parse_override", "apply_overrides", "field",
]
