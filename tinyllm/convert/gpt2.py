"""GPT-2 in Hugging Face format, in and out: ``import_gpt2`` and ``export_hf``.

Hugging Face's GPT-2 (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``) maps onto
:class:`tinyllm.models.decoder.GPT` tensor by tensor:

    wte / wpe                    -> tok_emb / pos_emb
    h.i.ln_1, h.i.ln_2, ln_f     -> blocks.i.ln1, blocks.i.ln2, ln_f
    h.i.attn.c_attn (q|k|v)      -> blocks.i.attn.qkv     (Conv1D: weight stored transposed, (in, out))
    h.i.attn.c_proj              -> blocks.i.attn.proj    (Conv1D)
    h.i.mlp.c_fc, h.i.mlp.c_proj -> blocks.i.mlp.fc, .proj (Conv1D)
    lm_head                      -> tied to wte (only stored when tie_word_embeddings is false)

Names come with or without the ``transformer.`` prefix; the ``attn.bias``/``attn.masked_bias``
buffers (causal masks) are skipped. The import streams: each tensor is read, transposed if needed and
written before the next is read (see :mod:`tinyllm.convert.tensors`), so memory stays near one tensor.

In-memory helpers for code that already holds a state dict (benchmarks, tests):
:func:`from_hf_state_dict` and :func:`to_hf_state_dict`, with :func:`model_config_from_hf` and
:func:`hf_config_from_model` for the configs.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

from tinyllm import modeldir, runlock
from tinyllm.atomic import atomic_path, atomic_write_text
from tinyllm.checkpoint import CheckpointError, write_meta
from tinyllm.config import ConfigError, ModelConfig
from tinyllm.convert.tensors import ST_NAMES, WeightsReader, shard_files, write_safetensors
from tinyllm.models.decoder import GPT
from tinyllm.tokenizer import EOT, GPT2_DIR, Tokenizer, get_gpt2

# activation_function in config.json -> ModelConfig.gelu
ACTIVATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "exact"}
# heads of the released GPT-2 widths (used when a lone weights file comes without config.json)
STANDARD_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# GPT2Config defaults, for keys a config.json leaves out
HF_DEFAULTS = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                   layer_norm_epsilon=1e-5, activation_function="gelu_new")
# HF layer part -> tinyllm layer part, and whether it is a Conv1D (weight stored as (in, out))
_BLOCK_PARTS = (("ln_1", "ln1", False), ("attn.c_attn", "attn.qkv", True),
                ("attn.c_proj", "attn.proj", True), ("ln_2", "ln2", False),
                ("mlp.c_fc", "mlp.fc", True), ("mlp.c_proj", "mlp.proj", True))
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_BACKBONE = ("wte.", "wpe.", "h.", "ln_f.")
EOT_ID = 50256  # <|endoftext|> in the gpt2 tokenizer
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")

Log = Callable[[str], None]


class GPT2Error(CheckpointError):
    """A GPT-2 checkpoint that cannot be imported (or a model that cannot be exported), and why."""


# ---- configs -----------------------------------------------------------------------------------
def read_hf_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GPT2Error(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise GPT2Error(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GPT2Error(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict):
        raise GPT2Error(f"{path}: expected a JSON object")
    return data


def _as_dict(hf_config: Any) -> dict[str, Any]:
    if isinstance(hf_config, (str, Path)):
        return read_hf_config(hf_config)
    if hasattr(hf_config, "to_dict"):  # transformers.GPT2Config
        return hf_config.to_dict()
    return dict(hf_config)


def model_config_from_hf(hf_config: Any, where: str = "config.json") -> ModelConfig:
    """The tinyllm ModelConfig of a GPT-2 ``config.json`` (dict, path or transformers config).

    Refuses other architectures and GPT-2 variants the tinyllm model cannot represent exactly.
    """
    c = {**HF_DEFAULTS, **_as_dict(hf_config)}
    if c.get("model_type") != "gpt2":
        raise GPT2Error(f"{where}: model_type is {c.get('model_type')!r}, not 'gpt2': only GPT-2 "
                        f"checkpoints can be imported (architectures: {c.get('architectures')})")
    act = c["activation_function"]
    if act not in ACTIVATIONS:
        raise GPT2Error(f"{where}: activation_function {act!r} is not supported "
                        f"(supported: {', '.join(ACTIVATIONS)})")
    unsupported = {"n_inner": c.get("n_inner") not in (None, 4 * c["n_embd"]),
                   "scale_attn_weights": c.get("scale_attn_weights", True) is not True,
                   "scale_attn_by_inverse_layer_idx": bool(c.get("scale_attn_by_inverse_layer_idx")),
                   "add_cross_attention": bool(c.get("add_cross_attention"))}
    for key, bad in unsupported.items():
        if bad:
            raise GPT2Error(f"{where}: {key}={c.get(key)!r} is a GPT-2 variant tinyllm's model "
                            f"cannot represent")
    try:
        return ModelConfig(  # the values as config.json gives them: ModelConfig checks them
            vocab_size=c["vocab_size"], context_length=c.get("n_positions") or c["n_ctx"],
            n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
            dropout=0.0, bias=True, qkv_bias=True, layer_norm_eps=c["layer_norm_epsilon"],
            gelu=ACTIVATIONS[act], tie_weights=c.get("tie_word_embeddings", True))
    except (TypeError, ValueError, KeyError, ConfigError) as e:
        raise GPT2Error(f"{where}: {e}") from None


def _special_ids(cfg: ModelConfig, eot_id: int | None = EOT_ID) -> dict[str, int | None]:
    """<|endoftext|> as bos/eos (GPT-2: 50256), when the vocabulary has it."""
    eot = eot_id if eot_id is not None and eot_id < cfg.vocab_size else None
    return {"bos_token_id": eot, "eos_token_id": eot}


def hf_config_from_model(cfg: ModelConfig, dtype: torch.dtype = torch.float32,
                         eot_id: int | None = EOT_ID) -> dict[str, Any]:
    """A ``config.json`` for transformers' GPT2LMHeadModel with this model's shape."""
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.context_length, "n_ctx": cfg.context_length,
        "n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_inner": None,
        "activation_function": "gelu_new" if cfg.gelu == "tanh" else "gelu",
        "layer_norm_epsilon": cfg.layer_norm_eps, "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout, "initializer_range": 0.02,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False, "add_cross_attention": False, "use_cache": True,
        "tie_word_embeddings": cfg.tie_weights, **_special_ids(cfg, eot_id),
        "torch_dtype": str(dtype).removeprefix("torch."), "dtype": str(dtype).removeprefix("torch."),
    }


def infer_hf_config(shapes: dict[str, tuple[int, ...]], n_head: int | None, where: str
                    ) -> dict[str, Any]:
    """A config for a weights file that came without config.json, read from its tensor shapes."""
    canon = {_canonical(k): v for k, v in shapes.items()}
    if "wte.weight" not in canon or "wpe.weight" not in canon:
        raise GPT2Error(f"{where}: no config.json beside it and no wte/wpe tensors to read the "
                        f"shape from: is this a GPT-2 checkpoint?")
    (vocab, width), (positions, _) = canon["wte.weight"], canon["wpe.weight"]
    layers = {int(m.group(1)) for k in canon if (m := re.match(r"h\.(\d+)\.", k))}
    if n_head is None:
        if width not in STANDARD_HEADS:
            raise GPT2Error(f"{where}: no config.json beside it, and n_embd={width} is not a "
                            f"released GPT-2 width: give the head count with --n-head")
        n_head = STANDARD_HEADS[width]
    return {**HF_DEFAULTS, "model_type": "gpt2", "vocab_size": vocab, "n_positions": positions,
            "n_embd": width, "n_layer": max(layers) + 1 if layers else 0, "n_head": n_head}


# ---- names -------------------------------------------------------------------------------------
def name_pairs(cfg: ModelConfig) -> list[tuple[str, str, bool]]:
    """(HF name without prefix, tinyllm name, transposed?) for every tensor of this GPT-2."""
    pairs = [("wte.weight", "tok_emb.weight", False), ("wpe.weight", "pos_emb.weight", False)]
    for i in range(cfg.n_layer):
        for hf, tl, conv in _BLOCK_PARTS:
            pairs.append((f"h.{i}.{hf}.weight", f"blocks.{i}.{tl}.weight", conv))
            pairs.append((f"h.{i}.{hf}.bias", f"blocks.{i}.{tl}.bias", False))
    pairs += [("ln_f.weight", "ln_f.weight", False), ("ln_f.bias", "ln_f.bias", False)]
    if not cfg.tie_weights:
        pairs.append(("lm_head.weight", "lm_head.weight", False))
    return pairs


def tinyllm_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor shape of ``GPT(cfg).state_dict()``, without building it (tested against it).

    (A model on the meta device would do too, but its first normal_ costs seconds of imports.)
    """
    C, V = cfg.n_embd, cfg.vocab_size
    shapes = {"tok_emb.weight": (V, C), "pos_emb.weight": (cfg.context_length, C)}

    def linear(name: str, n_out: int, n_in: int, bias: bool) -> None:
        shapes[f"{name}.weight"] = (n_out, n_in)
        if bias:
            shapes[f"{name}.bias"] = (n_out,)

    def norm(name: str) -> None:
        shapes[f"{name}.weight"] = (C,)
        if cfg.bias:
            shapes[f"{name}.bias"] = (C,)

    for i in range(cfg.n_layer):
        b = f"blocks.{i}."
        norm(b + "ln1")
        linear(b + "attn.qkv", 3 * C, C, cfg.qkv_bias)
        linear(b + "attn.proj", C, C, cfg.bias)
        norm(b + "ln2")
        linear(b + "mlp.fc", 4 * C, C, cfg.bias)
        linear(b + "mlp.proj", C, 4 * C, cfg.bias)
    norm("ln_f")
    shapes["lm_head.weight"] = (V, C)
    if cfg.n_classes:
        linear("cls_head", cfg.n_classes, C, True)
    return shapes


