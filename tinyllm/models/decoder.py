"""The decoder: GPT-2's architecture written from scratch in one readable file, with the switches
that make it a Llama-family model (SmolLM2, Llama 3, Qwen2, Mistral).

GPT-2: token + position embeddings -> n_layer x [LayerNorm -> causal self-attention -> +residual,
LayerNorm -> MLP (GELU) -> +residual] -> final LayerNorm -> LM head (tied to the token embedding)
and, for classifiers, a classification head on the last non-padding token (or the mean).

The Llama family is the same stack with these switches (:class:`tinyllm.config.ModelConfig`):

    norm="rmsnorm"      RMSNorm instead of LayerNorm (a scale, no mean, no bias)
    position="rope"     rotary position embeddings on q and k instead of a position table
                        (rope_theta; Llama 3's frequency scaling through rope_scaling)
    mlp="swiglu"        proj(silu(gate(x)) * up(x)) instead of proj(gelu(fc(x)))
    n_kv_head           grouped-query attention: n_head / n_kv_head query heads share one
                        key/value head, and the KV cache stores only n_kv_head heads
    qkv_bias, bias      Qwen2 keeps the q/k/v bias; Llama has no biases at all

Incremental decoding uses a KV cache (:class:`KVCache`): prefill once, then feed one token at a
time; the logits equal a full recompute. The forward pass branches only on the config and on
tensor shapes, never on tensor values, so it traces for export.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.config import ModelConfig, check_memory
from tinyllm.models.loss import lm_loss


class KVCache:
    """Keys and values for every layer, filled left to right.

    ``k[i]`` and ``v[i]`` have shape (B, n_kv_head, capacity, hs); ``pos`` is how many positions
    are filled. Writing in place avoids the torch.cat per step that a growing cache pays; the
    buffers start at ``min(max_len, 1024)`` positions and double when a forward pass needs more
    (an 8k- or 128k-context model does not reserve its whole context for a short chat).
    """

    INITIAL = 1024  # positions allocated up front

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int | None = None,
                 device=None, dtype=torch.float32):
        self.max_len = max_len or cfg.context_length
        self.shape = (batch_size, cfg.kv_heads, min(self.max_len, self.INITIAL), cfg.head_size)
        self.k = [torch.zeros(self.shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(self.shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pos = 0

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    def reserve(self, end: int) -> None:
        """Make room for positions up to ``end`` (at most ``max_len``), keeping what is filled."""
        if end <= self.capacity:
            return
        if end > self.max_len:
            raise ValueError(f"sequence of {end} tokens exceeds the cache's {self.max_len}")
        size = min(self.max_len, max(end, 2 * self.capacity))
        for layers in (self.k, self.v):
            for i, old in enumerate(layers):
                new = old.new_zeros(old.shape[:2] + (size,) + old.shape[3:])
                new[:, :, :self.pos] = old[:, :, :self.pos]
                layers[i] = new

    def reset(self) -> None:
        self.pos = 0


class RMSNorm(nn.Module):
    """Root-mean-square norm (Llama): x / rms(x) * weight, computed in float32, no mean, no bias."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)


