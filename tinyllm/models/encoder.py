"""The encoder: BERT's architecture written from scratch in one readable file.

word + position + token-type embeddings -> LayerNorm -> n_layer x [bidirectional self-attention
-> LayerNorm(x + attn), MLP (GELU) -> LayerNorm(x + mlp)] (post-LayerNorm blocks) -> hidden states,
with three heads on top:

* the pooler: tanh(Linear(hidden state of [CLS])), BERT's sentence vector;
* the masked-LM head: Linear -> GELU -> LayerNorm -> logits over the vocabulary through the word
  embedding matrix (tied) plus a bias;
* a classification head (``n_classes`` outputs) on the pooled [CLS] or on the mean of the tokens.

Batches are right-padded and described by ``lengths`` (B,), the number of real tokens per row, as
for the decoder's classifier; attention never looks at a padding position. Sentence pairs carry
``token_types`` (B, T): 0 for ``[CLS] a [SEP]``, 1 for ``b [SEP]``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.config import EncoderConfig


def padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) real-token counts -> (B, T) bool, True at real tokens."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class SelfAttention(nn.Module):
    """Multi-head attention where every token sees every real token of its row (no causal mask)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # query, key, value side by side
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # attn_mask (B, 1, 1, T): True where the key is a real token
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_drop(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_size)
        self.proj = nn.Linear(cfg.mlp_size, cfg.n_embd)
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Post-LayerNorm transformer block: LayerNorm(x + attn(x)), then LayerNorm(x + mlp(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.ln1(x + self.attn(x, attn_mask))
        return self.ln2(x + self.mlp(x))


class MLMHead(nn.Module):
    """Hidden states -> vocabulary logits: Linear, GELU, LayerNorm, then the word embedding (tied)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.ln = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"

    def forward(self, h: torch.Tensor, word_emb: torch.Tensor) -> torch.Tensor:
        h = self.ln(F.gelu(self.dense(h), approximate=self.approximate))
        return F.linear(h, word_emb, self.bias)  # (..., vocab)


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.n_embd)
        self.type_emb = nn.Embedding(cfg.type_vocab_size, cfg.n_embd)
        self.emb_ln = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.pooler = nn.Linear(cfg.n_embd, cfg.n_embd) if cfg.pooler else None
        self.mlm_head = MLMHead(cfg) if cfg.mlm_head else None
        self.cls_drop = nn.Dropout(cfg.dropout)
        self.cls_head = nn.Linear(cfg.n_embd, cfg.n_classes) if cfg.n_classes else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """BERT's initialisation: N(0, 0.02) weights, zero biases, LayerNorms at (1, 0)."""
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # ---- sizes -------------------------------------------------------------------------------
    def num_params(self, include_embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not include_embeddings:
            n -= sum(e.weight.numel() for e in (self.tok_emb, self.pos_emb, self.type_emb))
        return n

    # ---- forward -----------------------------------------------------------------------------
    def hidden(self, idx: torch.Tensor, lengths: torch.Tensor | None = None,
               token_types: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, T, C) of the last block. ``idx`` (B, T) is right-padded; ``lengths``
        (B,) counts each row's real tokens (None: no padding); ``token_types`` (B, T) or None (0s)."""
        B, T = idx.shape
        if T > self.config.context_length:
            raise ValueError(f"sequence of {T} tokens exceeds the context length "
                             f"{self.config.context_length}")
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        x = x + (self.type_emb(token_types) if token_types is not None else self.type_emb.weight[0])
        x = self.drop(self.emb_ln(x))
        mask = None if lengths is None else padding_mask(lengths, T)[:, None, None, :]  # (B,1,1,T)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None,
                token_types: torch.Tensor | None = None) -> torch.Tensor:
        """Masked-LM logits (B, T, vocab)."""
        if self.mlm_head is None:
            raise ValueError("this encoder has no masked-LM head (mlm_head: false)")
        return self.mlm_head(self.hidden(idx, lengths, token_types), self.tok_emb.weight)

    def pooled(self, h: torch.Tensor) -> torch.Tensor:
        """BERT's pooler output (B, C): tanh(Linear(h[:, 0])), or the raw [CLS] state without one."""
        cls = h[:, 0]
        return torch.tanh(self.pooler(cls)) if self.pooler is not None else cls

    def pool(self, h: torch.Tensor, lengths: torch.Tensor, pooling: str | None = None
             ) -> torch.Tensor:
        """Hidden states (B, T, C) -> one vector per row (B, C): "cls" (the pooler on [CLS]) or
        "mean" (the mean over each row's real tokens); ``pooling`` None is the config's."""
        if (pooling or self.config.pooling) == "cls":
            return self.pooled(h)
        return mean_pool(h, lengths)

    def classify(self, idx: torch.Tensor, lengths: torch.Tensor | None = None,
                 token_types: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, n_classes) of right-padded ``idx`` with ``lengths`` real tokens."""
        if self.cls_head is None:
            raise ValueError("this model has no classification head (n_classes = 0)")
        B, T = idx.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=idx.device)
        h = self.hidden(idx, lengths, token_types)
        return self.cls_head(self.cls_drop(self.pool(h, lengths)))

    def embed(self, idx: torch.Tensor, lengths: torch.Tensor | None = None,
              pooling: str = "mean", normalize: bool = False) -> torch.Tensor:
        """Sentence embeddings (B, C): "mean" of the last hidden states over the real tokens (what
        sentence-transformers models expect) or "cls"; ``normalize`` scales each to length 1."""
        B, T = idx.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=idx.device)
        h = self.hidden(idx, lengths)
        v = mean_pool(h, lengths) if pooling == "mean" else h[:, 0]
        return F.normalize(v, dim=-1) if normalize else v

    def loss(self, idx: torch.Tensor, targets: torch.Tensor,
             lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mean masked-LM cross-entropy over the positions whose target is not -100."""
        logits = self(idx, lengths)
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1),
                               ignore_index=-100)


def mean_pool(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The mean of each row's first ``lengths`` hidden states: (B, T, C), (B,) -> (B, C)."""
    mask = padding_mask(lengths, h.shape[1]).to(h.dtype)[:, :, None]  # (B, T, 1)
    return (h * mask).sum(1) / lengths.clamp(min=1)[:, None].to(h.dtype)
