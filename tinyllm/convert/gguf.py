"""GGUF files (llama.cpp's format) in: ``import_gguf``, with ggml's own reader (the ``gguf`` package).

A GGUF holds the model's shape as metadata, the tokenizer as metadata (``tokenizer.ggml.*``), the
chat template (``tokenizer.chat_template``) and the tensors, most of them quantized. The import:

- metadata (``{arch}.block_count``, ``.embedding_length``, ``.attention.head_count_kv``,
  ``.rope.freq_base``...) becomes ``config.yaml``, through the same mapping as a Hugging Face
  config.json (:func:`tinyllm.convert.llama.model_config_from_hf`);
- the embedded tokenizer (BPE tokens, merges, token types, special ids) becomes a
  ``tokenizer.json`` for Hugging Face ``tokenizers``, split the way llama.cpp splits text for
  the file's ``tokenizer.ggml.pre``; control tokens (``<|im_start|>``) are special tokens;
- ``tokenizer.chat_template`` is stored as ``chat_template.jinja``;
- every tensor is dequantized to float32 with ``gguf.quants.dequantize`` (F32, F16, BF16, Q8_0,
  Q4_0, Q4_1, Q5_0, Q5_1, the K-quants, the IQ types: whatever the package implements), and
  llama.cpp's Q/K row permutation is undone for ``llama`` files: its converter interleaves the
  two halves of each rotary head (``permute`` in convert_hf_to_gguf.py); tinyllm, like
  transformers, keeps them apart.

Architectures: ``llama`` (Llama 2/3, SmolLM2, Mistral) and ``qwen2``. Anything else, a tensor type
the package cannot dequantize, a tokenizer model other than byte-level BPE, or a truncated file
is refused with a message that names it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tinyllm import modeldir
from tinyllm.checkpoint import write_meta
from tinyllm.convert.gpt2 import _check_out, _holding_out_lock
from tinyllm.convert.llama import (LlamaError, model_config_from_hf, summary, tensor_plan,
                                   tensor_shapes, write_tokenizer_and_template)
from tinyllm.convert.tensors import write_safetensors
from tinyllm.tokenizer import HFTokenizer, _bytes_to_unicode

Log = Callable[[str], None]
Progress = Callable[[int, int], None]

# GGUF general.architecture -> (Hugging Face model_type, whether Q/K rows are permuted)
ARCHITECTURES = {"llama": ("llama", True), "qwen2": ("qwen2", False)}
# tinyllm's HF-style tensor names (without ``model.``) -> GGUF names
_NAMES = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
          "lm_head.weight": "output.weight"}
_LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

# how llama.cpp splits text before BPE, by tokenizer.ggml.pre (llama-vocab.cpp)
_GPT2_SPLIT = None  # ByteLevel's own regex
_DIGITS_THEN_GPT2 = "digits"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS: dict[str, Any] = {
    "default": _GPT2_SPLIT, "gpt2": _GPT2_SPLIT, "gpt-2": _GPT2_SPLIT,
    "smollm": _DIGITS_THEN_GPT2, "starcoder": _DIGITS_THEN_GPT2, "refact": _DIGITS_THEN_GPT2,
    "codeshell": _DIGITS_THEN_GPT2, "command-r": _DIGITS_THEN_GPT2,
    "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT, "dbrx": _LLAMA3_SPLIT, "falcon3": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT, "megrez": _QWEN2_SPLIT,
}
CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values


class GGUFError(LlamaError):
    """A GGUF file that cannot be imported, and why (architecture, tensor type, truncation)."""


# ---- reading -----------------------------------------------------------------------------------
def open_gguf(path: str | Path):
    """A ``gguf.GGUFReader`` for ``path``, or a clear error for a missing, foreign or cut file."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader indexes past the end of a cut file
        raise GGUFError(f"{path}: truncated or corrupt GGUF file ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise GGUFError(f"{path}: truncated GGUF file: tensor {t.name} ends at byte "
                            f"{t.data_offset + t.n_bytes}, the file has {size}")
    return reader


def metadata(reader) -> dict[str, Any]:
    """Every metadata field as a Python value (arrays as lists)."""
    out = {}
    for key, field in reader.fields.items():
        try:
            out[key] = field.contents()
        except Exception:  # a field type this version of the package cannot decode
            continue
    return out


