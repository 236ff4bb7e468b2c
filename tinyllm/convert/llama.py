"""Llama-family models in Hugging Face format, in and out: ``import_hf`` and ``export_hf``.

``LlamaForCausalLM`` (Llama 2/3, SmolLM2), ``Qwen2ForCausalLM`` (Qwen2, Qwen2.5) and
``MistralForCausalLM`` folders map onto :class:`tinyllm.models.decoder.GPT` with the Llama
switches (RMSNorm, rotary positions, SwiGLU, grouped-query attention), tensor by tensor:

    model.embed_tokens                          -> tok_emb
    model.layers.i.input_layernorm              -> blocks.i.ln1
    model.layers.i.self_attn.{q,k,v}_proj       -> blocks.i.attn.qkv   (rows q | k | v; Qwen2's biases too)
    model.layers.i.self_attn.o_proj             -> blocks.i.attn.proj
    model.layers.i.post_attention_layernorm     -> blocks.i.ln2
    model.layers.i.mlp.{gate,up}_proj           -> blocks.i.mlp.fc     (rows gate | up)
    model.layers.i.mlp.down_proj                -> blocks.i.mlp.proj
    model.norm                                  -> ln_f
    lm_head                                     -> lm_head (untied models only)

The import streams like the GPT-2 one (:mod:`tinyllm.convert.tensors`): each tinyllm tensor is
built from its one to three source tensors and written before the next is read, from a
``model.safetensors``, shards listed in ``model.safetensors.index.json``, or ``pytorch_model.bin``.
The folder's ``tokenizer.json`` becomes the model's tokenizer (special tokens, every EOS id from
config.json, generation_config.json and tokenizer_config.json), and its chat template
(``chat_template.jinja``, or ``chat_template`` in tokenizer_config.json) is stored as
``chat_template.jinja``. :func:`export_hf` writes the same folder layout back.

Mistral's sliding-window attention is exact for sequences no longer than the window, so a model
whose window is shorter than its context is imported with the window as its context length.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

from tinyllm import modeldir, runlock
from tinyllm.atomic import atomic_write_text
from tinyllm.checkpoint import CheckpointError, write_meta
from tinyllm.config import ConfigError, ModelConfig
from tinyllm.convert.gpt2 import _check_out, _write_json, find_weights, read_hf_config
from tinyllm.convert.tensors import WeightsReader, stacked_producer, write_safetensors
from tinyllm.data.templates import CHAT_TEMPLATE_FILE, ChatTemplate
from tinyllm.models.decoder import GPT
from tinyllm.tokenizer import HFTokenizer, TokenizerError

Log = Callable[[str], None]

# model_type -> the transformers class its folders name
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "mistral": "MistralForCausalLM"}
# each config class's defaults, for keys a config.json leaves out (transformers 5)
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, max_position_embeddings=2048, rms_norm_eps=1e-6),
    "qwen2": dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  max_position_embeddings=32768, rms_norm_eps=1e-6),
    "mistral": dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                    num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                    max_position_embeddings=131072, rms_norm_eps=1e-6, sliding_window=4096),
}
_BACKBONE = ("embed_tokens.", "layers.", "norm.")


class LlamaError(CheckpointError):
    """A Llama-family checkpoint that cannot be imported (or a model that cannot be exported)."""


# ---- configs -----------------------------------------------------------------------------------
def _as_dict(hf_config: Any) -> dict[str, Any]:
    if isinstance(hf_config, (str, Path)):
        return read_hf_config(hf_config)
    if hasattr(hf_config, "to_dict"):  # a transformers config
        return hf_config.to_dict()
    return dict(hf_config)


def rope_from_hf(c: dict[str, Any], where: str) -> tuple[float, dict | None]:
    """(rope_theta, rope_scaling) from a config.json: transformers 5's ``rope_parameters`` or the
    older ``rope_theta`` + ``rope_scaling``."""
    params = c.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", c.get("rope_theta") or 10000.0))
    scaling = c.get("rope_scaling") or params
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, {"type": "linear", "factor": float(scaling["factor"])}
    if kind == "llama3":
        return theta, {"type": "llama3", "factor": float(scaling["factor"]),
                       "low_freq_factor": float(scaling["low_freq_factor"]),
                       "high_freq_factor": float(scaling["high_freq_factor"]),
                       "original_context_length": int(scaling["original_max_position_embeddings"])}
    raise LlamaError(f"{where}: rope scaling {kind!r} is not supported (supported: default, "
                     f"linear, llama3)")


def model_config_from_hf(hf_config: Any, where: str = "config.json",
                         log: Log | None = None) -> ModelConfig:
    """The tinyllm ModelConfig of a Llama / Qwen2 / Mistral ``config.json`` (dict, path or
    transformers config). Refuses variants the tinyllm model cannot represent exactly."""
    given = _as_dict(hf_config)
    kind = given.get("model_type")
    if kind not in ARCHITECTURES:
        raise LlamaError(f"{where}: model_type is {kind!r}; this importer reads "
                         f"{', '.join(ARCHITECTURES)} (architectures: {given.get('architectures')})")
    c = {**HF_DEFAULTS[kind], **{k: v for k, v in given.items() if v is not None}}
    act = c.get("hidden_act", "silu")
    if act != "silu":
        raise LlamaError(f"{where}: hidden_act {act!r} is not supported (Llama-family models use "
                         f"silu)")
    attention_bias, mlp_bias = bool(c.get("attention_bias")), bool(c.get("mlp_bias"))
    if attention_bias != mlp_bias:
        raise LlamaError(f"{where}: attention_bias={attention_bias} with mlp_bias={mlp_bias} is a "
                         f"variant tinyllm's model cannot represent (both or neither)")
    theta, scaling = rope_from_hf(c, where)
    context = int(c["max_position_embeddings"])
    window = c.get("sliding_window") if kind == "mistral" or c.get("use_sliding_window") else None
    if window and int(window) < context:
        if log:
            log(f"note: sliding-window attention ({window} tokens): imported with a "
                f"{window}-token context, where it is exact")
        context = int(window)
    try:
        return ModelConfig(
            vocab_size=int(c["vocab_size"]), context_length=context,
            n_layer=int(c["num_hidden_layers"]), n_head=int(c["num_attention_heads"]),
            n_kv_head=int(c.get("num_key_value_heads") or c["num_attention_heads"]),
            n_embd=int(c["hidden_size"]), head_dim=int(c.get("head_dim") or 0),
            intermediate_size=int(c["intermediate_size"]), norm="rmsnorm", position="rope",
            mlp="swiglu", layer_norm_eps=float(c["rms_norm_eps"]), rope_theta=theta,
            rope_scaling=scaling, qkv_bias=kind == "qwen2" or attention_bias, bias=attention_bias,
            dropout=0.0, tie_weights=bool(c.get("tie_word_embeddings", False)))
    except (TypeError, ValueError, KeyError, ConfigError) as e:
        raise LlamaError(f"{where}: {e}") from None


def default_model_type(cfg: ModelConfig) -> str:
    """The transformers architecture a tinyllm model exports as (Qwen2 when it has q/k/v bias)."""
    return "qwen2" if cfg.qkv_bias and not cfg.bias else "llama"


def hf_config_from_model(cfg: ModelConfig, model_type: str | None = None,
                         dtype: torch.dtype = torch.float32,
                         special: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``config.json`` for transformers with this model's shape (``model_type`` llama, qwen2 or
    mistral; by default :func:`default_model_type`)."""
    if cfg.family != "llama" or (cfg.norm, cfg.position, cfg.mlp) != ("rmsnorm", "rope", "swiglu"):
        raise LlamaError("only models with RMSNorm, rotary positions and SwiGLU export as a "
                         "Llama-family folder")
    kind = model_type or default_model_type(cfg)
    if kind == "qwen2" and (not cfg.qkv_bias or cfg.bias):
        kind = "llama"
    if kind != "qwen2" and cfg.qkv_bias != cfg.bias:
        raise LlamaError(f"q/k/v bias without the other biases is Qwen2's layout; "
                         f"{ARCHITECTURES[kind]} cannot hold it")
    dt = str(dtype).removeprefix("torch.")
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    legacy_scaling = None
    sc = cfg.rope_scaling or {}
    if sc.get("type") == "linear":
        legacy_scaling = {"rope_type": "linear", "factor": sc["factor"]}
    elif sc.get("type") == "llama3":
        legacy_scaling = {"rope_type": "llama3", "factor": sc["factor"],
                          "low_freq_factor": sc["low_freq_factor"],
                          "high_freq_factor": sc["high_freq_factor"],
                          "original_max_position_embeddings": sc["original_context_length"]}
    if legacy_scaling:
        rope = {**legacy_scaling, "rope_theta": cfg.rope_theta}
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURES[kind]], "model_type": kind,
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_size, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_size, "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length, "initializer_range": 0.02,
        "rms_norm_eps": cfg.layer_norm_eps, "use_cache": True,
        "tie_word_embeddings": cfg.tie_weights, "rope_theta": cfg.rope_theta,
        "rope_scaling": legacy_scaling, "rope_parameters": rope, "attention_dropout": 0.0,
        "torch_dtype": dt, "dtype": dt, **(special or {}),
    }
    if kind == "llama":
        out.update(attention_bias=cfg.bias, mlp_bias=cfg.bias, pretraining_tp=1)
    if kind == "mistral":
        out["sliding_window"] = None
    if kind == "qwen2":
        out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layer)
    return out


