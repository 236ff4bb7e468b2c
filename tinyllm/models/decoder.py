"""The GPT model: GPT-2's architecture written from scratch in one readable file.

token + position embeddings -> n_layer x [LayerNorm -> causal self-attention -> +residual,
LayerNorm -> MLP (GELU) -> +residual] -> final LayerNorm -> LM head (tied to the token embedding)
and, for classifiers, a classification head on the last non-padding token (or the mean).

Incremental decoding uses a preallocated KV cache (:class:`KVCache`): prefill once, then feed one
token at a time; the logits equal a full recompute.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.config import ModelConfig, check_memory
from tinyllm.models.loss import lm_loss


class KVCache:
    """Preallocated keys and values for every layer, filled left to right.

    ``k[i]`` and ``v[i]`` have shape (B, nh, max_len, hs); ``pos`` is how many positions are filled.
    Writing in place avoids the torch.cat per step that a growing cache pays.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int | None = None,
                 device=None, dtype=torch.float32):
        max_len = max_len or cfg.context_length
        shape = (batch_size, cfg.n_head, max_len, cfg.head_size)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.max_len = max_len
        self.pos = 0

    def reset(self) -> None:
        self.pos = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.qkv_bias)  # q, k, v side by side
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True  # GPT-2 init: scaled by 1/sqrt(2 * n_layer)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            if attn_mask is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        else:
            start, end = cache.pos, cache.pos + T
            cache.k[layer][:B, :, start:end] = k
            cache.v[layer][:B, :, start:end] = v
            k_all = cache.k[layer][:B, :, :end]  # (B, nh, end, hs)
            v_all = cache.v[layer][:B, :, :end]
            if start == 0 and attn_mask is None:
                y = F.scaled_dot_product_attention(q, k_all, v_all, is_causal=True)
            elif T == 1 and attn_mask is None:
                y = F.scaled_dot_product_attention(q, k_all, v_all)  # one query sees everything so far
            else:
                if attn_mask is None:
                    # query i (absolute position start+i) sees keys 0..start+i
                    attn_mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.residual_scale = True
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, cache=None, layer=0, attn_mask=None):
        x = x + self.attn(self.ln1(x), cache, layer, attn_mask)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if torch.get_default_device().type != "meta":  # refuse before allocating what cannot fit
            check_memory(cfg)
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
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
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
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
    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None,
               attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) after ln_f. ``cache`` is advanced by T positions."""
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.context_length:
            raise ValueError(f"sequence of {start + T} tokens exceeds the context length "
                             f"{self.config.context_length}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, attn_mask)
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