def hf_config_from_gguf(meta: dict[str, Any], tensors: dict[str, Any], where: str) -> dict[str, Any]:
    """The GGUF metadata as a Hugging Face style config.json mapping."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"{where}: architecture {arch!r} is not supported (supported: "
                        f"{', '.join(ARCHITECTURES)})")
    a = lambda key, default=None: meta.get(f"{arch}.{key}", default)  # noqa: E731
    required = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count")
    missing = [f"{arch}.{k}" for k in required if a(k) is None]
    if missing:
        raise GGUFError(f"{where}: metadata {', '.join(missing)} missing")
    n_head = int(a("attention.head_count"))
    n_embd = int(a("embedding_length"))
    embd = tensors.get("token_embd.weight")  # its rows are the vocabulary the model has
    vocab = int(embd.shape[1]) if embd is not None and len(embd.shape) == 2 else \
        a("vocab_size") or len(meta.get("tokenizer.ggml.tokens") or [])
    cfg: dict[str, Any] = {
        "model_type": ARCHITECTURES[arch][0], "vocab_size": int(vocab),
        "hidden_size": n_embd, "intermediate_size": int(a("feed_forward_length")),
        "num_hidden_layers": int(a("block_count")), "num_attention_heads": n_head,
        "num_key_value_heads": int(a("attention.head_count_kv") or n_head),
        "max_position_embeddings": int(a("context_length") or 2048),
        "rms_norm_eps": float(a("attention.layer_norm_rms_epsilon") or 1e-6),
        "rope_theta": float(a("rope.freq_base") or 10000.0),
        "head_dim": int(a("attention.key_length") or n_embd // n_head),
        "tie_word_embeddings": "output.weight" not in tensors,
        "hidden_act": "silu",
    }
    kind = a("rope.scaling.type")
    if kind == "linear" and a("rope.scaling.factor"):
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": float(a("rope.scaling.factor"))}
    elif kind not in (None, "none"):
        raise GGUFError(f"{where}: rope scaling {kind!r} is not supported (supported: linear, "
                        f"and Llama 3's rope_freqs)")
    return cfg


def llama3_scaling_from_freqs(factors: np.ndarray, cfg: dict[str, Any], where: str) -> dict:
    """Llama 3's rope_scaling from the ``rope_freqs`` tensor llama.cpp stores (per-frequency
    divisors): the released parameters are found by matching them."""
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import rope_inv_freq

    base = dict(n_embd=cfg["hidden_size"], n_head=cfg["num_attention_heads"],
                head_dim=cfg["head_dim"], position="rope", rope_theta=cfg["rope_theta"])
    plain = rope_inv_freq(ModelConfig(**base)).numpy()
    factor = float(np.max(factors))
    for original in (8192, 4096, 16384, 2048, 32768):
        for low, high in ((1.0, 4.0), (1.0, 2.0), (1.0, 8.0)):
            scaling = {"type": "llama3", "factor": factor, "low_freq_factor": low,
                       "high_freq_factor": high, "original_context_length": original}
            scaled = rope_inv_freq(ModelConfig(**base, rope_scaling=scaling)).numpy()
            if np.allclose(plain / scaled, factors, rtol=1e-3):
                return {"rope_type": "llama3", "factor": factor, "low_freq_factor": low,
                        "high_freq_factor": high, "original_max_position_embeddings": original}
    raise GGUFError(f"{where}: tensor rope_freqs holds frequency factors that are not Llama 3's "
                    f"scaling; tinyllm cannot represent them")


def dequantize(tensor, where: str) -> np.ndarray:
    """One GGUF tensor as float32 (rows, cols) in Hugging Face's (out, in) layout."""
    from gguf import GGMLQuantizationType, quants

    kind = GGMLQuantizationType(tensor.tensor_type)
    try:
        if kind == GGMLQuantizationType.F32:
            arr = np.asarray(tensor.data, dtype=np.float32)
        elif kind == GGMLQuantizationType.F16:
            arr = np.asarray(tensor.data).astype(np.float32)
        else:
            arr = quants.dequantize(np.asarray(tensor.data), kind)
    except NotImplementedError:
        raise GGUFError(f"{where}: tensor {tensor.name} has type {kind.name}, which the gguf "
                        f"package cannot dequantize") from None
    except (ValueError, TypeError) as e:
        raise GGUFError(f"{where}: tensor {tensor.name} ({kind.name}) is corrupt ({e})") from None
    shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists the fastest dim first
    return arr.reshape(shape).astype(np.float32, copy=False)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of Q or K rows: back to each head's two rotary halves."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(hf: str) -> str:
    """The GGUF tensor name of an HF-style name (``layers.3.mlp.up_proj.weight``)."""
    if hf in _NAMES:
        return _NAMES[hf]
    _, i, rest = hf.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{i}.{_LAYER_NAMES[module]}.{kind}"


