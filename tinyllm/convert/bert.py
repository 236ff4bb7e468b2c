"""BERT in Hugging Face format, in and out: ``import_bert`` and ``export_hf``.

Hugging Face's BERT (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, with a
``vocab.txt`` and/or ``tokenizer.json``) maps onto :class:`tinyllm.models.encoder.Encoder`:

    embeddings.word/position/token_type_embeddings   -> tok_emb / pos_emb / type_emb
    embeddings.LayerNorm                             -> emb_ln
    encoder.layer.i.attention.self.query|key|value   -> blocks.i.attn.qkv (concatenated, q|k|v)
    encoder.layer.i.attention.output.dense           -> blocks.i.attn.proj
    encoder.layer.i.attention.output.LayerNorm       -> blocks.i.ln1
    encoder.layer.i.intermediate.dense               -> blocks.i.mlp.fc
    encoder.layer.i.output.dense                     -> blocks.i.mlp.proj
    encoder.layer.i.output.LayerNorm                 -> blocks.i.ln2
    pooler.dense                                     -> pooler
    cls.predictions.transform.dense / .LayerNorm     -> mlm_head.dense / mlm_head.ln
    cls.predictions.bias                             -> mlm_head.bias (decoder tied to tok_emb)
    classifier                                       -> cls_head (BertForSequenceClassification)

Names come with the ``bert.`` prefix (BertForMaskedLM, BertForSequenceClassification, ...) or without
(BertModel); old checkpoints name LayerNorm parameters ``gamma``/``beta``. Which heads the model gets
follows the tensors present: a BertModel becomes an embedder (task ``embed``), a BertForMaskedLM a
masked-LM model (task ``mlm``), a BertForSequenceClassification a classifier with its labels
(task ``classify``). Tensors stream from the source file to ``model.safetensors`` one at a time
(three for a q|k|v), as the GPT-2 import does (:mod:`tinyllm.convert.tensors`).
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import torch

from tinyllm import modeldir
from tinyllm.atomic import atomic_write_text
from tinyllm.checkpoint import CheckpointError, write_meta
from tinyllm.config import ConfigError, EncoderConfig
from tinyllm.convert.gpt2 import (_as_dict, _check_out, _holding_out_lock, _write_json,
                                  read_hf_config)
from tinyllm.convert.tensors import WeightsReader, stacked_producer, write_safetensors
from tinyllm.models.encoder import Encoder
from tinyllm.tokenizer import TokenizerError, WordPieceTokenizer, from_spec

Log = Callable[[str], None]

# hidden_act in config.json -> EncoderConfig.gelu
ACTIVATIONS = {"gelu": "exact", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}
# BertConfig defaults, for keys a config.json leaves out
HF_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                   max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                   position_embedding_type="absolute")
# tinyllm block part -> HF layer part(s): three for the concatenated q|k|v
_BLOCK_PARTS = (("attn.qkv", ("attention.self.query", "attention.self.key", "attention.self.value")),
                ("attn.proj", ("attention.output.dense",)),
                ("ln1", ("attention.output.LayerNorm",)),
                ("mlp.fc", ("intermediate.dense",)),
                ("mlp.proj", ("output.dense",)),
                ("ln2", ("output.LayerNorm",)))
_TOP_PARTS = (("tok_emb", "embeddings.word_embeddings"), ("pos_emb", "embeddings.position_embeddings"),
              ("type_emb", "embeddings.token_type_embeddings"), ("emb_ln", "embeddings.LayerNorm"))
_POOLER = (("pooler", "pooler.dense"),)
_MLM = (("mlm_head.dense", "cls.predictions.transform.dense"),
        ("mlm_head.ln", "cls.predictions.transform.LayerNorm"))
_CLASSIFIER = (("cls_head", "classifier"),)
_BACKBONE = re.compile(r"^(embeddings|encoder|pooler)\.")
_SKIPPED = ("embeddings.position_ids", "cls.predictions.decoder.weight")  # a buffer; the tied decoder


class BertError(CheckpointError):
    """A BERT checkpoint that cannot be imported (or a model that cannot be exported), and why."""


# ---- configs -----------------------------------------------------------------------------------
def encoder_config_from_hf(hf_config: Any, where: str = "config.json", pooler: bool = True,
                           mlm_head: bool = False, n_classes: int = 0) -> EncoderConfig:
    """The EncoderConfig of a BERT ``config.json`` (dict, path or transformers config), with the
    heads the checkpoint holds. Refuses other architectures and variants the encoder cannot
    represent exactly."""
    c = {**HF_DEFAULTS, **{k: v for k, v in _as_dict(hf_config).items() if v is not None}}
    if c.get("model_type") != "bert":
        raise BertError(f"{where}: model_type is {c.get('model_type')!r}, not 'bert'")
    act = c["hidden_act"]
    if act not in ACTIVATIONS:
        raise BertError(f"{where}: hidden_act {act!r} is not supported (supported: "
                        f"{', '.join(ACTIVATIONS)})")
    unsupported = {"position_embedding_type": c["position_embedding_type"] != "absolute",
                   "is_decoder": bool(c.get("is_decoder")),
                   "add_cross_attention": bool(c.get("add_cross_attention")),
                   "tie_word_embeddings": mlm_head and c.get("tie_word_embeddings", True) is False}
    for key, bad in unsupported.items():
        if bad:
            raise BertError(f"{where}: {key}={c.get(key)!r} is a BERT variant tinyllm's encoder "
                            f"cannot represent")
    try:
        return EncoderConfig(
            vocab_size=int(c["vocab_size"]), context_length=int(c["max_position_embeddings"]),
            type_vocab_size=int(c["type_vocab_size"]), n_layer=int(c["num_hidden_layers"]),
            n_head=int(c["num_attention_heads"]), n_embd=int(c["hidden_size"]),
            intermediate_size=int(c["intermediate_size"]), dropout=float(c["hidden_dropout_prob"]),
            layer_norm_eps=float(c["layer_norm_eps"]), gelu=ACTIVATIONS[act], pooler=pooler,
            mlm_head=mlm_head, n_classes=n_classes)
    except (TypeError, ValueError, KeyError, ConfigError) as e:
        raise BertError(f"{where}: {e}") from None


def hf_config_from_model(cfg: EncoderConfig, architecture: str, labels: list[str] | None = None,
                         dtype: torch.dtype = torch.float32, pad_id: int = 0) -> dict[str, Any]:
    """A ``config.json`` for transformers' ``architecture`` (BertModel, ...) with this shape."""
    out = {
        "architectures": [architecture], "model_type": "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "intermediate_size": cfg.mlp_size,
        "hidden_act": "gelu" if cfg.gelu == "exact" else "gelu_new",
        "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.dropout,
        "max_position_embeddings": cfg.context_length, "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": 0.02, "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": pad_id,
        "position_embedding_type": "absolute", "classifier_dropout": None,
        "torch_dtype": str(dtype).removeprefix("torch."), "dtype": str(dtype).removeprefix("torch."),
    }
    if labels:
        out["id2label"] = {str(i): x for i, x in enumerate(labels)}
        out["label2id"] = {x: i for i, x in enumerate(labels)}
    return out


