"""Model and training configuration: dataclasses, presets, YAML in and out.

This module imports no torch, so the ONNX runtime path and the CLI can read a model directory's
``config.yaml`` without paying for it.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tinyllm.errors import UserError
from tinyllm.units import human, human_bytes

MAX_YAML_BYTES = 16 << 20   # the largest YAML file read (a config is a few kB)
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ConfigError(UserError):
    """A configuration file or ``--set`` override is wrong (the message names which and why)."""


# ---- the one validation of config values --------------------------------------------------------
_KIND_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false",
               "str": "a string", "None": "null"}


def check_fields(obj, section: str) -> None:
    """Check every field of dataclass ``obj`` against its annotation (``int``, ``float``,
    ``bool``, ``str``, ``X | None``): whole numbers are not floats or strings (``2.5``, ``"two"``,
    ``[1, 2]`` are refused), booleans are ``true``/``false`` (not ``maybe``), numbers are finite.
    A float field also takes a string YAML 1.1 reads for a number (``3e-4``) and an integer.
    Raises :class:`ConfigError` naming ``section.field``. Fields of other types are left alone."""
    for f in fields(obj):
        kinds = [k.strip() for k in str(f.type).split("|")]
        if not set(kinds) <= set(_KIND_WORDS):
            continue
        v = getattr(obj, f.name)
        name = f"{section}.{f.name}"
        if v is None and "None" in kinds:
            continue
        if isinstance(v, bool):
            if "bool" in kinds:
                continue
        elif isinstance(v, int) and "int" in kinds:
            continue
        elif "float" in kinds and isinstance(v, (int, float, str)):
            try:
                number = float(v)
            except ValueError:
                number = None
            if number is not None:
                if not math.isfinite(number):
                    raise ConfigError(f"{name} must be a finite number, not {v!r}")
                setattr(obj, f.name, number)
                continue
        elif isinstance(v, str) and "str" in kinds:
            continue
        want = " or ".join(_KIND_WORDS[k] for k in kinds)
        raise ConfigError(f"{name} must be {want}, not {v!r}")


def available_memory() -> int | None:
    """Bytes of memory this process can still take: the system's available memory, or what is
    left under its cgroup's limit when that is smaller; None when neither can be read."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit, encoding="ascii") as f:
                text = f.read().strip()
            if text == "max":
                continue
            with open(usage, encoding="ascii") as f:
                found.append(max(0, int(text) - int(f.read().strip())))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def check_memory(cfg: "ModelConfig", training: bool = False, where: str = "model") -> None:
    """Refuse (:class:`ConfigError`) a model whose float32 weights (and, to train, gradients and
    optimizer state) would not fit in the memory available, before anything is allocated."""
    need = cfg.memory_bytes(training)
    have = available_memory()
    if have is not None and need > have:
        verb = "to train" if training else "to hold"
        raise ConfigError(f"{where}: a model of {human(cfg.num_params())} parameters needs about "
                          f"{human_bytes(need)} of memory {verb}, more than the "
                          f"{human_bytes(have)} available (check n_layer, n_embd, "
                          f"context_length and vocab_size)")


NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "rope")
ROPE_SCALINGS = ("linear", "llama3")


