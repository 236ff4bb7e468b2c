"""`tinyllm import-gpt2` and `tinyllm export-hf`: GPT-2 weights in Hugging Face format, in and out."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

DTYPES = click.Choice(["auto", "float32", "float16", "bfloat16"])
OVERWRITE = click.option("--overwrite", is_flag=True,
                         help="Replace what DIR holds (the old model's files are removed).")
# the old name of --overwrite, still accepted (hidden from --help)
FORCE = click.option("--force", is_flag=True, hidden=True)


def _log(msg: str) -> None:
    """Notes always go to stderr; progress only when stderr is a terminal."""
    if msg.startswith("note") or sys.stderr.isatty():
        click.echo(msg, err=True)


@click.command("import-gpt2")
@click.argument("name_or_path", metavar="NAME_OR_PATH")
@click.option("-o", "--out", required=True, metavar="DIR",
              help="Model directory to write (a path; --out models/gpt2 for example).")
@click.option("--dtype", type=DTYPES, default="auto", show_default=True,
              help="Store the weights as this type (auto: as in the checkpoint).")
@click.option("--n-head", type=int, default=None,
              help="Heads, only for a lone weights file without config.json of a non-GPT-2 width.")
@OVERWRITE
@FORCE
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the path.")
def import_gpt2(name_or_path, out, dtype, n_head, overwrite, force, as_json):
    """Import GPT-2 weights in Hugging Face format as a tinyllm model directory.

    NAME_OR_PATH is a folder with config.json and model.safetensors (or pytorch_model.bin, or
    sharded *.index.json), a single .safetensors/.bin file, or one of the released names gpt2,
    gpt2-medium, gpt2-large, gpt2-xl, distilgpt2, downloaded through huggingface_hub
    (pip install 'tinyllm[hub]'; offline, a name fails at once: import a copied folder instead).

    Tensors stream one at a time, so memory stays near one tensor's size. A pytorch_model.bin is
    read as plain tensors only (torch.load weights_only): a pickle that would run code is refused.
    Prints the model directory on stdout.

    \b
    Examples:
      tinyllm import-gpt2 gpt2 -o models/gpt2
      tinyllm import-gpt2 ~/Downloads/gpt2-folder -o models/gpt2
      tinyllm generate --model models/gpt2 "The meaning of life is"
    """
    from tinyllm.convert import hub as gpt2_hub

    t0 = time.perf_counter()
    located = None
    if name_or_path in gpt2_hub.HUB_REPOS and not Path(name_or_path).expanduser().exists():
        located = gpt2_hub.download(name_or_path, _log)  # offline: fails before torch is imported

    from tinyllm.convert.gpt2 import import_gpt2 as run, torch_dtype

    summary = run(name_or_path, out, torch_dtype(dtype), n_head, overwrite or force, _log, located)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _log(f"imported {summary['params'] / 1e6:.1f}M parameters into {out} "
         f"in {summary['seconds']:.1f} s")
    click.echo(json.dumps(summary) if as_json else summary["out"])


@click.command("export-hf")
@click.argument("model", metavar="MODEL")
@click.option("-o", "--out", required=True, metavar="DIR", help="Folder to write.")
@click.option("--dtype", type=DTYPES, default="auto", show_default=True,
              help="Store the weights as this type (auto: as in the model directory).")
@OVERWRITE
@FORCE
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the path.")
def export_hf(model, out, dtype, overwrite, force, as_json):
    """Export a tinyllm model (path or name) as a Hugging Face folder.

    GPT-2 models become a GPT2LMHeadModel folder: config.json, model.safetensors,
    generation_config.json and the tokenizer (vocab.json + merges.txt for gpt2, tokenizer.json
    for bpe, with tokenizer_config.json; a char tokenizer has no transformers equivalent).
    Llama-family models become LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM folders
    (the architecture they were imported from) with tokenizer.json and the chat template in
    tokenizer_config.json. transformers' AutoModelForCausalLM.from_pretrained(DIR) and
    AutoTokenizer.from_pretrained(DIR) load them.
    A classifier's head is left out. Prints DIR on stdout.

    \b
    Example:
      tinyllm export-hf models/gpt2 -o hf/gpt2
    """
    from tinyllm.convert import export_hf as run
    from tinyllm.convert.gpt2 import torch_dtype

    summary = run(model, out, torch_dtype(dtype), overwrite or force, _log)
    _log(f"exported {summary['params'] / 1e6:.1f}M parameters to {out}")
    click.echo(json.dumps(summary) if as_json else summary["out"])