# ---- names -------------------------------------------------------------------------------------
def tensor_plan(cfg: ModelConfig) -> list[tuple[str, list[str]]]:
    """(tinyllm name, the HF names whose rows it stacks) for every tensor of this model."""
    plan = [("tok_emb.weight", ["embed_tokens.weight"])]
    for i in range(cfg.n_layer):
        hf, tl = f"layers.{i}.", f"blocks.{i}."
        plan.append((tl + "ln1.weight", [hf + "input_layernorm.weight"]))
        plan.append((tl + "attn.qkv.weight", [hf + f"self_attn.{p}_proj.weight" for p in "qkv"]))
        if cfg.qkv_bias:
            plan.append((tl + "attn.qkv.bias", [hf + f"self_attn.{p}_proj.bias" for p in "qkv"]))
        plan.append((tl + "attn.proj.weight", [hf + "self_attn.o_proj.weight"]))
        if cfg.bias:
            plan.append((tl + "attn.proj.bias", [hf + "self_attn.o_proj.bias"]))
        plan.append((tl + "ln2.weight", [hf + "post_attention_layernorm.weight"]))
        plan.append((tl + "mlp.fc.weight", [hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"]))
        if cfg.bias:
            plan.append((tl + "mlp.fc.bias", [hf + "mlp.gate_proj.bias", hf + "mlp.up_proj.bias"]))
        plan.append((tl + "mlp.proj.weight", [hf + "mlp.down_proj.weight"]))
        if cfg.bias:
            plan.append((tl + "mlp.proj.bias", [hf + "mlp.down_proj.bias"]))
    plan.append(("ln_f.weight", ["norm.weight"]))
    if not cfg.tie_weights:
        plan.append(("lm_head.weight", ["lm_head.weight"]))
    return plan


def _canonical(key: str) -> str:
    return key.removeprefix("model.")


def match_keys(keys, cfg: ModelConfig, where: str) -> tuple[dict[str, str], list[str]]:
    """Map each needed HF name (without ``model.``) to its key in the file; and the keys unused."""
    wanted = [hf for _, names in tensor_plan(cfg) for hf in names]
    wanted_set, found, ignored = set(wanted), {}, []
    for key in keys:
        c = _canonical(key)
        if c in wanted_set:
            found[c] = key
        elif c == "lm_head.weight" or c.endswith("rotary_emb.inv_freq"):
            continue  # the tied head's copy; a cached rotary table
        elif c.startswith(_BACKBONE):
            raise LlamaError(f"{where}: unexpected tensor {key}: not part of this model "
                             f"(config.json: num_hidden_layers={cfg.n_layer}, "
                             f"bias={cfg.bias}, q/k/v bias={cfg.qkv_bias})")
        else:
            ignored.append(key)
    missing = [hf for hf in wanted if hf not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise LlamaError(f"{where}: missing tensor(s) {', '.join(missing[:5])}{more} "
                         f"(config.json: num_hidden_layers={cfg.n_layer}, "
                         f"tie_word_embeddings={cfg.tie_weights})")
    return found, ignored


def _stacked_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    return (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])


# ---- in memory ---------------------------------------------------------------------------------
def from_hf_state_dict(state: Mapping[str, torch.Tensor], hf_config: Any) -> GPT:
    """A tinyllm GPT (eval mode, float32) from a transformers Llama/Qwen2/Mistral state dict."""
    cfg = model_config_from_hf(hf_config, "hf_config")
    found, _ = match_keys(state.keys(), cfg, "state dict")
    model = GPT(cfg)
    own = model.state_dict()
    with torch.no_grad():
        for tl, names in tensor_plan(cfg):
            t = torch.cat([state[found[n]] for n in names], dim=0)
            if tuple(t.shape) != tuple(own[tl].shape):
                raise LlamaError(f"state dict: {tl} would be {tuple(t.shape)}, the config needs "
                                 f"{tuple(own[tl].shape)}")
            own[tl].copy_(t)
    return model.eval()


def _split(t: torch.Tensor, cfg: ModelConfig, tl: str) -> list[torch.Tensor]:
    """A stacked tinyllm tensor back into its HF parts (q|k|v or gate|up)."""
    if ".attn.qkv." in tl:
        q, kv = cfg.n_head * cfg.head_size, cfg.kv_heads * cfg.head_size
        return list(t.split([q, kv, kv], dim=0))
    if ".mlp.fc." in tl:
        return list(t.chunk(2, dim=0))
    return [t]


def to_hf_state_dict(model: GPT, lm_head: bool = True) -> dict[str, torch.Tensor]:
    """The transformers state dict (``model.`` prefixes) of a Llama-family tinyllm model."""
    own, cfg, out = model.state_dict(), model.config, {}
    for tl, names in tensor_plan(cfg):
        for name, part in zip(names, _split(own[tl].detach(), cfg, tl)):
            out[name if name == "lm_head.weight" else "model." + name] = part.contiguous()
    if lm_head and cfg.tie_weights:
        out["lm_head.weight"] = own["tok_emb.weight"].detach()
    return out


# ---- tokenizer and chat template of a folder ---------------------------------------------------
def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, int)]
    return []


def _adds_bos(tokenizer_json: dict) -> bool:
    """Whether a tokenizer.json's post-processor puts a special token before the text (Llama 3)."""
    post = tokenizer_json.get("post_processor") or {}
    posts = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for p in posts:
        single = p.get("single") or []
        if p.get("type") == "TemplateProcessing" and single and "SpecialToken" in single[0]:
            return True
    return False


def read_folder_tokenizer(folder: Path, hf_cfg: dict[str, Any]) -> tuple[HFTokenizer, str | None]:
    """The folder's tokenizer.json with its special tokens, and its chat template (or None)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise LlamaError(f"{folder}: no tokenizer.json (tinyllm reads Hugging Face fast "
                         f"tokenizers; save one with AutoTokenizer.from_pretrained(...)"
                         f".save_pretrained(folder))")
    tc_path = folder / "tokenizer_config.json"
    tc = read_hf_config(tc_path) if tc_path.is_file() else {}
    gen_path = folder / "generation_config.json"
    gen = read_hf_config(gen_path) if gen_path.is_file() else {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LlamaError(f"{path}: not a readable tokenizer.json ({e})") from None
    id_to_token = {t["id"]: t["content"] for t in data.get("added_tokens", [])}
    vocab = (data.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        id_to_token = {**{i: s for s, i in vocab.items()}, **id_to_token}

    def token(name: str) -> str | None:
        text = _token_text(tc.get(name))
        if text is None:  # only an id in config.json / generation_config.json
            ids = _ids(gen.get(f"{name}_id")) or _ids(hf_cfg.get(f"{name}_id"))
            text = id_to_token.get(ids[0]) if ids else None
        return text

    eos_ids = _ids(gen.get("eos_token_id")) + _ids(hf_cfg.get("eos_token_id"))
    add_bos = tc.get("add_bos_token")
    add_bos = _adds_bos(data) if add_bos is None else bool(add_bos)
    try:
        tok = HFTokenizer.load(path, {"bos_token": token("bos_token"), "eos_token": token("eos_token"),
                                      "pad_token": token("pad_token"), "eos_ids": eos_ids,
                                      "add_bos": add_bos})
    except TokenizerError as e:
        raise LlamaError(str(e)) from None
    template = None
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        template = (folder / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    elif isinstance(tc.get("chat_template"), str):
        template = tc["chat_template"]
    elif isinstance(tc.get("chat_template"), list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in tc["chat_template"] if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return tok, template


def chat_template_stop_ids(tok: HFTokenizer, template: str | None) -> list[int]:
    """Ids of the end-of-turn tokens a chat template writes (they end a reply too)."""
    if not template:
        return []
    stops = ChatTemplate(template, eos_token=tok.eos_token or "").stop
    return [i for i in (tok.token_id(s) for s in stops) if i is not None]


def write_tokenizer_and_template(out: Path, tok: HFTokenizer, template: str | None) -> HFTokenizer:
    """The tokenizer (with the template's end-of-turn ids among its EOS ids) and the template."""
    extra = chat_template_stop_ids(tok, template)
    if extra:
        tok = tok.with_eos_ids(extra)
    if template:
        atomic_write_text(out / CHAT_TEMPLATE_FILE, template)
    return tok


# ---- import ------------------------------------------------------------------------------------
def import_hf(src: str | Path, out: str | Path, dtype: torch.dtype | None = None,
              overwrite: bool = False, log: Log | None = None) -> dict[str, Any]:
    """Import a Llama / Qwen2 / Mistral folder as a tinyllm model directory; returns a summary.

    Tensors stream from the source files to ``out/model.safetensors`` one at a time (``dtype``
    converts them; default: as stored). The tokenizer and chat template are copied. ``out``
    must be new or empty unless ``overwrite``; it is written holding its run lock."""
    with runlock.acquire(out):
        return _import_hf(src, Path(out), dtype, overwrite, log)


def _import_hf(src, out: Path, dtype, overwrite: bool, log) -> dict[str, Any]:
    log = log or (lambda msg: None)
    folder, out = Path(src).expanduser(), Path(out)
    if not (folder / "config.json").is_file():
        raise LlamaError(f"{folder}: no config.json (a Hugging Face model folder has one)")
    hf_cfg = read_hf_config(folder / "config.json")
    cfg = model_config_from_hf(hf_cfg, str(folder / "config.json"), log)
    weights = find_weights(folder)
    _check_out(out, weights)
    tok, template = read_folder_tokenizer(folder, hf_cfg)
    if tok.vocab_size > cfg.vocab_size:
        log(f"note: the tokenizer has {tok.vocab_size} ids, the model {cfg.vocab_size}")
    where = str(weights[0] if len(weights) == 1 else folder)
    with WeightsReader(weights) as reader:
        found, ignored = match_keys(reader.shapes, cfg, where)
        if ignored:
            log(f"note: ignoring tensors that are not part of the language model: "
                f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
        own = tensor_shapes(cfg)
        entries, plan = [], {}
        for tl, names in tensor_plan(cfg):
            keys = [found[n] for n in names]
            shapes = [reader.shapes[k][0] for k in keys]
            src_dtype = reader.shapes[keys[0]][1]
            if src_dtype is None or not src_dtype.is_floating_point:
                raise LlamaError(f"{where}: tensor {keys[0]} has dtype {src_dtype}, expected floats")
            if _stacked_shape(shapes) != own[tl] or any(s[1:] != shapes[0][1:] for s in shapes):
                raise LlamaError(f"{where}: tensor(s) {', '.join(keys)} have shape(s) "
                                 f"{', '.join(map(str, shapes))}; config.json needs {own[tl]} in "
                                 f"all (hidden_size={cfg.n_embd}, heads={cfg.n_head}/"
                                 f"{cfg.kv_heads}, head_dim={cfg.head_size})")
            want = dtype or (torch.float32 if src_dtype == torch.float64 else src_dtype)
            entries.append((tl, own[tl], want))
            plan[tl] = (keys, want)

        produce = stacked_producer(reader, plan)
        modeldir.prepare_output(out, overwrite, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / modeldir.WEIGHTS} ({len(entries)} tensors)")
        nbytes = write_safetensors(out / modeldir.WEIGHTS, entries, produce)
    tok = write_tokenizer_and_template(out, tok, template)
    source = {"type": "folder", "path": str(folder.resolve()), "format": reader.kind,
              "files": [p.name for p in weights], "model_type": hf_cfg.get("model_type"),
              "architectures": hf_cfg.get("architectures"), "dtype": str(entries[0][2])[6:]}
    write_meta(out, cfg, tok, "lm", {"source": source})
    return summary(out, cfg, nbytes, source, template is not None)


def summary(out: Path, cfg: ModelConfig, nbytes: int, source: dict, chat: bool) -> dict[str, Any]:
    return {"out": str(out), "params": cfg.num_params(), "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "n_kv_head": cfg.kv_heads, "n_embd": cfg.n_embd,
            "context_length": cfg.context_length, "vocab_size": cfg.vocab_size, "bytes": nbytes,
            "chat_template": chat, "source": source}


def tensor_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor shape of a Llama-family ``GPT(cfg).state_dict()``, without building it
    (tested against it)."""
    C, q, kv = cfg.n_embd, cfg.n_head * cfg.head_size, cfg.kv_heads * cfg.head_size
    inner = cfg.mlp_size
    shapes = {"tok_emb.weight": (cfg.vocab_size, C), "ln_f.weight": (C,),
              "lm_head.weight": (cfg.vocab_size, C)}
    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        shapes.update({b + "ln1.weight": (C,), b + "ln2.weight": (C,),
                       b + "attn.qkv.weight": (q + 2 * kv, C), b + "attn.proj.weight": (C, q),
                       b + "mlp.fc.weight": (2 * inner, C), b + "mlp.proj.weight": (C, inner)})
        if cfg.qkv_bias:
            shapes[b + "attn.qkv.bias"] = (q + 2 * kv,)
        if cfg.bias:
            shapes.update({b + "attn.proj.bias": (C,), b + "mlp.fc.bias": (2 * inner,),
                           b + "mlp.proj.bias": (C,)})
    if cfg.n_classes:
        shapes.update({"cls_head.weight": (cfg.n_classes, C), "cls_head.bias": (cfg.n_classes,)})
    return shapes


# ---- export ------------------------------------------------------------------------------------
def export_hf(model: modeldir.ModelInfo | str | Path, out: str | Path,
              dtype: torch.dtype | None = None, overwrite: bool = False,
              log: Log | None = None) -> dict[str, Any]:
    """Write a Llama-family tinyllm model as a folder transformers loads
    (``AutoModelForCausalLM.from_pretrained(out)``, ``AutoTokenizer.from_pretrained(out)``).

    Writes config.json, model.safetensors (streamed), generation_config.json, tokenizer.json and
    tokenizer_config.json (with the chat template, if the model has one). The architecture is the
    one the model was imported from (Llama, Qwen2, Mistral), else Qwen2 for q/k/v bias, else Llama.
    ``out`` must be new or empty unless ``overwrite``; it is written holding its run lock.
    """
    info = model if isinstance(model, modeldir.ModelInfo) else modeldir.find(model)
    with runlock.acquire(out):
        return _export_hf(info, Path(out), dtype, overwrite, log)


def _export_hf(info: modeldir.ModelInfo, out: Path, dtype, overwrite: bool, log) -> dict[str, Any]:
    log = log or (lambda msg: None)
    cfg, out = info.model_config, Path(out)
    weights = info.path / modeldir.WEIGHTS
    _check_out(out, [weights])
    src_type = (info.meta.get("source") or {}).get("model_type")
    hf_cfg = hf_config_from_model(cfg, src_type if src_type in ARCHITECTURES else None)
    own = tensor_shapes(cfg)
    with WeightsReader([weights]) as reader:
        for tl, _ in tensor_plan(cfg):
            got = reader.shapes.get(tl)
            if got is None or got[0] != own[tl]:
                raise LlamaError(f"{weights}: tensor {tl} is {'missing' if got is None else got[0]}"
                                 f", config.yaml needs {own[tl]}")
        if cfg.n_classes:
            log(f"note: the classification head ({cfg.n_classes} classes) is not part of "
                f"{hf_cfg['architectures'][0]} and is left out")
        store = dtype or reader.shapes["tok_emb.weight"][1]
        entries, plan = [], {}
        for tl, names in tensor_plan(cfg):
            parts = _split(torch.empty(own[tl], device="meta"), cfg, tl)  # shapes only
            for i, (name, part) in enumerate(zip(names, parts)):
                full = name if name == "lm_head.weight" else "model." + name
                entries.append((full, tuple(part.shape), store))
                plan[full] = (tl, i)

        def produce(name: str) -> torch.Tensor:
            tl, i = plan[name]
            return _split(reader.get(tl), cfg, tl)[i].to(store).contiguous()

        modeldir.prepare_output(out, overwrite, modeldir.HF_FILES, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / 'model.safetensors'} ({len(entries)} tensors)")
        nbytes = write_safetensors(out / "model.safetensors", entries, produce, {"format": "pt"})
    tok = None
    spec = info.meta.get("tokenizer") or {}
    if spec.get("type") == "hf":
        from tinyllm.tokenizer import from_spec

        tok = from_spec(spec, info.path)
        shutil.copyfile(info.path / spec.get("file", "tokenizer.json"), out / "tokenizer.json")
        template_path = info.path / CHAT_TEMPLATE_FILE
        template = template_path.read_text(encoding="utf-8") if template_path.is_file() else None
        tc = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok.bos_token,
              "eos_token": tok.eos_token, "pad_token": tok.pad_token, "add_bos_token": tok.add_bos,
              "add_eos_token": False, "model_max_length": cfg.context_length,
              "clean_up_tokenization_spaces": False}
        if template:
            tc["chat_template"] = template
        _write_json(out / "tokenizer_config.json", tc)
    else:
        log(f"note: the model's {spec.get('type', 'gpt2')!r} tokenizer is not a tokenizer.json; "
            f"the folder has weights and config only")
    special = {"bos_token_id": getattr(tok, "bos_id", None),
               "eos_token_id": (list(tok.eos_ids) if len(tok.eos_ids) > 1 else tok.eot_id)
               if tok else None}
    _write_json(out / "generation_config.json", special)
    hf_cfg = hf_config_from_model(cfg, hf_cfg["model_type"], store, special)
    _write_json(out / "config.json", hf_cfg)  # last: the folder is complete
    return {"out": str(out), "model": str(info.path), "params": cfg.num_params(),
            "architecture": hf_cfg["architectures"][0], "dtype": str(store)[6:], "bytes": nbytes,
            "tokenizer": tok is not None}