# ---- tokenizer ---------------------------------------------------------------------------------
def tokenizer_from_gguf(meta: dict[str, Any], where: str, log: Log) -> HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer from the ``tokenizer.ggml.*`` metadata."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFError(f"{where}: tokenizer.ggml.model {model!r} is not supported (tinyllm reads "
                        f"byte-level BPE, 'gpt2')")
    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    merges = list(meta.get("tokenizer.ggml.merges") or [])
    if not tokens or not merges:
        raise GGUFError(f"{where}: no tokenizer.ggml.tokens / tokenizer.ggml.merges")
    types = list(meta.get("tokenizer.ggml.token_type") or [])
    alphabet = _bytes_to_unicode()
    spelled = set(alphabet.values())

    def spell(token: str) -> str:  # a token written in real characters -> the byte alphabet
        return token if set(token) <= spelled else "".join(alphabet[b] for b in token.encode())

    vocab = {spell(t): i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges if " " in m]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    pre = meta.get("tokenizer.ggml.pre") or "default"
    if pre not in PRE_TOKENIZERS:
        log(f"note: tokenizer.ggml.pre {pre!r} is not known to tinyllm; splitting text as GPT-2 "
            f"does")
    split = PRE_TOKENIZERS.get(pre, _GPT2_SPLIT)
    if split is _GPT2_SPLIT:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split == _DIGITS_THEN_GPT2:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    control = [AddedToken(t, special=True, normalized=False)
               for t, k in zip(tokens, types) if k == CONTROL and set(t) <= spelled]
    user = [AddedToken(t, special=False, normalized=False)
            for t, k in zip(tokens, types) if k == USER_DEFINED]
    if control:
        tok.add_special_tokens(control)
    if user:
        tok.add_tokens(user)

    def text(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}")
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else None

    ends = [meta.get(f"tokenizer.ggml.{k}") for k in ("eos_token_id", "eot_token_id",
                                                         "eom_token_id")]
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    return HFTokenizer(tok, bos_token=text("bos_token_id"), eos_token=text("eos_token_id"),
                       pad_token=text("padding_token_id"),
                       eos_ids=[int(i) for i in ends if isinstance(i, int)],
                       add_bos=bool(add_bos) if add_bos is not None else False)


# ---- import ------------------------------------------------------------------------------------
@_holding_out_lock
def import_gguf(path: str | Path, out: str | Path, dtype: torch.dtype | None = None,
                overwrite: bool = False, log: Log | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """Import a GGUF file as a tinyllm model directory; returns a summary.

    Tensors are dequantized one at a time and written as float32 (or ``dtype``);
    ``progress(done, total)`` is called after each tensor written."""
    log = log or (lambda msg: None)
    path, out = Path(path).expanduser(), Path(out)
    where = str(path)
    reader = open_gguf(path)
    meta = metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    hf_cfg = hf_config_from_gguf(meta, tensors, where)
    if "rope_freqs.weight" in tensors:
        hf_cfg["rope_scaling"] = llama3_scaling_from_freqs(
            dequantize(tensors["rope_freqs.weight"], where), hf_cfg, where)
    cfg = model_config_from_hf(hf_cfg, where, log)
    _check_out(out, [path])
    tok = tokenizer_from_gguf(meta, where, log)
    permuted = ARCHITECTURES[meta["general.architecture"]][1]
    heads = {"self_attn.q_proj": cfg.n_head, "self_attn.k_proj": cfg.kv_heads}
    store = dtype or torch.float32
    plan = tensor_plan(cfg)
    wanted = {gguf_name(hf) for _, names in plan for hf in names}
    missing = sorted(wanted - set(tensors))
    if missing:
        raise GGUFError(f"{where}: missing tensor(s) {', '.join(missing[:5])}"
                        f"{' ...' if len(missing) > 5 else ''}")
    unused = sorted(set(tensors) - wanted - {"rope_freqs.weight"})
    if unused:
        log(f"note: ignoring tensors {', '.join(unused[:5])}{' ...' if len(unused) > 5 else ''}")

    def load(hf: str) -> np.ndarray:
        w = dequantize(tensors[gguf_name(hf)], where)
        module = hf.split(".", 2)[2].rsplit(".", 1)[0] if hf.startswith("layers.") else ""
        if permuted and module in heads:
            w = unpermute(w, heads[module])
        return w

    own = tensor_shapes(cfg)
    entries = [(tl, own[tl], store) for tl, _ in plan]
    names = dict(plan)
    done = [0]

    def produce(tl: str) -> torch.Tensor:
        parts = [load(hf) for hf in names[tl]]
        arr = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        if tuple(arr.shape) != own[tl]:
            raise GGUFError(f"{where}: {', '.join(gguf_name(h) for h in names[tl])} give shape "
                            f"{tuple(arr.shape)}, the metadata needs {own[tl]}")
        done[0] += 1
        if progress:
            progress(done[0], len(entries))
        if not arr.flags.writeable or not arr.flags.c_contiguous:  # F32 tensors are read-only maps
            arr = np.array(arr, order="C")
        return torch.from_numpy(arr).to(store)

    modeldir.prepare_output(out, overwrite, log=log)  # checked: now write
    out.mkdir(parents=True, exist_ok=True)
    log(f"writing {out / modeldir.WEIGHTS} ({len(entries)} tensors, dequantized to "
        f"{str(store)[6:]})")
    nbytes = write_safetensors(out / modeldir.WEIGHTS, entries, produce)
    template = meta.get("tokenizer.chat_template")
    tok = write_tokenizer_and_template(out, tok, template if isinstance(template, str) else None)
    kinds = sorted({t.tensor_type.name for t in reader.tensors})
    source = {"type": "gguf", "path": str(path.resolve()), "format": "gguf",
              "architecture": meta.get("general.architecture"),
              "model_type": hf_cfg["model_type"], "name": meta.get("general.name"),
              "tensor_types": kinds, "dtype": str(store)[6:]}
    write_meta(out, cfg, tok, "lm", {"source": source})
    return summary(out, cfg, nbytes, source, isinstance(template, str))
