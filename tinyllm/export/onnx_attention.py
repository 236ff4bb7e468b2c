"""Causal attention over a KV cache as one ONNX Runtime operator, with a cache that is never copied.

Exported the plain way, each layer's attention is ~20 small ONNX nodes (reshapes, transposes, the
cache Concat, two MatMuls, a masked Softmax), and every decode step copies the whole cache into a
new, longer ``present`` tensor. ONNX Runtime's ``com.microsoft.GroupQueryAttention`` does all of it
in one CPU kernel, and when ``past_key`` and ``present_key`` are the *same* buffer (bound so by
:class:`tinyllm.runtime.onnx_decoder.OnnxDecoder`) it writes the new positions in place: nothing is copied or
allocated per step. With as many key/value heads as query heads it is GPT-2's multi-head attention;
with fewer it is a Llama-family model's grouped-query attention (``kv_num_heads``), and given the
rotary tables (``cos_cache``/``sin_cache``, ``do_rotary``) it also rotates q and k by each row's
positions, Llama's half-split layout (``rotary_interleaved=0``). ORT's transformer optimizer only
fuses the attention pattern of Hugging Face's GPT-2 export, so tinyllm emits the operator itself:

* torch side: the custom op ``tinyllm::attention(q, k, v, past_k, past_v, seqlens_k, total,
  n_head, n_kv_head, cos, sin) -> (y, present_k, present_v)``. Its eager implementation (used only
  to check the export) is the cache-offset causal SDPA of :class:`tinyllm.models.decoder.GPT`,
  with ``present = cat(past, new)``: GroupQueryAttention's behaviour when the buffers are not
  shared.
* ONNX side: a translation for ``torch.onnx.export(dynamo=True)``. onnxscript needs an operator
  schema to emit a node and ``onnx`` knows no com.microsoft schemas, so a minimal one is registered
  here (export time only; the runtime never imports this module).

``seqlens_k`` (B,) int32 is each row's total length minus one, ``total`` the int32 total length
(cache + new tokens), as GroupQueryAttention defines them.

ONNX Runtime's CPU kernel needs a head size that divides by 8, and by 16 to rotate
(:func:`attention_mode`); other models rotate with plain ops before the operator, or (head sizes
that 8 does not divide) export plain attention with a concatenated cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def row_positions(seqlens_k: torch.Tensor, total: torch.Tensor, T: int) -> torch.Tensor:
    """Absolute positions (B, T) of the new tokens of each row, as GroupQueryAttention places them.

    A row's cache holds ``seqlens_k + 1 - T`` positions, so its new tokens sit right after them;
    when ``total == T`` (a prompt from an empty cache) every row starts at 0, and right-padded rows
    (``seqlens_k`` < T - 1) keep their real tokens at 0..len-1. Batched decoding relies on this:
    one step feeds rows whose caches differ in length (see
    :class:`tinyllm.runtime.onnx_decoder.BatchedOnnxDecoder`).
    """
    past = seqlens_k.to(torch.long) + 1 - T                            # (B,)
    past = torch.where(total.to(torch.long) == T, torch.zeros_like(past), past)
    return past[:, None] + torch.arange(T, device=seqlens_k.device)[None, :]   # (B, T)


def attention_mode(head_size: int, rotary: bool) -> str:
    """How a model's attention is exported, from what ONNX Runtime's CPU kernel accepts:

    ``rotary`` (GroupQueryAttention rotates q and k itself: head size a multiple of 16),
    ``fused`` (GroupQueryAttention; a rotary model's q and k are rotated by plain ops before it:
    head size a multiple of 8), ``plain`` (ordinary ops and a concatenated cache)."""
    if head_size % 8:
        return "plain"
    return "rotary" if rotary and head_size % 16 == 0 else "fused"


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, h * hs) rotated by per-row angles: cos, sin (B, T, hs/2) (the rotary tables'
    rows at each token's position), Llama's half-split layout as in
    :func:`tinyllm.models.decoder.apply_rope`."""
    from tinyllm.models.decoder import apply_rope

    B, T, _ = x.shape
    hs = 2 * cos.shape[-1]
    x = x.view(B, T, -1, hs)                                           # (B, T, h, hs)
    cos = torch.cat((cos, cos), dim=-1)[:, :, None, :]                 # (B, T, 1, hs)
    sin = torch.cat((sin, sin), dim=-1)[:, :, None, :]
    return apply_rope(x, cos, sin).reshape(B, T, -1)


