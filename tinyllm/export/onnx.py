"""Export a model directory to ONNX: a language model with a KV cache, or a classifier.

Language models get one graph that serves both prefill and single-token decode::

    inputs   input_ids             (batch, seq)                       int64
             seqlens_k             (batch,)                           int32: cache + seq - 1
             total_sequence_length ()                                 int32: cache + seq
             past.{i}.key          (batch, n_head, past, head_size)   float32, for every layer i
             past.{i}.value        (batch, n_head, past, head_size)
    outputs  logits                (batch, seq, vocab)                float32
             present.{i}.key       (batch, n_head, past', head_size)
             present.{i}.value     (batch, n_head, past', head_size)

Attention is ONNX Runtime's GroupQueryAttention (see :mod:`tinyllm.export.onnx_attention`): bound to
one buffer of ``context_length`` positions per layer as both past and present, the cache is
updated in place (past' = past); given a cache of exactly ``past`` positions, present is the cache
plus the new positions (past' = past + seq). Prefill starts from an empty cache. Classifiers get
``input_ids (batch, seq)``, ``lengths (batch,)`` -> ``logits (batch, n_classes)``, decoders' and
encoders' alike (right-padded; ``lengths`` counts the real tokens). Encoders without a
classification head become embedders: ``input_ids``, ``lengths`` -> ``hidden (batch, seq, n_embd)``,
the last hidden states, which the runtime pools (:mod:`tinyllm.runtime.onnx_encoder`).

The pipeline: ``torch.onnx.export(dynamo=True)`` (the TorchScript exporter, with plain attention
and a concatenated cache, only if dynamo fails), ONNX Runtime's transformer optimizer (fusions are
counted and reported), a check against torch, then with ``int8`` weight quantisation by
``onnxruntime.quantization``. Graphs over 2 GB keep their weights in an external ``.data`` file
beside the graph. Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm import modeldir, runlock
from tinyllm.atomic import EXPORT_TEMP_PREFIX, atomic_path, remove_stale_temps, reporting_full_disk
from tinyllm.config import is_encoder
from tinyllm.errors import RunFailed, UserError
from tinyllm.export import AUTO_8BIT, AUTO_CANDIDATES, FP32_FILE, INT8_FILE, QUANT_CHOICES
from tinyllm.export.onnx_attention import attention_mode, row_positions  # noqa: F401 (re-exported)
from tinyllm.export.onnx_passes import (LOGITS_INDEX, files_of, fold_constant_transposes,
                                        logits_at_positions, optimize_graph, pack_attention_inputs,
                                        quantize, quiet, save_onnx, tanh_gelu_to_fastgelu)
from tinyllm.models.decoder import GPT, RMSNorm

OPSET = 20                        # LayerNormalization (17) and Gelu with tanh (20) as single ops
TWO_GB = 2 ** 31                  # protobuf's limit: bigger graphs keep weights in external data


# ---- graphs ----------------------------------------------------------------------------------
def forward_with_past(model: GPT, input_ids: torch.Tensor, past, seqlens_k: torch.Tensor,
                      total: torch.Tensor, fused: bool = True,
                      rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                      rotary_fused: bool = False):
    """The decoder's forward pass with the KV cache as explicit tensors (ONNX has no in-place cache).

    ``past`` holds (B, nkv, P, hs) keys and values per layer (P may be 0; nkv key/value heads);
    ``total`` (int32 scalar) is P + T and ``seqlens_k`` (B,) int32 is total - 1 per row. Returns
    the final hidden states (B, T, C), after ln_f, and the presents (B, nkv, P+T, hs). Same
    weights and arithmetic as :meth:`GPT.hidden` with a :class:`KVCache`; the exporter checks the
    graph against torch. With ``fused`` each layer's attention is the custom op of
    :mod:`tinyllm.export.onnx_attention` (one GroupQueryAttention node, whose cache can be updated
    in place); without it, plain ONNX ops that concatenate the cache. A rotary model passes its
    ``rope`` tables (cos, sin: (context, hs/2), :func:`rope_tables`); with ``rotary_fused`` the
    attention operator rotates q and k itself, else plain ops rotate them before it.
    """
    from tinyllm.export.onnx_attention import attention, rotate

    cfg = model.config
    B, T = input_ids.shape
    P = past[0].shape[2]                          # positions already in the cache
    nh, nkv, hs = cfg.n_head, cfg.kv_heads, cfg.head_size
    start = (total - T).to(torch.long)            # == P; from an input, so shared buffers work too
    q_pos = torch.arange(T, device=input_ids.device) + start          # (T,) absolute positions
    # fused: each row at its own position (rows of a batch may hold caches of other lengths)
    pos = row_positions(seqlens_k, total, T) if fused else q_pos      # (B, T) or (T,)
    x = model.tok_emb(input_ids)                                      # (B, T, C)
    if model.pos_emb is not None:
        x = x + model.pos_emb(pos)
    angles = None                                 # cos, sin (B|1, T, hs/2) when ops rotate
    if rope is not None and not (fused and rotary_fused):
        angles = (rope[0][pos], rope[1][pos]) if fused else (rope[0][pos][None], rope[1][pos][None])
    mask = torch.arange(P + T, device=input_ids.device)[None, :] <= q_pos[:, None]  # (T, P+T)
    norm = (lambda m, h: m(h)) if fused else plain_norm
    presents = []
    for i, blk in enumerate(model.blocks):
        q, k, v = blk.attn.qkv(norm(blk.ln1, x)).split(blk.attn.sizes, dim=2)  # (B, T, nh*hs | nkv*hs)
        if angles is not None:
            q, k = rotate(q, *angles), rotate(k, *angles)
        if fused:
            tables = rope if rotary_fused else (None, None)
            y, k, v = attention(q, k, v, past[2 * i], past[2 * i + 1], seqlens_k, total, nh, nkv,
                                *tables)
        else:
            q = q.view(B, T, nh, hs).transpose(1, 2)                   # (B, nh, T, hs)
            k = torch.cat([past[2 * i], k.view(B, T, nkv, hs).transpose(1, 2)], dim=2)
            v = torch.cat([past[2 * i + 1], v.view(B, T, nkv, hs).transpose(1, 2)], dim=2)
            k_all, v_all = k, v                                         # (B, nkv, P+T, hs)
            if nkv != nh:  # each key/value head serves nh / nkv query heads
                k_all, v_all = (t.repeat_interleave(nh // nkv, dim=1) for t in (k, v))
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)  # (B, nh, T, hs)
            y = y.transpose(1, 2).reshape(B, T, nh * hs)
        presents += [k, v]                                              # (B, nkv, P+T, hs)
        x = x + blk.attn.proj(y)
        x = x + blk.mlp(norm(blk.ln2, x))
    return norm(model.ln_f, x), presents


def plain_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, with RMSNorm written out: the TorchScript exporter has no ``rms_norm``. The
    form is the one ORT's optimizer fuses into SimplifiedLayerNormalization."""
    if isinstance(norm, RMSNorm):
        return x * (1.0 / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)) * norm.weight
    return norm(x)