# ---- names -------------------------------------------------------------------------------------
def name_pairs(cfg: EncoderConfig) -> list[tuple[str, tuple[str, ...]]]:
    """(tinyllm tensor, the HF tensors it is made of, unprefixed) for every tensor of the model."""
    parts: list[tuple[str, tuple[str, ...]]] = []

    def add(tl: str, hfs: tuple[str, ...]) -> None:
        for leaf in ("weight", "bias"):
            parts.append((f"{tl}.{leaf}", tuple(f"{h}.{leaf}" for h in hfs)))

    for tl, hf in _TOP_PARTS:
        if tl == "emb_ln":
            add(tl, (hf,))
        else:
            parts.append((f"{tl}.weight", (f"{hf}.weight",)))
    for i in range(cfg.n_layer):
        for tl, hfs in _BLOCK_PARTS:
            add(f"blocks.{i}.{tl}", tuple(f"encoder.layer.{i}.{h}" for h in hfs))
    heads = (_POOLER if cfg.pooler else ()) + (_MLM if cfg.mlm_head else ()) + \
        (_CLASSIFIER if cfg.n_classes else ())
    for tl, hf in heads:
        add(tl, (hf,))
    if cfg.mlm_head:
        parts.append(("mlm_head.bias", ("cls.predictions.bias",)))
    return parts