def _canonical(key: str) -> str:
    return key.removeprefix("transformer.")


def _hf_shape(tl_shape: tuple[int, ...], conv: bool) -> tuple[int, ...]:
    return tuple(reversed(tl_shape)) if conv else tl_shape


def match_keys(keys, cfg: ModelConfig, where: str) -> tuple[dict[str, str], list[str]]:
    """Map each needed HF name to the key in the file; returns it and the keys left unused.

    Names the first missing tensors, and tensors of the backbone the config does not account for.
    """
    wanted = [hf for hf, _, _ in name_pairs(cfg)]
    wanted_set, found, ignored = set(wanted), {}, []
    keys = list(keys)
    if "tok_emb.weight" in keys:
        raise GPT2Error(f"{where}: this is a tinyllm model's weights file, not a Hugging Face one; "
                        f"use its folder directly (tinyllm generate --model FOLDER)")
    for key in keys:
        c = _canonical(key)
        if c in wanted_set:
            if c in found:
                raise GPT2Error(f"{where}: tensor {c} appears twice ({found[c]} and {key})")
            found[c] = key
        elif _MASK_BUFFER.match(c) or c == "lm_head.weight":  # causal masks; the tied head
            continue
        elif c.startswith(_BACKBONE):
            raise GPT2Error(f"{where}: unexpected tensor {key}: not part of a GPT-2 with "
                            f"n_layer={cfg.n_layer} (config.json)")
        else:
            ignored.append(key)
    missing = [hf for hf in wanted if hf not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise GPT2Error(f"{where}: missing tensor(s) {', '.join(missing[:5])}{more} "
                        f"(config.json: n_layer={cfg.n_layer}, "
                        f"tie_word_embeddings={cfg.tie_weights})")
    return found, ignored


def _check_shape(key: str, got: tuple[int, ...], want: tuple[int, ...], cfg: ModelConfig,
                 where: str) -> None:
    if tuple(got) != tuple(want):
        raise GPT2Error(
            f"{where}: tensor {key} has shape {tuple(got)}, but config.json (n_layer={cfg.n_layer}, "
            f"n_head={cfg.n_head}, n_embd={cfg.n_embd}, vocab_size={cfg.vocab_size}, "
            f"n_positions={cfg.context_length}) needs {tuple(want)}")


# ---- in memory ---------------------------------------------------------------------------------
def from_hf_state_dict(state: Mapping[str, torch.Tensor] | Callable[[str], torch.Tensor],
                       hf_config: Any) -> GPT:
    """A tinyllm GPT (eval mode, float32) from a Hugging Face GPT-2 state dict and its config.

    ``state`` is a mapping (keys with or without ``transformer.``) or a getter called with the
    unprefixed HF names (``h.0.attn.c_attn.weight``). ``hf_config``: dict, config.json path, or a
    transformers ``GPT2Config``.
    """
    cfg = model_config_from_hf(hf_config, "hf_config")
    if isinstance(state, Mapping):
        found, _ = match_keys(state.keys(), cfg, "state dict")
        get = lambda hf: state[found[hf]]  # noqa: E731
    else:
        get = state
    model = GPT(cfg)
    own = model.state_dict()
    with torch.no_grad():
        for hf, tl, conv in name_pairs(cfg):
            t = get(hf)
            want = _hf_shape(tuple(own[tl].shape), conv)
            _check_shape(hf, tuple(t.shape), want, cfg, "state dict")
            own[tl].copy_(t.t() if conv else t)
    return model.eval()


def to_hf_state_dict(model: GPT, prefix: str = "transformer.", lm_head: bool = True
                     ) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's state dict for ``model`` (Conv1D weights transposed; missing biases zero).

    ``lm_head``: include ``lm_head.weight`` (the token embedding when tied), as ``load_state_dict``
    expects; a file written for ``from_pretrained`` leaves a tied head out.
    """
    own = model.state_dict()
    out = {}
    dtype = own["tok_emb.weight"].dtype
    shapes = tinyllm_shapes(model.config)
    for hf, tl, conv in name_pairs(model.config):
        out["lm_head.weight" if hf == "lm_head.weight" else prefix + hf] = _export_tensor(
            own.get(tl), conv, None if tl in own else dtype, _bias_shape(shapes, tl))
    if lm_head and model.config.tie_weights:
        out["lm_head.weight"] = own["tok_emb.weight"].detach()
    return out


def _bias_shape(shapes: dict[str, tuple[int, ...]], tl: str) -> tuple[int, ...]:
    """The shape a bias ``tl`` has (or would have): the first dimension of its weight."""
    return (shapes[tl.rsplit(".", 1)[0] + ".weight"][0],)


def _export_tensor(t: torch.Tensor | None, conv: bool, dtype: torch.dtype | None,
                   zeros_shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor in HF layout: Conv1D weights transposed; a bias the tinyllm model does not have
    (bias=False / qkv_bias=False) becomes zeros, which computes the same function."""
    if t is None:
        return torch.zeros(zeros_shape, dtype=dtype)
    t = t.detach()
    if conv:
        t = t.t()
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    return t.contiguous()


# ---- finding a checkpoint ----------------------------------------------------------------------
def find_weights(folder: Path) -> list[Path]:
    """The weights files of a Hugging Face model folder (safetensors preferred), or an error."""
    for name in WEIGHT_FILES:
        p = folder / name
        if p.is_file():
            return shard_files(p) if name.endswith(".index.json") else [p]
    found = ", ".join(sorted(f.name for f in folder.iterdir())[:10]) or "nothing"
    raise GPT2Error(f"{folder}: no weights: expected {' or '.join(WEIGHT_FILES[::2])} "
                    f"(found: {found})")


def locate(name_or_path: str | Path, log: Log | None = None) -> dict[str, Any]:
    """Where a checkpoint's files are: {"config": Path|None, "weights": [Path], "source": {...}}.

    A folder, a lone .safetensors/.bin file (config.json beside it, if any), or a hub name
    (downloaded through huggingface_hub; see :mod:`tinyllm.convert.hub`).
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        cfg = p / "config.json"
        if (p / modeldir.CONFIG).is_file() and not cfg.is_file():
            raise GPT2Error(f"{p}: this is already a tinyllm model directory (it has config.yaml)")
        weights = find_weights(p)
        return {"config": cfg if cfg.is_file() else None, "weights": weights,
                "source": {"type": "folder", "path": str(p.resolve())}}
    if p.is_file():
        if p.suffix not in (".safetensors", ".bin"):
            raise GPT2Error(f"{p}: expected a folder, a .safetensors file or a pytorch_model.bin")
        cfg = p.parent / "config.json"
        return {"config": cfg if cfg.is_file() else None, "weights": [p],
                "source": {"type": "file", "path": str(p.resolve())}}
    from tinyllm.convert import hub as gpt2_hub

    if str(name_or_path) in gpt2_hub.HUB_REPOS:
        return gpt2_hub.download(str(name_or_path), log)
    raise GPT2Error(f"{name_or_path}: no such file or folder, and not a GPT-2 name that can be "
                    f"downloaded ({', '.join(gpt2_hub.HUB_REPOS)})")


# ---- import ------------------------------------------------------------------------------------
def _holding_out_lock(write: Callable) -> Callable:
    """Run an importer ``write(source, out, ...)`` holding ``out``'s run lock."""
    import functools

    @functools.wraps(write)
    def wrapper(name_or_path, out, *args, **kwargs):
        with runlock.acquire(out):
            return write(name_or_path, out, *args, **kwargs)

    return wrapper


def _check_out(out: Path, sources: list[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise GPT2Error(f"{out}: is a file, not a directory (a folder to write a model into)")
    if any(out.resolve() == s.resolve().parent for s in sources):
        raise GPT2Error(f"{out}: is the folder being read; choose another output folder")


@_holding_out_lock
def import_gpt2(name_or_path: str | Path, out: str | Path, dtype: torch.dtype | None = None,
                n_head: int | None = None, overwrite: bool = False, log: Log | None = None,
                located: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import a Hugging Face GPT-2 checkpoint as a tinyllm model directory; returns a summary.

    Tensors stream from the source file to ``out/model.safetensors`` one at a time. ``dtype``
    converts floating weights (default: keep the file's); ``n_head`` is needed only for a lone
    weights file without config.json whose width is not a released GPT-2 width. ``located``: the
    files as :func:`locate` (or ``gpt2_hub.download``) already found them. ``out`` must be new or
    empty unless ``overwrite`` (the old model's files are removed then); it is written holding
    its run lock.
    """
    log = log or (lambda msg: None)
    out = Path(out)
    src = located or locate(name_or_path, log)
    where = str(src["weights"][0] if len(src["weights"]) == 1 else src["weights"][0].parent)
    _check_out(out, src["weights"])
    with WeightsReader(src["weights"]) as reader:
        if src["config"] is not None:
            hf_cfg, cfg_where = read_hf_config(src["config"]), str(src["config"])
        else:
            hf_cfg = infer_hf_config({k: s for k, (s, _) in reader.shapes.items()}, n_head, where)
            cfg_where = f"{where} (shape read from the tensors)"
            log(f"note: no config.json: shape read from the tensors: n_layer={hf_cfg['n_layer']}, "
                f"n_head={hf_cfg['n_head']}, n_embd={hf_cfg['n_embd']}")
        cfg = model_config_from_hf(hf_cfg, cfg_where)
        found, ignored = match_keys(reader.shapes, cfg, where)
        if ignored:
            log(f"note: ignoring tensors that are not part of GPT-2's language model: "
                f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
        shapes = tinyllm_shapes(cfg)
        entries, plan = [], {}
        for hf, tl, conv in name_pairs(cfg):
            key = found[hf]
            shape, src_dtype = reader.shapes[key]
            _check_shape(key, shape, _hf_shape(shapes[tl], conv), cfg, where)
            if src_dtype is None or not src_dtype.is_floating_point:
                raise GPT2Error(f"{where}: tensor {key} has dtype {src_dtype}, expected floats")
            want = dtype or (torch.float32 if src_dtype == torch.float64 else src_dtype)
            entries.append((tl, shapes[tl], want))
            plan[tl] = (key, conv, want)

        def produce(tl: str) -> torch.Tensor:
            key, conv, want = plan[tl]
            t = reader.get(key)
            return (t.t() if conv else t).to(want)

        if cfg.vocab_size <= EOT_ID:
            log(f"note: vocab_size={cfg.vocab_size} is smaller than the gpt2 tokenizer's 50257 "
                f"ids; prompts with larger ids will not run")
        modeldir.prepare_output(out, overwrite, modeldir.HF_FILES, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / modeldir.WEIGHTS} ({len(entries)} tensors)")
        nbytes = write_safetensors(out / modeldir.WEIGHTS, entries, produce)
    source = {**src["source"], "format": reader.kind,
              "files": [p.name for p in src["weights"]],
              "architectures": hf_cfg.get("architectures"), "dtype": str(entries[0][2])[6:]}
    write_meta(out, cfg, get_gpt2(), "lm", {"source": source})
    return {"out": str(out), "params": cfg.num_params(), "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "n_embd": cfg.n_embd, "context_length": cfg.context_length,
            "vocab_size": cfg.vocab_size, "bytes": nbytes, "source": source}


# ---- export ------------------------------------------------------------------------------------
def export_hf(name_or_path: str | Path | None, out: str | Path, dtype: torch.dtype | None = None,
              overwrite: bool = False, log: Log | None = None) -> dict[str, Any]:
    """Write a tinyllm model as a folder GPT2LMHeadModel.from_pretrained loads; returns a summary.

    Writes config.json, model.safetensors (streamed, one tensor at a time), generation_config.json
    and the tokenizer as transformers reads it: vocab.json + merges.txt for gpt2, tokenizer.json
    for bpe (a char tokenizer has no equivalent), with tokenizer_config.json. ``out`` must be new
    or empty unless ``overwrite`` (what it held is removed then); it is written holding its run
    lock.
    """
    log = log or (lambda msg: None)
    info = modeldir.find(name_or_path)
    with runlock.acquire(out):
        return _export_hf(info, Path(out), dtype, overwrite, log)


def _export_hf(info: modeldir.ModelInfo, out: Path, dtype: torch.dtype | None, overwrite: bool,
               log: Log) -> dict[str, Any]:
    cfg = info.model_config
    tokenizer = info.load_tokenizer()
    weights = info.path / modeldir.WEIGHTS
    _check_out(out, [weights])
    shapes = tinyllm_shapes(cfg)
    with WeightsReader([weights]) as reader:
        for tl, shape in shapes.items():
            if tl == "lm_head.weight" and cfg.tie_weights:
                continue
            got = reader.shapes.get(tl)
            if got is None:
                raise GPT2Error(f"{weights}: missing tensor {tl}")
            if got[0] != shape:
                raise GPT2Error(f"{weights}: tensor {tl} has shape {got[0]}, config.yaml needs "
                                f"{shape}")
            if got[1] is None or not got[1].is_floating_point:
                raise GPT2Error(f"{weights}: tensor {tl} is {str(got[1]).removeprefix('torch.')}, "
                                f"expected a float type")
        if cfg.n_classes:
            log(f"note: the classification head ({cfg.n_classes} classes) is not part of "
                f"GPT2LMHeadModel and is left out")
        store = dtype or reader.shapes["tok_emb.weight"][1]
        entries, plan = [], {}
        for hf, tl, conv in name_pairs(cfg):
            name = hf if hf == "lm_head.weight" else "transformer." + hf
            hf_shape = _hf_shape(shapes.get(tl) or _bias_shape(shapes, tl), conv)
            entries.append((name, hf_shape, store))
            plan[name] = (tl, conv, hf_shape)

        def produce(name: str) -> torch.Tensor:
            tl, conv, hf_shape = plan[name]
            t = reader.get(tl) if tl in reader.shapes else None
            return _export_tensor(t, conv, store, hf_shape)

        modeldir.prepare_output(out, overwrite, modeldir.HF_FILES, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / 'model.safetensors'} ({len(entries)} tensors)")
        nbytes = write_safetensors(out / "model.safetensors", entries, produce, {"format": "pt"})
    eot = tokenizer.eot_id
    _write_json(out / "generation_config.json", _special_ids(cfg, eot))
    has_tokenizer = _export_tokenizer(tokenizer, info.path, out, cfg.context_length)
    if not has_tokenizer:
        log(f"note: the model's {tokenizer.name!r} tokenizer has no transformers equivalent; "
            f"the folder has weights and config only")
    _write_json(out / "config.json", hf_config_from_model(cfg, store, eot))  # last: complete
    return {"out": str(out), "model": str(info.path), "params": cfg.num_params(),
            "dtype": str(store)[6:], "bytes": nbytes, "tokenizer": has_tokenizer}


def _export_tokenizer(tokenizer: Tokenizer, model_dir: Path, out: Path, max_len: int) -> bool:
    """Write the tokenizer files transformers' AutoTokenizer reads; False when there are none."""
    special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "model_max_length": max_len}
    if tokenizer.name == "gpt2":
        _copy(GPT2_DIR / "encoder.json", out / "vocab.json")
        _copy(GPT2_DIR / "vocab.bpe", out / "merges.txt")
        _write_json(out / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer",
                                                     "add_prefix_space": False, **special})
        return True
    if tokenizer.name == "bpe":  # trained with Hugging Face tokenizers: its own file format
        _copy(model_dir / tokenizer.spec()["file"], out / "tokenizer.json")
        _write_json(out / "tokenizer_config.json",
                    {"tokenizer_class": "PreTrainedTokenizerFast", **special})
        return True
    return False


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def torch_dtype(name: str | None) -> torch.dtype | None:
    """``float32``/``float16``/``bfloat16`` -> torch dtype; None or ``auto`` -> None (keep)."""
    if name in (None, "auto"):
        return None
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype) or dt not in ST_NAMES or not dt.is_floating_point:
        raise GPT2Error(f"dtype {name!r}: choose float32, float16 or bfloat16")
    return dt
