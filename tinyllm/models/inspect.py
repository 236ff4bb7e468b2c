"""Looking inside a model: every layer's attention weights and residual stream, by an explicit path.

The models' own forward passes use ``F.scaled_dot_product_attention``, which is fast and returns
no weights. :func:`trace` runs the same modules with attention written out,

    weights = softmax(q @ k^T / sqrt(hs) + mask)     (B, nh, T, T), each row sums to 1
    y       = weights @ v

and keeps the weights and the residual stream after every block. It is used only when
inspecting (``tinyllm inspect``, the TUI's Inspect screen); training, generation and export never
come here, so their speed is untouched. Its logits equal the model's forward (tests check 1e-5).

The decoder (GPT-2 and the Llama switches) is traced by :func:`trace_decoder`: rotary positions
are applied by the attention module's own ``project``, as in forward, and grouped-query key/value
heads are expanded so every query head has its (T, T) map. The encoder (BERT) is traced by
:func:`trace_encoder`, written against ``tinyllm.models.encoder.Encoder`` (post-LayerNorm blocks,
bidirectional attention, the masked-LM head as the lens). A new family adds its tracer and its
lens to :data:`TRACERS` and :data:`LENSES`, keyed by ``config.family``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Trace:
    """What :func:`trace` saw for a batch of sequences (B, T)."""
    attention: torch.Tensor        # (B, L, nh, T, T) float32: query rows, key columns; rows sum to 1
    residuals: torch.Tensor        # (B, L, T, C): the residual stream after each block
    logits: torch.Tensor | None    # (B, T, vocab): the model's output (None: no LM / masked-LM head)
    causal: bool                   # True for decoders: weights above the diagonal are 0


def attention_weights(q: torch.Tensor, k: torch.Tensor, causal: bool,
                      key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) in float32: q (B, nh, T, hs), k (B, nh, S, hs) -> (B, nh, T, S).

    ``causal``: query i sees keys 0..i (T == S). ``key_mask`` (B, S) bool: False keys (padding)
    get no weight. The scale is SDPA's default, so the weights are the ones forward uses.
    """
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])   # (B, nh, T, S)
    if causal:
        T, S = scores.shape[-2:]
        allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        scores = scores.masked_fill(~allowed, float("-inf"))
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


def expand_kv(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """Grouped-query key/value heads (B, nkv, T, hs) -> (B, nh, T, hs): query head h reads kv head
    h // (nh / nkv), as SDPA's ``enable_gqa`` does."""
    groups = n_head // x.shape[1]
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


# ---- the decoder ------------------------------------------------------------------------------
@torch.no_grad()
def trace_decoder(model: nn.Module, idx: torch.Tensor) -> Trace:
    """Run a :class:`tinyllm.models.decoder.GPT` on ``idx`` (B, T) with explicit attention."""
    cfg = model.config
    B, T = idx.shape
    if T > cfg.context_length:
        raise ValueError(f"sequence of {T} tokens exceeds the context length {cfg.context_length}")
    pos = torch.arange(T, device=idx.device)
    x = model.tok_emb(idx)                                        # (B, T, C)
    rope = None
    if model.pos_emb is not None:
        x = x + model.pos_emb(pos)
    else:
        rope = model.rope(pos, x.dtype)                           # cos, sin (T, hs), as in forward
    x = model.drop(x)
    weights, residuals = [], []
    for block in model.blocks:
        attn = block.attn
        q, k, v = attn.project(block.ln1(x), rope)                # q (B, nh, T, hs), k/v (B, nkv, T, hs)
        k, v = expand_kv(k, attn.n_head), expand_kv(v, attn.n_head)
        w = attention_weights(q, k, causal=True)                  # (B, nh, T, T)
        y = (w.to(v.dtype) @ v).transpose(1, 2).reshape(B, T, attn.n_head * attn.head_size)
        x = x + attn.resid_drop(attn.proj(y))
        x = x + block.mlp(block.ln2(x))
        weights.append(w)
        residuals.append(x)
    return Trace(attention=torch.stack(weights, dim=1), residuals=torch.stack(residuals, dim=1),
                 logits=decoder_lens(model, x), causal=True)


def decoder_lens(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """The logit lens of a decoder: a residual stream (..., C) through the final norm and the LM
    head, (..., vocab). On the last block's output it is the model's own logits."""
    return model.lm_head(model.ln_f(h))


# ---- the encoder ------------------------------------------------------------------------------
@torch.no_grad()
def trace_encoder(model: nn.Module, idx: torch.Tensor, lengths: torch.Tensor | None = None,
                  token_types: torch.Tensor | None = None) -> Trace:
    """Run a BERT :class:`tinyllm.models.encoder.Encoder` on right-padded ``idx`` (B, T) with
    explicit attention (every token sees every real token of its row; ``lengths`` (B,) counts
    them, None: no padding). Mirrors ``Encoder.hidden`` step by step."""
    cfg = model.config
    B, T = idx.shape
    if T > cfg.context_length:
        raise ValueError(f"sequence of {T} tokens exceeds the context length {cfg.context_length}")
    pos = torch.arange(T, device=idx.device)
    x = model.tok_emb(idx) + model.pos_emb(pos)                                  # (B, T, C)
    x = x + (model.type_emb(token_types) if token_types is not None else model.type_emb.weight[0])
    x = model.drop(model.emb_ln(x))
    key_mask = None if lengths is None else \
        torch.arange(T, device=idx.device)[None, :] < lengths[:, None]           # (B, T)
    weights, residuals = [], []
    for block in model.blocks:
        attn = block.attn
        C = x.shape[-1]
        hs = C // attn.n_head
        q, k, v = (t.view(B, T, attn.n_head, hs).transpose(1, 2)
                   for t in attn.qkv(x).split(C, dim=2))                          # (B, nh, T, hs)
        w = attention_weights(q, k, causal=False, key_mask=key_mask)              # (B, nh, T, T)
        y = (w.to(v.dtype) @ v).transpose(1, 2).reshape(B, T, C)
        x = block.ln1(x + attn.resid_drop(attn.proj(y)))
        x = block.ln2(x + block.mlp(x))
        weights.append(w)
        residuals.append(x)
    return Trace(attention=torch.stack(weights, dim=1), residuals=torch.stack(residuals, dim=1),
                 logits=encoder_lens(model, x), causal=False)


def encoder_lens(model: nn.Module, h: torch.Tensor) -> torch.Tensor | None:
    """The lens of an encoder: hidden states (..., C) through the masked-LM head, (..., vocab)
    (BERT's blocks end in a LayerNorm, so no final norm is needed); None without that head."""
    if getattr(model, "mlm_head", None) is None:
        return None
    return model.mlm_head(h, model.tok_emb.weight)


# ---- by family --------------------------------------------------------------------------------
# config.family -> the tracer and the lens of that architecture
DECODER_FAMILIES = ("gpt2", "llama")   # causal: each token sees only the ones before it
TRACERS: dict[str, Callable[..., Trace]] = {
    "gpt2": trace_decoder, "llama": trace_decoder, "bert": trace_encoder,
}
LENSES: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor | None]] = {
    "gpt2": decoder_lens, "llama": decoder_lens, "bert": encoder_lens,
}