def rope_tables(model: GPT) -> tuple[torch.Tensor, torch.Tensor] | None:
    """cos and sin (context, hs/2) of a rotary model's angles at every position (None without
    rotary positions): the rows :meth:`GPT.rope` computes, so the graph rotates exactly as torch
    does. The two halves of GPT.rope's tables are equal; GroupQueryAttention takes one."""
    cfg = model.config
    if cfg.position != "rope":
        return None
    cos, sin = model.rope(torch.arange(cfg.context_length, device=model.tok_emb.weight.device),
                          torch.float32)                                # (context, hs)
    half = cfg.head_size // 2
    return cos[:, :half].contiguous(), sin[:, :half].contiguous()


class _Graph(nn.Module):
    """What both graph modules share: the model, how attention is exported (``fused``: the
    GroupQueryAttention op; the TorchScript fallback turns it off), and a rotary model's tables
    as buffers (initializers in the graph, shared by every layer)."""

    def __init__(self, model: GPT, mode: str = "fused"):
        super().__init__()
        self.model = model
        self.fused = mode != "plain"
        self.rotary_fused = mode == "rotary"   # GroupQueryAttention rotates q and k itself
        tables = rope_tables(model)
        self.has_rope = tables is not None
        if tables is not None:
            self.register_buffer("rope_cos", tables[0], persistent=False)
            self.register_buffer("rope_sin", tables[1], persistent=False)

    def with_past(self, input_ids, past, seqlens_k, total):
        rope = (self.rope_cos, self.rope_sin) if self.has_rope else None
        return forward_with_past(self.model, input_ids, past, seqlens_k, total, self.fused, rope,
                                 self.rotary_fused)


