"""`tinyllm tokenize`, `tinyllm models` and `tinyllm info`: look inside tokenizers and model directories.

None of these load weights or import torch.
"""
from __future__ import annotations

import json
import sys

import click

from tinyllm import modeldir
from tinyllm.cli.notes import quiet_option
from tinyllm.data.files import read_stdin
from tinyllm.errors import UserError
from tinyllm.units import human, human_bytes


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
@quiet_option
def tokenize(tokenizer_name, model, as_json, decode, pair, text):
    """Print the token ids of TEXT, space-separated ("-" reads TEXT from stdin, at most 1 MiB).

    The default tokenizer is gpt2 (from the vocabulary files shipped in the package). An encoder's
    WordPiece adds [CLS] and [SEP] as the model reads them.

    \b
    Examples:
      tinyllm tokenize "Hello, world!"             # 15496 11 995 0
      tinyllm tokenize --model shakespeare-char "ROMEO:"
      tinyllm tokenize --decode "15496 11 995 0"   # Hello, world!
    """
    if tokenizer_name and model:
        raise UserError("give --tokenizer or --model, not both")
    if text == "-":
        text = read_stdin(sys.stdin.buffer)
    tok = modeldir.load_tokenizer(model or tokenizer_name or "gpt2")
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
    from tinyllm.cli.notes import warn
    from tinyllm.tokenizer import unknown_warning

    message = unknown_warning(tok, tok.unknown(text + (pair or "")), "TEXT")
    if message:
        warn(message)
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
@click.option("--path", "folders", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Also list the models in DIR (repeatable; $TINYLLM_PATH adds folders for every "
                   "command).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models(folders, as_json):
    """List the models found by name: in $TINYLLM_HOME/models, in the folders of $TINYLLM_PATH
    (":"-separated) and of --path, and the bundled ones.

    A model directory that cannot be used (a bad config.yaml, a broken tokenizer or weights file)
    is listed as broken, with the reason (in --json: a "broken" key), and the others as usual.

    
    Examples:
      tinyllm models
      tinyllm models --path runs          # models that `tinyllm train --out runs/NAME` wrote
      export TINYLLM_PATH=$PWD/runs       # then `--model NAME` finds them too
    """
    found = []
    for info in modeldir.list_models(folders, include_broken=True):
        problem = info.problem
        if problem is None:
            try:
                found.append(info.summary())
                continue
            except (UserError, OSError) as e:
                problem = str(e)
        found.append({"name": info.name, "path": str(info.path), "source": info.source,
                      "broken": problem})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        where = ", ".join(str(root) for _, root in modeldir.search_path(folders))
        click.echo(f"no models in {where}", err=True)
        return
    rows = [[m["name"], "BROKEN", "-", "-", "-", "-", "-", "-", m["source"]] if "broken" in m else
            [m["name"], m["task"], human(m["params"]), m["tokenizer"],
             f"{m['n_layer']}x{m['n_embd']}", str(m["context_length"]),
             modeldir.onnx_label(m["onnx_graphs"]),
             human_bytes(m["size_bytes"]), m["source"]] for m in found]
    print_table(rows, ["NAME", "TASK", "PARAMS", "TOKENIZER", "SHAPE", "CONTEXT", "ONNX", "SIZE",
                       "SOURCE"])
    for m in found:
        if "broken" in m:
            click.echo(f"{m['name']}: broken: {m['broken']}")


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(model, as_json):
    """Describe MODEL (a directory or a name): shape, parameters, FLOPs per token, task, tokenizer,
    labels, template, training provenance and files."""
    mi = modeldir.find(model)
    cfg = mi.model_config
    s = mi.summary()
    s["broken"] = modeldir.check_files(mi)
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
        ("shape", f"{cfg.n_layer} layers, {cfg.n_head} heads"
                  + (f" ({cfg.kv_heads} key/value)" if cfg.kv_heads != cfg.n_head else "")
                  + f", {cfg.n_embd} wide, context {cfg.context_length}"),
        ("architecture", "GPT-2" if cfg.family == "gpt2" else
         f"Llama family ({cfg.norm}, {cfg.position} theta {cfg.rope_theta:g}, {cfg.mlp}"
         + (", q/k/v bias" if cfg.qkv_bias else "") + ")"),
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
    if (mi.path / "chat_template.jinja").is_file():
        lines.append(("chat template", "chat_template.jinja"))
    lines.append(("onnx", " + ".join(f"{g} ({modeldir.ONNX_GRAPHS[g]})" for g in s["onnx_graphs"])
                  or "none (`tinyllm export-onnx` writes one)"))
    train = s["train"] or {}
    if train:
        lines.append(("trained", ", ".join(f"{k}={v}" for k, v in train.items()
                                          if not isinstance(v, (dict, list)))))
    if s["saved_at"]:
        lines.append(("saved", s["saved_at"]))
    lines.append(("size", f"{human_bytes(s['size_bytes'])} in {len(s['files'])} files"))
    if s["broken"]:
        lines.append(("BROKEN", s["broken"]))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        click.echo(f"{k.ljust(width)}  {v}")