# ---- rotary position embeddings --------------------------------------------------------------
def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """The rotary frequencies (hs/2,): theta^(-2i/hs), with Llama 3's or linear scaling."""
    hs = cfg.head_size
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
    scaling = cfg.rope_scaling or {}
    if scaling.get("type") == "linear":
        return inv_freq / float(scaling["factor"])
    if scaling.get("type") == "llama3":
        # long wavelengths slowed down by `factor`, short ones kept, the band between blended
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_context_length"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return torch.where(medium, blended, scaled)
    return inv_freq


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, h, T, hs) queries or keys by their positions' angles; cos/sin are (T, hs).

    The two halves of each head are the pair's coordinates (Hugging Face's layout, "rotate_half");
    llama.cpp's GGUF files interleave them instead, which the GGUF importer undoes.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_size = cfg.n_head, cfg.kv_heads, cfg.head_size
        q_size, kv_size = cfg.n_head * cfg.head_size, cfg.kv_heads * cfg.head_size
        self.sizes = (q_size, kv_size, kv_size)
        # q, k, v side by side: (C) -> (nh*hs + 2*nkv*hs)
        self.qkv = nn.Linear(cfg.n_embd, q_size + 2 * kv_size, bias=cfg.qkv_bias)
        self.proj = nn.Linear(q_size, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True  # GPT-2 init: scaled by 1/sqrt(2 * n_layer)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def project(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, nh, T, hs), k and v (B, nkv, T, hs) for x (B, T, C), rotated when ``rope``."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.sizes, dim=2)
        q = q.view(B, T, self.n_head, self.head_size).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                attn_mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.project(x, rope)
        gqa = self.n_kv_head != self.n_head  # SDPA shares each k/v head among its query heads
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            if attn_mask is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                                   enable_gqa=gqa)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout,
                                                   enable_gqa=gqa)
        else:
            start, end = cache.pos, cache.pos + T
            cache.k[layer][:B, :, start:end] = k
            cache.v[layer][:B, :, start:end] = v
            k_all = cache.k[layer][:B, :, :end]  # (B, nkv, end, hs)
            v_all = cache.v[layer][:B, :, :end]
            if start == 0 and attn_mask is None:
                y = F.scaled_dot_product_attention(q, k_all, v_all, is_causal=True, enable_gqa=gqa)
            elif T == 1 and attn_mask is None:  # one query sees everything so far
                y = F.scaled_dot_product_attention(q, k_all, v_all, enable_gqa=gqa)
            else:
                if attn_mask is None:
                    # query i (absolute position start+i) sees keys 0..start+i
                    attn_mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=attn_mask,
                                                   enable_gqa=gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_size)  # (B, T, nh*hs)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    """GPT-2: proj(gelu(fc(x))). SwiGLU (Llama): ``fc`` holds gate and up side by side,
    (C) -> (2 * inner), and the block computes proj(silu(gate) * up)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        inner = cfg.mlp_size
        self.swiglu = cfg.mlp == "swiglu"
        self.fc = nn.Linear(cfg.n_embd, 2 * inner if self.swiglu else inner, bias=cfg.bias)
        self.proj = nn.Linear(inner, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)                                   # (B, T, inner) or (B, T, 2 * inner)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.approximate)
        return self.drop(self.proj(h))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0, attn_mask=None, rope=None):
        x = x + self.attn(self.ln1(x), cache, layer, attn_mask, rope)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """The decoder (GPT-2, or a Llama-family model by its config's switches)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if torch.get_default_device().type != "meta":  # refuse before allocating what cannot fit
            check_memory(cfg)
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # GPT-2 learns a table of positions; rotary models rotate q and k instead (no parameters)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.n_embd) if cfg.position == "learned" \
            else None
        if cfg.position == "rope":  # (hs/2,), not saved: computed from the config
            self.register_buffer("rope_inv_freq", rope_inv_freq(cfg), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.cls_head = nn.Linear(cfg.n_embd, cfg.n_classes) if cfg.n_classes else None
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections N(0, 0.02/sqrt(2*n_layer))."""
        if isinstance(m, nn.Linear):
            std = 0.02
            if getattr(m, "residual_scale", False):
                std /= math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    # ---- sizes -------------------------------------------------------------------------------
    def num_params(self, include_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # tied weights are one Parameter
        if not include_embeddings:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    @torch.no_grad()
    def use_decode_layout(self) -> "GPT":
        """Store every weight matrix (in, out)-contiguous, for fast batch-1 decoding on CPU.

        Shapes, values and the state dict stay the same; only the memory layout changes: a
        Linear's (out, in) weight becomes a transposed view of an (in, out) tensor, so each
        matmul of a single token streams the weights row by row (measured on this project's AMD
        EPYC: the 50257 x 768 LM head 11 ms instead of 16 ms a token). For inference engines
        only; training keeps the default layout.
        """
        for m in self.modules():  # includes the LM head, and with it a tied token embedding
            if isinstance(m, nn.Linear) and m.weight.is_contiguous():
                m.weight.data = m.weight.data.t().contiguous().t()
        return self

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        p = self.tok_emb.weight
        return KVCache(self.config, batch_size, max_len, device=p.device, dtype=p.dtype)

    # ---- forward -----------------------------------------------------------------------------
    def rope(self, pos: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (T, hs) of the rotary angles at positions ``pos`` (T,), in float32 first."""
        freqs = pos.float()[:, None] * self.rope_inv_freq.float()[None, :]   # (T, hs/2)
        angles = torch.cat((freqs, freqs), dim=-1)                           # (T, hs)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) after ln_f. ``cache`` is advanced by T positions."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.context_length:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context length "
                             f"{self.config.context_length}")
        if cache is not None:
            cache.reserve(start + T)
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.tok_emb(idx)                                  # (B, T, C)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)
        else:
            rope = self.rope(pos, x.dtype)
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, attn_mask, rope)
        if cache is not None:
            cache.pos += T
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None,
                last_only: bool = False) -> torch.Tensor:
        """LM logits (B, T, vocab); with ``last_only`` just the last position's, (B, 1, vocab)."""
        h = self.hidden(idx, cache)
        if last_only:
            h = h[:, -1:, :]
        return self.lm_head(h)

    def classify(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, n_classes). ``idx`` is right-padded; ``lengths`` (B,) counts real tokens.

        With causal attention, the hidden state of the last real token does not see the padding
        after it, so right padding needs no attention mask.
        """
        if self.cls_head is None:
            raise ValueError("this model has no classification head (n_classes = 0)")
        B, T = idx.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=idx.device)
        return self.cls_head(self.pool(self.hidden(idx), lengths))

    def pool(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, C) -> one vector per row (B, C): the last real token's, or the mean."""
        B, T, _ = h.shape
        if self.config.pooling == "mean":
            mask = (torch.arange(T, device=h.device)[None, :] < lengths[:, None]).to(h.dtype)
            return (h * mask[:, :, None]).sum(1) / lengths.clamp(min=1)[:, None].to(h.dtype)
        return h[torch.arange(B, device=h.device), (lengths - 1).clamp(min=0)]  # (B, C)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy; targets of -100 are ignored (:func:`.loss.lm_loss`)."""
        return lm_loss(self, (idx, targets))