class LMWithPast(_Graph):
    """Language-model graph: ids, cache lengths and past keys/values -> logits and presents."""

    def forward(self, input_ids: torch.Tensor, seqlens_k: torch.Tensor, total: torch.Tensor,
                *past: torch.Tensor):
        h, presents = self.with_past(input_ids, past, seqlens_k, total)
        return (self.model.lm_head(h), *presents)


class ClassifierGraph(_Graph):
    """``model.classify`` as a graph: right-padded ids and their lengths -> class logits.

    With ``fused``, attention is the same single operator as in the language-model graph, over an
    empty cache; right padding needs no mask because no real token attends to it.
    """

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        m, cfg = self.model, self.model.config
        if self.fused:
            B, T = input_ids.shape
            empty = m.tok_emb.weight.new_zeros((B, cfg.kv_heads, 0, cfg.head_size))
            total = torch.full((), T, dtype=torch.int32, device=input_ids.device)
            seqlens = torch.full((B,), T - 1, dtype=torch.int32, device=input_ids.device)
            h, _ = self.with_past(input_ids, [empty] * (2 * cfg.n_layer), seqlens, total)
        else:
            h = m.hidden(input_ids)
        return m.cls_head(m.pool(h, lengths))


LM_CACHE_INPUTS = ["seqlens_k", "total_sequence_length"]


def lm_io_names(n_layer: int) -> tuple[list[str], list[str]]:
    kv = [f"{i}.{part}" for i in range(n_layer) for part in ("key", "value")]
    return (["input_ids", *LM_CACHE_INPUTS] + [f"past.{n}" for n in kv],
            ["logits"] + [f"present.{n}" for n in kv])


class EncoderGraph(nn.Module):
    """An encoder as a graph: right-padded ids and their lengths -> class logits (a classifier)
    or the last hidden states (an embedder)."""

    fused = False  # plain ONNX ops; ONNX Runtime's optimizer fuses LayerNorm, GELU and the biases

    def __init__(self, model, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "classify":
            return self.model.classify(input_ids, lengths)
        return self.model.hidden(input_ids, lengths)


def graph_kind(model: GPT) -> str:
    """"classify" for models with a classification head; else "embed" for encoders, "lm" for
    decoders."""
    if model.config.n_classes:
        return "classify"
    return "embed" if is_encoder(model) else "lm"


def example_inputs(model: GPT, kind: str, batch: int = 2, seq: int = 5, past: int = 3):
    """Inputs for tracing. Dynamic dimensions get sizes other than 0 and 1, which the exporter
    would otherwise treat as constants; the cache holds random values, not zeros."""
    cfg = model.config
    seq = min(seq, cfg.context_length - past)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), dtype=torch.long)
    if kind in ("classify", "embed"):
        return ids, torch.tensor([seq, seq - 2][:batch] + [seq] * (batch - 2), dtype=torch.long)
    shape = (batch, cfg.kv_heads, past, cfg.head_size)
    total = torch.tensor(past + seq, dtype=torch.int32)
    seqlens = torch.full((batch,), past + seq - 1, dtype=torch.int32)
    return (ids, seqlens, total, *[torch.randn(shape) * 0.5 for _ in range(2 * cfg.n_layer)])


# ---- export ----------------------------------------------------------------------------------
@dataclass
class ExportResult:
    kind: str                                      # "lm" or "classify"
    exporter: str                                  # "dynamo" or "torchscript"
    fp32_path: Path | None                         # None when only the int8 graph was kept
    int8_path: Path | None = None
    quant_method: str | None = None
    quant_check: dict | None = None                # auto: agreement/loss of each method tried
    fusions: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)   # file name -> bytes (graph + .data)
    seconds: float = 0.0
    fallback_reason: str | None = None             # why dynamo was not used
    folded: int = 0                                # constant Transposes folded into weights
    max_abs_diff: float = 0.0                      # fp32 graph vs torch on the tracing inputs

    def to_dict(self) -> dict:
        return {"kind": self.kind, "exporter": self.exporter,
                "fp32": str(self.fp32_path) if self.fp32_path else None,
                "int8": str(self.int8_path) if self.int8_path else None,
                "quant_method": self.quant_method, "quant_check": self.quant_check,
                "fusions": self.fusions, "sizes": self.sizes,
                "seconds": round(self.seconds, 2), "fallback_reason": self.fallback_reason,
                "max_abs_diff": self.max_abs_diff}