def family(model: nn.Module) -> str:
    fam = getattr(model.config, "family", None)
    if fam not in TRACERS:
        raise ValueError(f"no explicit attention path for model family {fam!r} "
                         f"(known: {', '.join(TRACERS)})")
    return fam


def trace(model: nn.Module, idx: torch.Tensor, **kw) -> Trace:
    """Attention weights and residual streams of ``model`` (in eval mode) on ``idx`` (B, T)."""
    return TRACERS[family(model)](model, idx, **kw)


LENS_CHUNK = 32 * 1024 * 1024   # logits (float32 elements) computed at once by lens_top


@torch.no_grad()
def lens_top(model: nn.Module, residuals: torch.Tensor, logits: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The logit lens of every layer: (probabilities, ids) of the top token, each (B, L, T), for
    residual streams (B, L, T, C); None when the model has no head to read them with.

    ``logits`` (B, T, vocab), the model's output (:attr:`Trace.logits`), is reused for the last
    layer instead of being computed again. The other layers go through the head as one batch of
    rows (one pass over a 50k x C head reads it once, not once per layer), in chunks of at most
    :data:`LENS_CHUNK` logits so that memory stays bounded."""
    lens = LENSES[family(model)]
    B, L, T, C = residuals.shape
    todo = residuals if logits is None else residuals[:, :-1]
    rows = todo.reshape(-1, C)                                      # (B * L' * T, C)
    probs, ids = [], []
    if rows.shape[0]:
        vocab = model.config.vocab_size
        step = max(1, LENS_CHUNK // vocab)
        for start in range(0, rows.shape[0], step):
            out = lens(model, rows[start:start + step])
            if out is None:
                return None
            p, i = F.softmax(out.float(), dim=-1).max(dim=-1)
            probs.append(p)
            ids.append(i)
    p = torch.cat(probs) if probs else residuals.new_zeros(0)
    i = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long, device=residuals.device)
    p, i = p.reshape(B, -1, T), i.reshape(B, -1, T)
    if logits is not None:
        p_last, i_last = F.softmax(logits.float(), dim=-1).max(dim=-1)   # (B, T)
        p, i = torch.cat((p, p_last[:, None]), dim=1), torch.cat((i, i_last[:, None]), dim=1)
    return p, i