@dataclass
class ModelConfig:
    """The shape of a decoder: GPT-2 by default, a Llama-family model with the switches below.

    One model, many switches (as LitGPT does): Llama / SmolLM2 / Qwen2 / Mistral are GPT-2 with
    RMSNorm, rotary positions, a SwiGLU MLP, grouped-query attention and no biases (Qwen2 keeps
    the q/k/v bias). Every field added after GPT-2 defaults to GPT-2's choice, so a config.yaml
    written before the switches existed loads unchanged.
    """
    # ---- size
    vocab_size: int = 50257        # number of token ids (GPT-2: 50,257)
    context_length: int = 1024     # longest sequence the model handles (GPT-2: n_positions)
    n_layer: int = 12              # transformer blocks
    n_head: int = 12               # query heads per block; n_embd must divide by it (unless head_dim)
    n_embd: int = 768              # width of the residual stream
    # ---- attention
    n_kv_head: int = 0             # key/value heads, grouped-query attention (0 = n_head: multi-head);
                                   # n_head must divide by it; the KV cache stores this many heads
    head_dim: int = 0              # width of one head (0 = n_embd // n_head)
    qkv_bias: bool = True          # bias on the query/key/value projection (GPT-2, Qwen2: True)
    # ---- normalisation
    norm: str = "layernorm"        # "layernorm" (GPT-2) or "rmsnorm" (Llama family: no bias, no mean)
    layer_norm_eps: float = 1e-5   # epsilon of every norm (GPT-2: 1e-5; rms_norm_eps for Llama)
    # ---- positions
    position: str = "learned"      # "learned" absolute embeddings (GPT-2) or "rope" (rotary, Llama)
    rope_theta: float = 10000.0    # rotary base frequency (Llama 2: 1e4, Llama 3: 5e5, Qwen2.5: 1e6)
    rope_scaling: dict | None = None  # None, {type: linear, factor} or Llama 3's {type: llama3,
                                   # factor, low_freq_factor, high_freq_factor, original_context_length}
    # ---- MLP
    mlp: str = "gelu"              # "gelu": fc -> GELU -> proj (GPT-2); "swiglu": proj(silu(gate) * up)
    gelu: str = "tanh"             # GELU flavour: "tanh" (GPT-2's approximation) or "exact"
    intermediate_size: int = 0     # hidden width of the MLP (0 = 4 * n_embd)
    # ---- the rest
    bias: bool = True              # biases in the other Linear layers and LayerNorms (GPT-2: True)
    dropout: float = 0.0           # dropout on embeddings, attention and residual branches (training only)
    tie_weights: bool = True       # LM head shares the token embedding matrix
    n_classes: int = 0             # > 0 adds a classification head with this many outputs
    pooling: str = "last"          # classification pooling: "last" non-padding token or "mean"

    def __post_init__(self) -> None:
        check_fields(self, "model")
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if self.n_classes < 0:
            raise ConfigError(f"model.n_classes must be >= 0, not {self.n_classes!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), not {self.dropout!r}")
        if not self.layer_norm_eps > 0:
            raise ConfigError(f"model.layer_norm_eps must be > 0, not {self.layer_norm_eps!r}")
        if self.head_dim == 0 and self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head < 0 or self.head_dim < 0 or self.intermediate_size < 0:
            raise ConfigError("n_kv_head, head_dim and intermediate_size must be >= 0")
        if self.n_head % self.kv_heads:
            raise ConfigError(f"n_head ({self.n_head}) must be divisible by n_kv_head "
                              f"({self.n_kv_head})")
        choices = {"gelu": ("tanh", "exact"), "pooling": ("last", "mean"), "norm": NORMS,
                   "mlp": MLPS, "position": POSITIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, "
                                  f"not {getattr(self, name)!r}")
        if self.position == "rope" and self.head_size % 2:
            raise ConfigError(f"rotary positions need an even head size, not {self.head_size}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("type") if isinstance(self.rope_scaling, dict) else None
            if kind not in ROPE_SCALINGS:
                raise ConfigError(f"rope_scaling type must be one of {', '.join(ROPE_SCALINGS)}, "
                                  f"not {kind!r}")
            need = {"linear": ("factor",), "llama3": ("factor", "low_freq_factor",
                                                      "high_freq_factor", "original_context_length")}
            missing = [k for k in need[kind] if k not in self.rope_scaling]
            if missing:
                raise ConfigError(f"rope_scaling ({kind}) needs {', '.join(missing)}")

    @property
    def head_size(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads in effect (n_kv_head, or n_head for multi-head attention)."""
        return self.n_kv_head or self.n_head

    @property
    def mlp_size(self) -> int:
        """Hidden width of the MLP in effect."""
        return self.intermediate_size or 4 * self.n_embd

    @property
    def family(self) -> str:
        """"gpt2" when every switch is GPT-2's, else "llama" (the Llama family's architecture)."""
        gpt2 = (self.norm, self.mlp, self.position) == ("layernorm", "gelu", "learned")
        return "gpt2" if gpt2 else "llama"

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape (tied LM head counted once)."""
        C, L, V, T = self.n_embd, self.n_layer, self.vocab_size, self.context_length
        b = 1 if self.bias else 0
        qkv_b = 1 if self.qkv_bias else 0
        q, kv, inner = self.n_head * self.head_size, self.kv_heads * self.head_size, self.mlp_size
        up = 2 * inner if self.mlp == "swiglu" else inner   # swiglu: gate and up side by side
        norm = C * (1 + b) if self.norm == "layernorm" else C
        per_block = (
            2 * norm                              # two norms
            + C * (q + 2 * kv) + (q + 2 * kv) * qkv_b  # qkv projection
            + q * C + C * b                       # attention output projection
            + C * up + up * b                     # MLP up (and gate)
            + inner * C + C * b                   # MLP down
        )
        n = L * per_block + norm                  # blocks + final norm
        if include_embeddings:
            n += V * C + (T * C if self.position == "learned" else 0)
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

    def memory_bytes(self, training: bool = False) -> int:
        """About how much memory the model takes in float32: the weights, and to train, their
        gradients and AdamW's two moments as well (activations not counted)."""
        return self.num_params() * 4 * (4 if training else 1)


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
        check_fields(self, "model")
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be a whole number >= 1, not {getattr(self, name)!r}")
        if self.family not in ENCODER_FAMILIES:
            raise ConfigError(f"family must be one of {', '.join(ENCODER_FAMILIES)} for an encoder, "
                              f"not {self.family!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.gelu not in ("tanh", "exact"):
            raise ConfigError(f"gelu must be 'tanh' or 'exact', not {self.gelu!r}")
        if self.pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean' for an encoder, not {self.pooling!r}")

    def memory_bytes(self, training: bool = False) -> int:
        """About how much memory the model takes in float32 (as :meth:`ModelConfig.memory_bytes`)."""
        return self.num_params() * 4 * (4 if training else 1)

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
    deterministic: bool = False    # deterministic kernels (slower on GPUs; bitwise-exact resume there)
    seed: int = 1337               # seeds init, window sampling and dropout
    out: str | None = None         # output model directory; None = $TINYLLM_HOME/models/<run name>

    def __post_init__(self) -> None:
        check_fields(self, "train")
        choices = {"tokenizer": ("gpt2", "char", "bpe", "wordpiece"), "objective": ("lm", "mlm"),
                   "sampling": ("random", "windows"),
                   "schedule": ("cosine", "linear", "constant"), "best_mode": ("min", "max"),
                   "precision": ("auto", "fp32", "bf16", "fp16"),
                   "ddp_backend": ("auto", "gloo", "nccl")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name} must be one of {', '.join(allowed)}, "
                                  f"not {getattr(self, name)!r}")
        if not DEVICE.match(self.device):
            raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps, not {self.device!r}")
        positive = ("batch_size", "grad_accum", "max_steps", "eval_batches", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be a positive integer, not {getattr(self, name)!r}")
        for name in ("seq_len", "stride", "eval_every", "save_every", "sample_tokens", "num_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be an integer >= 0, not {getattr(self, name)!r}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must be >= 0, not {self.warmup_steps!r}")
        if self.bpe_vocab_size < 257:
            raise ConfigError(f"train.bpe_vocab_size must be at least 257 (256 bytes and "
                              f"end-of-text), not {self.bpe_vocab_size!r}")
        if not 0 <= self.seed < 2 ** 63:
            raise ConfigError(f"train.seed must be in [0, 2**63), not {self.seed!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction must be in [0, 1), not {self.val_fraction!r}")
        if self.max_time_minutes < 0:
            raise ConfigError(f"train.max_time_minutes must be >= 0, not {self.max_time_minutes!r}")
        if not self.lr > 0 or self.min_lr < 0:
            raise ConfigError("train.lr must be > 0 and train.min_lr >= 0")
        for name in ("weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, not {getattr(self, name)!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be in [0, 1), not {getattr(self, name)!r}")
        if not self.eps > 0:
            raise ConfigError(f"train.eps must be > 0, not {self.eps!r}")
        if not self.best_metric:
            raise ConfigError("train.best_metric must name an eval metric (e.g. val_loss)")

    @property
    def warmup(self) -> int:
        """Warmup steps in effect (``warmup_steps``, or the default for ``max_steps``)."""
        if self.warmup_steps is None:
            return min(100, self.max_steps // 10)
        return min(self.warmup_steps, self.max_steps)


# the switches every Llama-family preset shares
_LLAMA: dict[str, Any] = dict(norm="rmsnorm", position="rope", mlp="swiglu", bias=False,
                              qkv_bias=False, tie_weights=True)

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
    # Llama-family shapes (Hugging Face configs of the released models; parameter counts tested
    # against transformers): RMSNorm, rotary positions, SwiGLU, grouped-query attention
    "smollm2-135m": dict(_LLAMA, vocab_size=49152, context_length=8192, n_layer=30, n_head=9,
                         n_kv_head=3, n_embd=576, intermediate_size=1536, rope_theta=100000.0),
    "smollm2-360m": dict(_LLAMA, vocab_size=49152, context_length=8192, n_layer=32, n_head=15,
                         n_kv_head=5, n_embd=960, intermediate_size=2560, rope_theta=100000.0),
    "qwen2.5-0.5b": dict(_LLAMA, vocab_size=151936, context_length=32768, n_layer=24, n_head=14,
                         n_kv_head=2, n_embd=896, intermediate_size=4864, rope_theta=1000000.0,
                         layer_norm_eps=1e-6, qkv_bias=True),
    "llama-3.2-1b": dict(_LLAMA, vocab_size=128256, context_length=131072, n_layer=16, n_head=32,
                         n_kv_head=8, n_embd=2048, intermediate_size=8192, rope_theta=500000.0,
                         rope_scaling={"type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_context_length": 8192}),
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
    return model_config({**copy.deepcopy(PRESETS[name]), **overrides}, f"preset {name}")


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
    except ConfigError as e:  # "x.yaml: model" + "model.n_head must be ..." -> "x.yaml: model.n_head ..."
        head, _, section = where.rpartition(": ")
        text = str(e)
        if head and text.startswith(section + "."):
            raise ConfigError(f"{head}: {text}") from None
        raise ConfigError(f"{where}: {text}") from None


def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; errors name the file and line."""
    from tinyllm.atomic import read_bytes_limited

    path = Path(path)
    try:
        text = read_bytes_limited(path, MAX_YAML_BYTES, "YAML file").decode("utf-8")
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


def path_inside(directory: str | Path, name: Any, where: str = "file") -> Path:
    """``directory / name``, refused (:class:`ConfigError`) unless it resolves (symbolic links
    followed) to a place inside ``directory``: a model directory's config.yaml may name only its
    own files (``tokenizer.file: ../../etc/passwd`` is an error, not a read)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: expected a file name inside the model directory, not {name!r}")
    root = Path(directory).resolve()
    target = (root / name).resolve()
    if target != root and root in target.parents:
        return target
    raise ConfigError(f"{where}: {name!r} lies outside the model directory {directory}; a model "
                      f"directory may only name files inside it")


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
    "is_encoder", "TrainConfig", "check_fields", "check_memory", "available_memory", "PRESETS",
    "preset", "from_dict", "to_dict", "read_yaml", "write_yaml", "path_inside", "parse_override",
    "apply_overrides", "field",
]