def _quiet_exporter():
    """The torch exporters print progress on stdout and warn freely."""
    return quiet(("torch.onnx", "torch.export", "torch._dynamo", "onnxscript",
                  "torch.fx.experimental.symbolic_shapes"))


def _torch_export(module: nn.Module, args: tuple, path: Path, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict[str, dict[int, str]],
                  force_torchscript: bool = False) -> tuple[str, str | None]:
    """Write ``module`` to ``path`` as one self-contained graph (weights external beside it if
    large). Returns (exporter used, why dynamo failed or None)."""
    reason = None
    if not force_torchscript:
        dims: dict[str, torch.export.Dim] = {}
        per_input = [{ax: dims.setdefault(name, torch.export.Dim(name))
                      for ax, name in dynamic_axes.get(n, {}).items()} for n in input_names]
        # torch.export sees forward(a, b, *past) as (a, b, past_tuple)
        fixed = _fixed_args(module)
        shapes = (*per_input[:fixed], tuple(per_input[fixed:])) if fixed is not None \
            else tuple(per_input)
        try:
            table = {}
            if getattr(module, "fused", False):
                from tinyllm.export.onnx_attention import translation_table

                table = translation_table()
            with _quiet_exporter():
                prog = torch.onnx.export(module, args, dynamo=True, opset_version=OPSET,
                                         input_names=input_names, output_names=output_names,
                                         dynamic_shapes=shapes, verbose=False,
                                         custom_translation_table=table)
                prog.save(str(path), external_data=_needs_external(module))
            return "dynamo", None
        except Exception as e:  # any exporter failure: fall back, and say why
            reason = _first_error_line(e)
    if getattr(module, "fused", False):
        module.fused = False  # the fallback uses plain ONNX ops only
    with _quiet_exporter():
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    if _needs_external(module):  # the TorchScript exporter writes loose tensor files
        import onnx

        save_onnx(onnx.load(str(path)), path, external=True)
    return "torchscript", reason


def _fixed_args(module: nn.Module) -> int | None:
    """How many positional parameters come before ``*args`` in forward (None: no ``*args``)."""
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    for i, p in enumerate(params):
        if p.kind is p.VAR_POSITIONAL:
            return i
    return None


