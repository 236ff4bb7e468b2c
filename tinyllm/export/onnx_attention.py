"""Causal attention over a KV cache as one ONNX Runtime operator, with a cache that is never copied.

Exported the plain way, each layer's attention is ~20 small ONNX nodes (reshapes, transposes, the
cache Concat, two MatMuls, a masked Softmax), and every decode step copies the whole cache into a
new, longer ``present`` tensor. ONNX Runtime's ``com.microsoft.GroupQueryAttention`` does all of it
in one CPU kernel, and when ``past_key`` and ``present_key`` are the *same* buffer (bound so by
:class:`tinyllm.runtime.onnx_decoder.OnnxDecoder`) it writes the new positions in place: nothing is copied or
allocated per step. With as many key/value heads as query heads it is GPT-2's multi-head attention.
ORT's transformer optimizer only fuses the attention pattern of Hugging Face's GPT-2 export, so
tinyllm emits the operator itself:

* torch side: the custom op ``tinyllm::attention(q, k, v, past_k, past_v, seqlens_k, total,
  n_head) -> (y, present_k, present_v)``. Its eager implementation (used only to check the export)
  is the cache-offset causal SDPA of :class:`tinyllm.models.decoder.GPT`, with ``present = cat(past, new)``:
  GroupQueryAttention's behaviour when the buffers are not shared.
* ONNX side: a translation for ``torch.onnx.export(dynamo=True)``. onnxscript needs an operator
  schema to emit a node and ``onnx`` knows no com.microsoft schemas, so a minimal one is registered
  here (export time only; the runtime never imports this module).

``seqlens_k`` (B,) int32 is each row's total length minus one, ``total`` the int32 total length
(cache + new tokens), as GroupQueryAttention defines them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.library.custom_op("tinyllm::attention", mutates_args=())
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_k: torch.Tensor,
              past_v: torch.Tensor, seqlens_k: torch.Tensor, total: torch.Tensor,
              n_head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, T, C); past (B, nh, P, hs) -> y (B, T, C), presents (B, nh, P+T, hs)."""
    B, T, C = q.shape
    hs = C // n_head
    P = past_k.shape[2]
    q = q.view(B, T, n_head, hs).transpose(1, 2)                                # (B, nh, T, hs)
    k = torch.cat([past_k, k.view(B, T, n_head, hs).transpose(1, 2)], dim=2)    # (B, nh, P+T, hs)
    v = torch.cat([past_v, v.view(B, T, n_head, hs).transpose(1, 2)], dim=2)
    q_pos = torch.arange(T, device=q.device) + P
    mask = torch.arange(P + T, device=q.device)[None, :] <= q_pos[:, None]   # (T, P+T)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)                # (B, nh, T, hs)
    return y.transpose(1, 2).reshape(B, T, C), k, v


@attention.register_fake
def _attention_shapes(q, k, v, past_k, past_v, seqlens_k, total, n_head):
    B, T, C = q.shape
    present = (B, past_k.shape[1], past_k.shape[2] + T, past_k.shape[3])
    return q.new_empty(q.shape), q.new_empty(present), q.new_empty(present)


_SCHEMA = None


def _gqa_schema():
    """A minimal schema for com.microsoft.GroupQueryAttention (the inputs and attributes used)."""
    global _SCHEMA
    if _SCHEMA is None:
        import onnx.defs as D

        fp, opt = D.OpSchema.FormalParameter, D.OpSchema.FormalParameterOption.Optional
        _SCHEMA = D.OpSchema(
            "GroupQueryAttention", "com.microsoft", 1,
            inputs=[fp("query", "T"), fp("key", "T", param_option=opt),
                    fp("value", "T", param_option=opt), fp("past_key", "T", param_option=opt),
                    fp("past_value", "T", param_option=opt), fp("seqlens_k", "M"),
                    fp("total_sequence_length", "M")],
            outputs=[fp("output", "T"), fp("present_key", "T"), fp("present_value", "T")],
            type_constraints=[("T", ["tensor(float)"], ""), ("M", ["tensor(int32)"], "")],
            attributes=[D.OpSchema.Attribute("num_heads", D.OpSchema.AttrType.INT, ""),
                        D.OpSchema.Attribute("kv_num_heads", D.OpSchema.AttrType.INT, "")])
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

    def attention_onnx(q, k, v, past_k, past_v, seqlens_k, total, n_head: int):
        return gqa(q, k, v, past_k, past_v, seqlens_k, total, num_heads=n_head,
                   kv_num_heads=n_head, _outputs=3)

    return {torch.ops.tinyllm.attention.default: attention_onnx}