def canonical(key: str) -> str:
    """An HF tensor name without the model prefix, with old gamma/beta LayerNorm names modernised."""
    key = key.removeprefix("bert.")
    key = re.sub(r"(LayerNorm)\.gamma$", r"\1.weight", key)
    return re.sub(r"(LayerNorm)\.beta$", r"\1.bias", key)


def scan_heads(names, architectures: list[str] | None) -> dict[str, bool]:
    """Which heads the checkpoint has, from its tensor names: pooler, mlm_head, classifier."""
    canon = {canonical(k) for k in names}
    sequence_cls = not architectures or any("SequenceClassification" in a for a in architectures)
    return {"pooler": "pooler.dense.weight" in canon,
            "mlm_head": "cls.predictions.transform.dense.weight" in canon,
            "classifier": sequence_cls and "classifier.weight" in canon}


def match_keys(names, cfg: EncoderConfig, where: str) -> tuple[dict[str, str], list[str]]:
    """HF name (canonical) -> key in the file, plus the keys that are not part of the model."""
    wanted = {hf for _, hfs in name_pairs(cfg) for hf in hfs}
    if cfg.mlm_head:
        wanted.add("cls.predictions.decoder.bias")  # newer files store the bias here as well
    found: dict[str, str] = {}
    ignored: list[str] = []
    for key in names:
        c = canonical(key)
        if c in wanted:
            if c in found:
                raise BertError(f"{where}: tensor {c} appears twice ({found[c]} and {key})")
            found[c] = key
        elif c in _SKIPPED:
            continue
        elif _BACKBONE.match(c) and not c.startswith("encoder.layer.") or \
                re.match(rf"^encoder\.layer\.(\d+)\.", c) and int(c.split(".")[2]) >= cfg.n_layer:
            raise BertError(f"{where}: unexpected tensor {key}: not part of a BERT with "
                            f"num_hidden_layers={cfg.n_layer} (config.json)")
        else:
            ignored.append(key)
    if cfg.mlm_head and "cls.predictions.bias" not in found and \
            "cls.predictions.decoder.bias" in found:
        found["cls.predictions.bias"] = found["cls.predictions.decoder.bias"]
    missing = [hf for hf in sorted(wanted - {"cls.predictions.decoder.bias"}) if hf not in found]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise BertError(f"{where}: missing tensor(s) {', '.join(missing[:5])}{more} "
                        f"(config.json: num_hidden_layers={cfg.n_layer})")
    return found, ignored