def _first_error_line(e: Exception) -> str:
    """The informative line of an exporter error (torch.onnx wraps the cause in advice text)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if ln.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1][:300]
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def _needs_external(module: nn.Module) -> bool:
    return sum(p.numel() * p.element_size() for p in module.parameters()) > TWO_GB * 0.9


# ---- the whole pipeline ----------------------------------------------------------------------
def _initializer_bytes(proto) -> int:
    import numpy as np
    from onnx import helper

    total = 0
    for t in proto.graph.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        total += n * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    return total


def _set_metadata(proto, meta: dict[str, str]) -> None:
    import onnx

    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **meta})


def _verify(module: nn.Module, path: Path, cases: list[tuple], input_names: list[str]) -> float:
    """Max |ONNX - torch| over ``cases`` (tuples of inputs): an export that changes the numbers
    fails loudly."""
    import numpy as np

    from tinyllm.runtime.session import open_session

    sess = open_session(path, threads=1)
    have = {i.name for i in sess.get_inputs()}  # an exporter may drop an input the graph ignores
    worst = 0.0
    for args in cases:
        with torch.no_grad():
            ref = module(*args)
        ref = ref[0] if isinstance(ref, tuple) else ref
        feeds = {n: a.numpy() for n, a in zip(input_names, args) if n in have}
        if LOGITS_INDEX in have:  # every position's logits, as the module computes them
            feeds[LOGITS_INDEX] = np.arange(args[0].shape[1], dtype=np.int64)
        got = sess.run([sess.get_outputs()[0].name], feeds)[0]
        worst = max(worst, float(abs(got - ref.numpy()).max()))
    return worst


def verify_cases(model: GPT, kind: str) -> list[tuple]:
    """Inputs to check an export with: a batch from an empty cache, and one row after a cache
    (GroupQueryAttention takes several new tokens after a cache only at batch 1)."""
    if kind in ("classify", "embed"):
        return [example_inputs(model, kind, batch=3, seq=7)]
    return [example_inputs(model, kind, batch=2, seq=6, past=0),
            example_inputs(model, kind, batch=1, seq=4, past=5),
            example_inputs(model, kind, batch=2, seq=1, past=6)]


def _install(written: list[Path], out: Path) -> None:
    """Move finished graphs into ``out``: the data file first, then the graph, each atomically."""
    for src in written:
        files = files_of(src)
        for f in reversed(files):
            os.replace(f, out / f.name)
        stale = out / (src.name + ".data")
        if len(files) == 1 and stale.exists():
            stale.unlink()


def _quantize(model: GPT, kind: str, fp32: Path, dst: Path, quant: str, external: bool,
              log: Callable[[str], None]) -> tuple[str, dict | None]:
    """Write ``dst`` with quantized weights; returns (method, the auto check or None).

    ``auto`` measures: for a language model whose training text is at hand, each method, fastest
    first (4-bit, then the 8-bit ones), until one keeps the top-1 next token of the float graph
    on >= 97% of the validation split and its loss within 2% (:mod:`tinyllm.export.onnx_check`);
    imported pretrained weights are checked the same way on a bundled held-out text (The
    Verdict). For an encoder, each 8-bit method until one keeps sample texts' embeddings within
    cosine 0.99 of the float graph's (or a classifier's labels on 99% of them). Without any text,
    and for decoder classifiers, it is ``dynamic``, the fastest 8-bit one."""
    from tinyllm.export.onnx_check import (HELD_OUT_CONTEXT, choose_encoder_quantization,
                                           choose_quantization, held_out_ids,
                                           model_validation_ids)
    from tinyllm.tokenizer import from_spec

    if quant != "auto":
        log(f"quantizing weights ({quant})")
        quantize(fp32, dst, quant, external)  # keeps the metadata, sets tinyllm.quant
        return quant, None
    if is_encoder(model):
        from tinyllm.runtime.textbatch import encode_texts, pad_id_of

        tok = from_spec(model.meta.get("tokenizer"), model.path)
        rows = encode_texts(tok, encoder_sample_texts(Path(model.path)), model.config.context_length)
        log(f"quantizing weights (auto: the fastest 8-bit method that keeps {len(rows)} sample "
            f"texts close to float)")
        return choose_encoder_quantization(fp32, dst, rows, pad_id_of(tok), kind,
                                           lambda a, b, m: quantize(a, b, m, external),
                                           AUTO_8BIT, log)
    ids, context, where = None, model.config.context_length, "the validation split of the training text"
    if kind == "lm":
        tok = modeldir.load_tokenizer(model.path)
        ids = model_validation_ids(model.path, model.meta, tok)
        if ids is None and model.meta.get("source"):  # imported: not trained on that text
            ids = held_out_ids(tok)
            context, where = min(context, HELD_OUT_CONTEXT), "a bundled held-out text (The Verdict)"
    if ids is None:
        log("quantizing weights (auto: dynamic, the fastest 8-bit method; no text to check a "
            "4-bit one on)")
        quantize(fp32, dst, AUTO_8BIT[0], external)
        return AUTO_8BIT[0], None
    log(f"quantizing weights (auto: the fastest method that stays close to float on {where})")
    return choose_quantization(fp32, dst, ids, context,
                               lambda a, b, m: quantize(a, b, m, external), AUTO_CANDIDATES, log)


def encoder_sample_texts(model_dir: Path, n: int = 256) -> list[str]:
    """Texts to check an encoder's quantization on: its test split (a classifier made by
    `tinyllm finetune classify` keeps one beside it), else messages of the bundled SMS corpus."""
    from tinyllm.data.classification import read_examples
    from tinyllm.tokenizer import BUNDLED

    for path in (model_dir / "test.jsonl", BUNDLED / "data" / "SMSSpamCollection.tsv"):
        try:
            texts = [e.text for e in read_examples(path)] if path.is_file() else []
        except UserError:
            texts = []
        if texts:
            return texts[:n]
    return ["A sentence to check the quantized graph on."]


def _copy_model_files(src: Path, out: Path) -> None:
    """Make ``out`` a model directory the ONNX backend runs on its own: config.yaml and the
    tokenizer file beside the graphs (the weights are in the graphs)."""
    import shutil

    meta = modeldir.read_info(src).meta
    names = [modeldir.CONFIG]
    spec = meta.get("tokenizer")
    if isinstance(spec, dict) and spec.get("file"):
        names.append(spec["file"])
    for name in names:
        if (src / name).is_file():
            with atomic_path(out / name) as tmp:
                shutil.copyfile(src / name, tmp)


def _remove_stale(path: Path, log: Callable[[str], None]) -> None:
    """A graph left from an earlier export no longer matches the weights: remove it."""
    if path.exists():
        for f in files_of(path):
            f.unlink()
        log(f"removed {path} from an earlier export")


def _prepare_export_dir(src: Path, out: Path, overwrite: bool, log: Callable[[str], None]
                        ) -> list[str]:
    """Check the folder the graphs go to, changing nothing; returns the names an ``overwrite``
    removes once the new graphs are ready. The model's own folder, or an earlier export of this
    same model (the same config.yaml), takes the graphs; another folder must be new or empty
    unless ``overwrite`` (:func:`tinyllm.modeldir.prepare_output`)."""
    mine = out / modeldir.CONFIG
    if out.resolve() == src.resolve() or \
            (mine.is_file() and mine.read_bytes() == (src / modeldir.CONFIG).read_bytes()):
        return []
    return modeldir.prepare_output(out, overwrite, log=log, remove=False)


def export_model(name_or_path: str | Path | None, out_dir: str | Path | None = None,
                 int8: bool = False, quant: str = QUANT_CHOICES[0], keep_fp32: bool = True,
                 optimize: bool = True, external_data: bool | None = None,
                 force_torchscript: bool = False, overwrite: bool = False,
                 log: Callable[[str], None] | None = None) -> ExportResult:
    """Export a model directory (path or name) to ``out_dir`` (default: the model directory).

    Writes ``model.onnx`` and, with ``int8``, ``model.int8.onnx`` (weights quantized by ``quant``;
    ``auto``: see :func:`_quantize`); ``keep_fp32=False`` keeps only the int8 graph. Another ``out_dir`` also gets config.yaml and
    the tokenizer file, so it is a model directory that ``--backend onnx`` runs without torch or
    the safetensors weights. ``external_data`` None keeps the weights inside the graph unless it
    would pass 2 GB. The folder written is held under its run lock; another ``out_dir`` must be
    empty, or an earlier export of this same model, unless ``overwrite``.
    """
    import tempfile

    import onnx

    from tinyllm.checkpoint import load_model

    if not (int8 or keep_fp32):
        raise UserError("nothing to write: keeping only the int8 graph needs --int8")
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    from tinyllm import modeldir

    model = load_model(name_or_path).float()  # the graphs are float32 (then int8 / 4-bit)
    cfg = model.config
    out = Path(out_dir) if out_dir else Path(model.path)
    with runlock.acquire(out):  # no trainer (or other export) writes the folder meanwhile
        stale = _prepare_export_dir(Path(model.path), out, overwrite, log)
        remove_stale_temps(out)  # an earlier export's working folder, before this one makes its own
        kind = graph_kind(model)
        if is_encoder(model):
            module = EncoderGraph(model, kind).eval()
            names = (["input_ids", "lengths"], ["logits" if kind == "classify" else "hidden"])
            dyn = {"input_ids": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}
        elif kind == "classify":
            mode = attention_mode(cfg.head_size, cfg.position == "rope")
            module = ClassifierGraph(model, mode).eval()
            names = (["input_ids", "lengths"], ["logits"])
            dyn = {"input_ids": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}}
        else:
            mode = attention_mode(cfg.head_size, cfg.position == "rope")
            module, names = LMWithPast(model, mode).eval(), lm_io_names(cfg.n_layer)
            dyn = {"input_ids": {0: "batch", 1: "seq"}, "seqlens_k": {0: "batch"},
                   **{n: {0: "batch", 2: "past"} for n in names[0] if n.startswith("past.")}}
        torch.manual_seed(0)
        args = example_inputs(model, kind)

        with tempfile.TemporaryDirectory(dir=out, prefix=EXPORT_TEMP_PREFIX) as tmp, \
                reporting_full_disk(out / FP32_FILE):  # asked before the temp folder is removed
            tmp = Path(tmp)
            log(f"exporting the {kind} graph of {model.path} with torch.onnx (dynamo)")
            exporter, reason = _torch_export(module, args, tmp / "raw.onnx", *names, dyn,
                                             force_torchscript=force_torchscript)
            if reason:
                log(f"the dynamo exporter failed ({reason}); used the TorchScript exporter")
            proto = onnx.load(str(tmp / "raw.onnx"))
            folded = fold_constant_transposes(proto)
            tanh_gelu_to_fastgelu(proto)
            fusions: dict[str, int] = {}
            if optimize:
                proto, fusions = optimize_graph(proto, cfg.n_head, cfg.n_embd,
                                                "bert" if is_encoder(model) else "gpt2")
            n_attn = sum(n.op_type == "GroupQueryAttention" for n in proto.graph.node)
            if n_attn:  # fused by the exporter itself (see onnx_attention), not by the optimizer
                fusions = dict(sorted({**fusions, "GroupQueryAttention": n_attn}.items()))
            log("fused operators: " + (", ".join(f"{k} x{v}" for k, v in fusions.items()) or "none"))
            pack_attention_inputs(proto)  # GroupQueryAttention reads the QKV projection whole
            if kind == "lm":
                logits_at_positions(proto)  # the LM head only at the positions asked for
            del proto.graph.value_info[:]  # stale shape notes after fusion trip ORT's quantizer
            external = (_initializer_bytes(proto) > TWO_GB * 0.9 if external_data is None
                        else external_data)
            meta = {"tinyllm.kind": kind, "tinyllm.exporter": exporter, "tinyllm.quant": "none",
                    # GroupQueryAttention updates a shared cache buffer in place
                    "tinyllm.kv_cache": "shared" if module.fused else "concat",
                    # rows of one batch may sit at different positions (batched decoding)
                    "tinyllm.positions": "per_row" if module.fused else "shared",
                    "tinyllm.context_length": str(cfg.context_length),
                    "tinyllm.saved_at": str(model.meta.get("saved_at"))}
            _set_metadata(proto, meta)
            fp32 = tmp / FP32_FILE
            save_onnx(proto, fp32, external)
            del proto
            diff = _verify(module, fp32, verify_cases(model, kind), names[0])
            log(f"checked against torch: max |difference| {diff:.2e}")
            if diff > 1e-3:
                raise RunFailed(f"{model.path}: the exported graph differs from torch by {diff:.2e}")
            written = [fp32] if keep_fp32 else []
            method, check = None, None
            if int8:
                q8 = tmp / INT8_FILE
                method, check = _quantize(model, kind, fp32, q8, quant, external, log)
                written.append(q8)
            if stale:  # --overwrite: the other model's files go once the new graphs are ready
                log(f"note: --overwrite: removed {', '.join(modeldir.remove_files(out, stale))} "
                    f"from {out}")
            _install(written, out)
            if out.resolve() != Path(model.path).resolve():
                _copy_model_files(Path(model.path), out)
            for name in ({FP32_FILE, INT8_FILE} - {p.name for p in written}):
                _remove_stale(out / name, log)
        result = ExportResult(kind=kind, exporter=exporter,
                              fp32_path=out / FP32_FILE if keep_fp32 else None,
                              int8_path=out / INT8_FILE if int8 else None,
                              quant_method=method, quant_check=check, fusions=fusions,
                              fallback_reason=reason, folded=folded, max_abs_diff=diff)
        result.sizes = {f.name: f.stat().st_size for p in written for f in files_of(out / p.name)}
        result.seconds = time.perf_counter() - t0
        return result