@torch.library.custom_op("tinyllm::attention", mutates_args=())
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_k: torch.Tensor,
              past_v: torch.Tensor, seqlens_k: torch.Tensor, total: torch.Tensor,
              n_head: int, n_kv_head: int, cos: torch.Tensor | None = None,
              sin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q (B, T, nh*hs), k and v (B, T, nkv*hs); past (B, nkv, P, hs) -> y (B, T, nh*hs), presents
    (B, nkv, P+T, hs). With ``cos``/``sin`` (positions, hs/2), q and k are rotated first, at
    :func:`row_positions`; the presents hold rotated keys, as in the model's own cache."""
    B, T, _ = q.shape
    hs = past_k.shape[3]
    P = past_k.shape[2]
    if cos is not None and sin is not None:
        pos = row_positions(seqlens_k, total, T)                                 # (B, T)
        q, k = rotate(q, cos[pos], sin[pos]), rotate(k, cos[pos], sin[pos])
    q = q.view(B, T, n_head, hs).transpose(1, 2)                                 # (B, nh, T, hs)
    k = torch.cat([past_k, k.view(B, T, n_kv_head, hs).transpose(1, 2)], dim=2)  # (B, nkv, P+T, hs)
    v = torch.cat([past_v, v.view(B, T, n_kv_head, hs).transpose(1, 2)], dim=2)
    q_pos = torch.arange(T, device=q.device) + P
    mask = torch.arange(P + T, device=q.device)[None, :] <= q_pos[:, None]   # (T, P+T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                       enable_gqa=n_kv_head != n_head)          # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, n_head * hs), k, v


@attention.register_fake
def _attention_shapes(q, k, v, past_k, past_v, seqlens_k, total, n_head, n_kv_head, cos=None,
                      sin=None):
    present = (past_k.shape[0], past_k.shape[1], past_k.shape[2] + q.shape[1], past_k.shape[3])
    return q.new_empty(q.shape), q.new_empty(present), q.new_empty(present)


_SCHEMA = None


def _gqa_schema():
    """A minimal schema for com.microsoft.GroupQueryAttention (the inputs and attributes used)."""
    global _SCHEMA
    if _SCHEMA is None:
        import onnx.defs as D

        fp, opt = D.OpSchema.FormalParameter, D.OpSchema.FormalParameterOption.Optional
        INT = D.OpSchema.AttrType.INT
        _SCHEMA = D.OpSchema(
            "GroupQueryAttention", "com.microsoft", 1,
            inputs=[fp("query", "T"), fp("key", "T", param_option=opt),
                    fp("value", "T", param_option=opt), fp("past_key", "T", param_option=opt),
                    fp("past_value", "T", param_option=opt), fp("seqlens_k", "M"),
                    fp("total_sequence_length", "M"), fp("cos_cache", "T", param_option=opt),
                    fp("sin_cache", "T", param_option=opt)],
            outputs=[fp("output", "T"), fp("present_key", "T"), fp("present_value", "T")],
            type_constraints=[("T", ["tensor(float)"], ""), ("M", ["tensor(int32)"], "")],
            attributes=[D.OpSchema.Attribute("num_heads", INT, ""),
                        D.OpSchema.Attribute("kv_num_heads", INT, ""),
                        D.OpSchema.Attribute("do_rotary", INT, "", required=False),
                        D.OpSchema.Attribute("rotary_interleaved", INT, "", required=False)])
        try:
            D.register_schema(_SCHEMA)
        except Exception:  # already registered in this process (or by a newer onnx)
            pass
    return _SCHEMA


def translation_table() -> dict:
    """``custom_translation_table`` for torch.onnx.export: tinyllm::attention -> GroupQueryAttention."""
    import onnxscript

    gqa = onnxscript.values.Op(onnxscript.values.Opset("com.microsoft", 1), "GroupQueryAttention",
                               _gqa_schema())

    def attention_onnx(q, k, v, past_k, past_v, seqlens_k, total, n_head: int, n_kv_head: int,
                       cos=None, sin=None):
        if cos is None:
            return gqa(q, k, v, past_k, past_v, seqlens_k, total, num_heads=n_head,
                       kv_num_heads=n_kv_head, _outputs=3)
        return gqa(q, k, v, past_k, past_v, seqlens_k, total, cos, sin, num_heads=n_head,
                   kv_num_heads=n_kv_head, do_rotary=1, rotary_interleaved=0, _outputs=3)

    return {torch.ops.tinyllm.attention.default: attention_onnx}
