"""`tinyllm tokenize`, `tinyllm models` and `tinyllm info`: look inside tokenizers and model directories.

None of these load weights or import torch.
"""
from __future__ import annotations

import json
import sys

import click

from tinyllm import modeldir
from tinyllm.errors import UserError


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M' (k, M, G, T)."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def human_bytes(n: int) -> str:
    for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {suffix}"
    return f"{n} B"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """A plain aligned text table on stdout (no colour, so it pipes cleanly)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


@click.command()
@click.option("--tokenizer", "tokenizer_name", default=None, metavar="NAME",
              help="A tokenizer by name (gpt2) or the tokenizer of a model directory/name.")
@click.option("--model", "-m", default=None, metavar="M", help="Use this model's tokenizer.")
@click.option("--json", "as_json", is_flag=True, help="Print {ids, tokens} as JSON.")
@click.option("--decode", is_flag=True, help="Read space-separated ids and print the text.")
@click.option("--pair", default=None, metavar="TEXT2",
              help="WordPiece (encoders): encode TEXT and TEXT2 as a pair, [CLS] a [SEP] b [SEP], "
                   "with token types (0 for TEXT, 1 for TEXT2).")
@click.argument("text")
def tokenize(tokenizer_name, model, as_json, decode, pair, text):
    """Print the token ids of TEXT, space-separated ("-" reads TEXT from stdin).

    The default tokenizer is gpt2 (from the vocabulary files shipped in the package). An encoder's
    WordPiece adds [CLS] and [SEP] as the model reads them.

    \b
    Examples:
      tinyllm tokenize "Hello, world!"             # 15496 11 995 0
      tinyllm tokenize --model shakespeare-char "ROMEO:"
      tinyllm tokenize --decode "15496 11 995 0"   # Hello, world!
    """
    from tinyllm.tokenizer import from_spec

    if tokenizer_name and model:
        raise UserError("give --tokenizer or --model, not both")
    if text == "-":
        text = sys.stdin.read()
    ref = model or tokenizer_name or "gpt2"
    if ref == "gpt2":
        tok = from_spec("gpt2")
    else:
        path = modeldir.resolve(ref)
        tok = from_spec(modeldir.read_info(path).meta.get("tokenizer"), path)
    if decode:
        try:
            ids = [int(t) for t in text.split()]
        except ValueError:
            raise UserError("--decode expects space-separated integer ids") from None
        bad = [i for i in ids if not 0 <= i < tok.vocab_size]
        if bad:
            raise UserError(f"id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
        click.echo(tok.decode(ids))
        return
    types = None
    if pair is not None:
        if not hasattr(tok, "encode_pair"):
            raise UserError(f"--pair needs a WordPiece tokenizer (an encoder's); this one is {tok.name}")
        ids, types = tok.encode_pair(text, pair)
    else:
        ids = tok.encode(text)
    if as_json:
        out = {"tokenizer": tok.name, "ids": ids, "tokens": [tok.token_str(i) for i in ids]}
        if types is not None:
            out["token_types"] = types
        click.echo(json.dumps(out, ensure_ascii=False))
    else:
        click.echo(" ".join(map(str, ids)))
        if types is not None:
            click.echo(" ".join(map(str, types)))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models(as_json):
    """List the models in $TINYLLM_HOME/models and the bundled ones."""
    found = []
    for info in modeldir.list_models():
        try:
            found.append(info.summary())
        except UserError as e:
            click.echo(f"warning: skipping {info.path}: {e}", err=True)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo(f"no models in {modeldir.models_home()} and none bundled", err=True)
        return
    rows = [[m["name"], m["task"], human(m["params"]), m["tokenizer"],
             f"{m['n_layer']}x{m['n_embd']}", str(m["context_length"]),
             "int8" if m["int8"] else ("yes" if m["onnx"] else "-"),
             human_bytes(m["size_bytes"]), m["source"]] for m in found]
    print_table(rows, ["NAME", "TASK", "PARAMS", "TOKENIZER", "SHAPE", "CONTEXT", "ONNX", "SIZE",
                       "SOURCE"])


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model, as_json):
    """Describe MODEL (a directory or a name): shape, parameters, FLOPs per token, task, tokenizer,
    labels, template, training provenance and files."""
    mi = modeldir.find(model)
    cfg = mi.model_config
    s = mi.summary()
    s.update({
        "params_non_embedding": cfg.num_params(include_embeddings=False),
        "forward_flops_per_token": s["flops_per_token"] // 3,
        "n_classes": cfg.n_classes, "pooling": cfg.pooling if cfg.n_classes else None,
        "template": mi.meta.get("template"), "train": mi.meta.get("train"),
        "saved_at": mi.meta.get("saved_at"), "format": mi.meta.get("format"),
        "files": sorted(str(f.relative_to(mi.path)) for f in mi.path.rglob("*") if f.is_file()),
        "model": mi.meta.get("model"),
    })
    if as_json:
        click.echo(json.dumps(s, indent=2, default=str))
        return
    lines = [
        ("name", s["name"]), ("path", s["path"]), ("source", s["source"]), ("task", s["task"]),
        ("tokenizer", f"{s['tokenizer']} (vocabulary {s['vocab_size']:,})"),
        ("shape", f"{cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, "
                  f"context {cfg.context_length}"),
        ("parameters", f"{s['params']:,} ({human(s['params'])}; "
                       f"{s['params_non_embedding']:,} without embeddings)"),
        ("FLOPs/token", f"{human(s['flops_per_token'])} training (6N + attention), "
                        f"{human(s['forward_flops_per_token'])} forward, at context "
                        f"{cfg.context_length}"),
    ]
    if mi.is_encoder:
        heads = [h for h, on in (("pooler", cfg.pooler), ("masked-LM", cfg.mlm_head),
                                 ("classifier", cfg.n_classes)) if on]
        lines.insert(4, ("family", f"{mi.family} (encoder; heads: {', '.join(heads) or 'none'})"))
        if mi.meta.get("embed"):
            lines.append(("embed", ", ".join(f"{k}={v}" for k, v in mi.meta["embed"].items())))
    if s["labels"]:
        lines.append(("labels", ", ".join(map(str, s["labels"])) + f" (pooling {cfg.pooling})"))
    if s["template"] is not None:
        t = s["template"]
        lines.append(("template", t if isinstance(t, str) else t.get("name", "custom")))
    lines.append(("onnx", "model.onnx" + (" + model.int8.onnx" if s["int8"] else "")
                  if s["onnx"] else "no"))
    train = s["train"] or {}
    if train:
        lines.append(("trained", ", ".join(f"{k}={v}" for k, v in train.items()
                                          if not isinstance(v, (dict, list)))))
    if s["saved_at"]:
        lines.append(("saved", s["saved_at"]))
    lines.append(("size", f"{human_bytes(s['size_bytes'])} in {len(s['files'])} files"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k.ljust(width)}  {v}")
