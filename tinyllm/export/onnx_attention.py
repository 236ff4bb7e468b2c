"""Causal attention over a KV cache as one ONNX Runtime operator.

Exported the plain way, each layer's attention is ~20 small ONNX nodes (reshapes, transposes, the
cache Concat, two MatMuls, a masked Softmax); at batch 1 their overhead is a tenth of a decode step.
ONNX Runtime has one CPU kernel for all of it, ``com.microsoft.MultiHeadAttention`` with
``past_key``/``past_value`` inputs, ``present_key``/``present_value`` outputs and
``unidirectional=1`` (causal, offset by the cache length). Its transformer optimizer only fuses the
pattern that Hugging Face's GPT-2 export produces, so tinyllm emits the operator itself:

* torch side: the custom op ``tinyllm::attention(q, k, v, past_k, past_v, n_head) -> (y, present_k,
  present_v)``; its eager implementation is the same arithmetic as :class:`tinyllm.model.GPT` (SDPA
  with the cache-offset causal mask), so the export can be checked against torch;
* ONNX side: a translation for ``torch.onnx.export(dynamo=True)`` to MultiHeadAttention. onnxscript
  needs an operator schema to emit a node, and ``onnx`` knows no com.microsoft schemas, so a minimal
  one is registered here (export time only; the runtime never imports this module).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.library.custom_op("tinyllm::attention", mutates_args=())
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past_k: torch.Tensor,
              past_v: torch.Tensor, n_head: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, T, C); past_k, past_v (B, nh, P, hs) -> y (B, T, C), presents (B, nh, P+T, hs)."""
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
def _attention_shapes(q, k, v, past_k, past_v, n_head):
    B, T, C = q.shape
    present = (B, past_k.shape[1], past_k.shape[2] + T, past_k.shape[3])
    return q.new_empty(q.shape), q.new_empty(present), q.new_empty(present)


_SCHEMA = None


def _mha_schema():
    """A minimal schema for com.microsoft.MultiHeadAttention (the inputs and attributes used)."""
    global _SCHEMA
    if _SCHEMA is None:
        import onnx.defs as D

        fp, opt = D.OpSchema.FormalParameter, D.OpSchema.FormalParameterOption.Optional
        _SCHEMA = D.OpSchema(
            "MultiHeadAttention", "com.microsoft", 1,
            inputs=[fp("query", "T"), fp("key", "T", param_option=opt),
                    fp("value", "T", param_option=opt), fp("bias", "T", param_option=opt),
                    fp("key_padding_mask", "M", param_option=opt),
                    fp("attention_bias", "T", param_option=opt),
                    fp("past_key", "T", param_option=opt), fp("past_value", "T", param_option=opt)],
            outputs=[fp("output", "T"), fp("present_key", "T", param_option=opt),
                     fp("present_value", "T", param_option=opt)],
            type_constraints=[("T", ["tensor(float)"], ""), ("M", ["tensor(int32)"], "")],
            attributes=[D.OpSchema.Attribute("num_heads", D.OpSchema.AttrType.INT, ""),
                        D.OpSchema.Attribute("unidirectional", D.OpSchema.AttrType.INT, "")])
        try:
            D.register_schema(_SCHEMA)
        except Exception:  # already registered in this process (or by a newer onnx)
            pass
    return _SCHEMA


def translation_table() -> dict:
    """``custom_translation_table`` for torch.onnx.export: tinyllm::attention -> MultiHeadAttention."""
    import onnxscript

    mha = onnxscript.values.Op(onnxscript.values.Opset("com.microsoft", 1), "MultiHeadAttention",
                               _mha_schema())

    def attention_onnx(q, k, v, past_k, past_v, n_head: int):
        return mha(q, k, v, None, None, None, past_k, past_v, num_heads=n_head, unidirectional=1,
                   _outputs=3)

    return {torch.ops.tinyllm.attention.default: attention_onnx}