def encoder_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the encoder and its shape, without allocating it."""
    with torch.device("meta"):
        model = Encoder(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_shape(key: str, got: tuple[int, ...], want: tuple[int, ...], cfg: EncoderConfig,
                 where: str) -> None:
    if tuple(got) != tuple(want):
        raise BertError(
            f"{where}: tensor {key} has shape {tuple(got)}, but config.json (num_hidden_layers="
            f"{cfg.n_layer}, num_attention_heads={cfg.n_head}, hidden_size={cfg.n_embd}, "
            f"intermediate_size={cfg.mlp_size}, vocab_size={cfg.vocab_size}, "
            f"max_position_embeddings={cfg.context_length}) needs {tuple(want)}")


def _want_shape(shapes: dict[str, tuple[int, ...]], tl: str, parts: int) -> tuple[int, ...]:
    """The shape of one of ``parts`` HF tensors concatenated (along dim 0) into ``tl``."""
    s = shapes[tl]
    return (s[0] // parts, *s[1:])


# ---- in memory ---------------------------------------------------------------------------------
def from_hf_state_dict(state: Mapping[str, torch.Tensor], hf_config: Any,
                       architectures: list[str] | None = None) -> Encoder:
    """A tinyllm Encoder (eval mode, float32) from a transformers BERT state dict and its config
    (a BertModel's, BertForMaskedLM's or BertForSequenceClassification's; heads as present)."""
    c = _as_dict(hf_config)
    heads = scan_heads(state.keys(), architectures or c.get("architectures"))
    n_classes = int(state[_find(state, "classifier.weight")].shape[0]) if heads["classifier"] else 0
    cfg = encoder_config_from_hf(c, "hf_config", heads["pooler"], heads["mlm_head"], n_classes)
    found, _ = match_keys(state.keys(), cfg, "state dict")
    model = Encoder(cfg)
    own = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in own.items()}
    with torch.no_grad():
        for tl, hfs in name_pairs(cfg):
            parts = [state[found[h]] for h in hfs]
            for h, t in zip(hfs, parts):
                _check_shape(h, tuple(t.shape), _want_shape(shapes, tl, len(hfs)), cfg, "state dict")
            own[tl].copy_(torch.cat(parts) if len(parts) > 1 else parts[0])
    return model.eval()


def _find(state: Mapping[str, torch.Tensor], canon: str) -> str:
    return next(k for k in state if canonical(k) == canon)


def to_hf_state_dict(model: Encoder) -> dict[str, torch.Tensor]:
    """The state dict transformers' BERT class for ``model`` loads (prefixed ``bert.`` when the
    model has a classification or masked-LM head, as BertFor... classes name it)."""
    cfg = model.config
    prefix = "bert." if cfg.n_classes or cfg.mlm_head else ""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for tl, hfs in name_pairs(cfg):
        t = own[tl].detach()
        for h, piece in zip(hfs, t.chunk(len(hfs)) if len(hfs) > 1 else [t]):
            top = h.startswith(("cls.", "classifier."))
            out[h if top else prefix + h] = piece.contiguous()
    if cfg.mlm_head:
        out["cls.predictions.decoder.weight"] = own["tok_emb.weight"].detach()
        out["cls.predictions.decoder.bias"] = own["mlm_head.bias"].detach()
    return out


# ---- tokenizer ---------------------------------------------------------------------------------
def load_tokenizer(folder: Path, log: Log) -> WordPieceTokenizer:
    """The WordPiece tokenizer of a Hugging Face BERT folder: ``tokenizer.json`` when it has one,
    else ``vocab.txt`` with ``tokenizer_config.json``'s lower-casing and accent stripping."""
    tj, vocab = folder / "tokenizer.json", folder / "vocab.txt"
    if tj.is_file():
        try:
            return WordPieceTokenizer.load(tj)
        except TokenizerError as e:
            if not vocab.is_file():
                raise BertError(str(e)) from None
            log(f"note: {e}; using vocab.txt")
    if not vocab.is_file():
        raise BertError(f"{folder}: no tokenizer: expected vocab.txt or tokenizer.json beside the "
                        f"weights")
    tc = folder / "tokenizer_config.json"
    opts = read_hf_config(tc) if tc.is_file() else {}
    lower = bool(opts.get("do_lower_case", True))
    return WordPieceTokenizer.from_vocab(vocab, lowercase=lower,
                                         strip_accents=opts.get("strip_accents"),
                                         chinese_chars=bool(opts.get("tokenize_chinese_chars", True)))


def sentence_transformers_meta(folder: Path) -> dict[str, Any] | None:
    """How sentence-transformers embeds with this folder (modules.json, 1_Pooling/config.json,
    sentence_bert_config.json): {pooling, normalize, max_length}; None when it is not such a model."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    try:
        mods = json.loads(modules.read_text(encoding="utf-8"))
        types = [m.get("type", "") for m in mods]
        pooling = "mean"
        for m in mods:
            if m.get("type", "").endswith("Pooling"):
                pc = json.loads((folder / m["path"] / "config.json").read_text(encoding="utf-8"))
                pooling = "cls" if pc.get("pooling_mode_cls_token") else "mean"
        st = folder / "sentence_bert_config.json"
        max_len = json.loads(st.read_text(encoding="utf-8")).get("max_seq_length") \
            if st.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    out = {"pooling": pooling, "normalize": any(t.endswith("Normalize") for t in types)}
    if max_len:
        out["max_length"] = int(max_len)
    return out


def labels_of(hf_cfg: dict[str, Any], n: int) -> list[str]:
    """Class names by id from ``id2label`` (LABEL_i where it has none)."""
    id2label = hf_cfg.get("id2label") or {}
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


# ---- import ------------------------------------------------------------------------------------
@_holding_out_lock
def import_bert(name_or_path: str | Path, out: str | Path, dtype: torch.dtype | None = None,
                overwrite: bool = False, log: Log | None = None,
                located: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
    """Import a Hugging Face BERT folder (or a weights file with config.json and the tokenizer
    beside it) as a tinyllm model directory; returns a summary.

    ``dtype`` converts floating weights (default: keep the file's). ``located``: the files as
    :func:`tinyllm.convert.gpt2.locate` already found them.
    """
    from tinyllm.convert.gpt2 import locate

    log = log or (lambda msg: None)
    out = Path(out)
    src = located or locate(name_or_path, log)
    where = str(src["weights"][0] if len(src["weights"]) == 1 else src["weights"][0].parent)
    if src["config"] is None:
        raise BertError(f"{where}: a BERT import needs the config.json beside the weights")
    folder = Path(src["config"]).parent
    _check_out(out, src["weights"])
    hf_cfg = read_hf_config(src["config"])
    tokenizer = load_tokenizer(folder, log)
    with WeightsReader(src["weights"]) as reader:
        archs = hf_cfg.get("architectures")
        heads = scan_heads(reader.shapes, archs)
        n_classes = 0
        if heads["classifier"]:
            key = next(k for k in reader.shapes if canonical(k) == "classifier.weight")
            n_classes = reader.shapes[key][0][0]
        cfg = encoder_config_from_hf(hf_cfg, str(src["config"]), heads["pooler"], heads["mlm_head"],
                                     n_classes)
        found, ignored = match_keys(reader.shapes, cfg, where)
        if ignored:
            log(f"note: ignoring tensors that are not part of the encoder or its heads: "
                f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
        if tokenizer.vocab_size > cfg.vocab_size:
            raise BertError(f"{folder}: the tokenizer has {tokenizer.vocab_size} ids, the model's "
                            f"vocab_size is {cfg.vocab_size}")
        shapes = encoder_shapes(cfg)
        entries, plan = [], {}
        for tl, hfs in name_pairs(cfg):
            keys = [found[h] for h in hfs]
            for key in keys:
                shape, src_dtype = reader.shapes[key]
                _check_shape(key, shape, _want_shape(shapes, tl, len(hfs)), cfg, where)
                if src_dtype is None or not src_dtype.is_floating_point:
                    raise BertError(f"{where}: tensor {key} has dtype {src_dtype}, expected floats")
            src_dtype = reader.shapes[keys[0]][1]
            want = dtype or (torch.float32 if src_dtype == torch.float64 else src_dtype)
            entries.append((tl, shapes[tl], want))
            plan[tl] = (keys, want)

        produce = stacked_producer(reader, plan)
        modeldir.prepare_output(out, overwrite, modeldir.HF_FILES, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / modeldir.WEIGHTS} ({len(entries)} tensors)")
        nbytes = write_safetensors(out / modeldir.WEIGHTS, entries, produce)
    task = "classify" if cfg.n_classes else "mlm" if cfg.mlm_head else "embed"
    source = {**src["source"], "format": reader.kind, "files": [p.name for p in src["weights"]],
              "architectures": archs, "dtype": str(entries[0][2])[6:]}
    extra: dict[str, Any] = {"source": source}
    if cfg.n_classes:
        extra["labels"] = labels_of(hf_cfg, cfg.n_classes)
    st = sentence_transformers_meta(folder)
    if st:
        extra["embed"] = st
    write_meta(out, cfg, tokenizer, task, extra)
    return {"out": str(out), "family": "bert", "task": task, "params": cfg.num_params(),
            "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
            "context_length": cfg.context_length, "vocab_size": cfg.vocab_size,
            "labels": extra.get("labels"), "bytes": nbytes, "source": source}


# ---- export ------------------------------------------------------------------------------------
@_holding_out_lock
def export_hf(name_or_path: str | Path | None, out: str | Path, dtype: torch.dtype | None = None,
              overwrite: bool = False, log: Log | None = None) -> dict[str, Any]:
    """Write a tinyllm encoder as a folder transformers loads: BertForSequenceClassification for
    a classifier (with its labels), BertForMaskedLM for a model with the masked-LM head, else
    BertModel; plus tokenizer.json, vocab.txt and tokenizer_config.json. Returns a summary."""
    log = log or (lambda msg: None)
    info = modeldir.find(name_or_path)
    cfg = info.model_config
    if not isinstance(cfg, EncoderConfig):
        raise BertError(f"{info.path}: not an encoder (family {info.family})")
    tokenizer = from_spec(info.meta.get("tokenizer"), info.path)
    out = Path(out)
    weights = info.path / modeldir.WEIGHTS
    _check_out(out, [weights])
    architecture = ("BertForSequenceClassification" if cfg.n_classes else
                    "BertForMaskedLM" if cfg.mlm_head else "BertModel")
    if cfg.n_classes and cfg.pooling != "cls":
        log(f"warning: the classifier pools by {cfg.pooling!r}; transformers' "
            f"BertForSequenceClassification pools [CLS], so its logits will differ")
    if cfg.n_classes and not cfg.pooler:
        raise BertError(f"{info.path}: BertForSequenceClassification needs the pooler, which this "
                        f"model does not have")
    prefix = "bert." if cfg.n_classes or cfg.mlm_head else ""
    shapes = encoder_shapes(cfg)
    with WeightsReader([weights]) as reader:
        for tl, shape in shapes.items():
            got = reader.shapes.get(tl)
            if got is None or got[0] != shape:
                raise BertError(f"{weights}: tensor {tl} is missing or not of shape {shape}")
        store = dtype or reader.shapes["tok_emb.weight"][1]
        entries, plan = [], {}
        for tl, hfs in name_pairs(cfg):
            for j, h in enumerate(hfs):
                name = h if h.startswith(("cls.", "classifier.")) else prefix + h
                entries.append((name, _want_shape(shapes, tl, len(hfs)), store))
                plan[name] = (tl, j, len(hfs))

        def produce(name: str) -> torch.Tensor:
            tl, j, parts = plan[name]
            t = reader.get(tl)
            return (t.chunk(parts)[j] if parts > 1 else t).to(store).contiguous()

        modeldir.prepare_output(out, overwrite, modeldir.HF_FILES, log=log)  # checked: now write
        out.mkdir(parents=True, exist_ok=True)
        log(f"writing {out / 'model.safetensors'} ({len(entries)} tensors, {architecture})")
        nbytes = write_safetensors(out / "model.safetensors", entries, produce, {"format": "pt"})
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise BertError(f"{info.path}: an encoder with a {tokenizer.name} tokenizer cannot be "
                        f"exported for transformers' BERT")
    shutil.copyfile(info.path / tokenizer.spec()["file"], out / "tokenizer.json")
    atomic_write_text(out / "vocab.txt", "".join(t + "\n" for t in tokenizer.tokens()))
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizerFast", "model_max_length": cfg.context_length,
        "do_lower_case": tokenizer.lowercase, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"})
    labels = info.meta.get("labels") if cfg.n_classes else None
    _write_json(out / "config.json",
                hf_config_from_model(cfg, architecture, labels, store, tokenizer.pad_id))  # last
    return {"out": str(out), "model": str(info.path), "architecture": architecture,
            "params": cfg.num_params(), "dtype": str(store)[6:], "bytes": nbytes, "tokenizer": True}

