"""`tinyllm export-hf`: a tinyllm model as a Hugging Face folder (GPT-2 or BERT); the import is
`tinyllm import` (:mod:`tinyllm.cli.import_cmd`)."""
from __future__ import annotations

import json
import sys

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
    for bpe, with tokenizer_config.json; a char tokenizer has no transformers equivalent); a
    classifier's head is left out. Llama-family models become LlamaForCausalLM /
    Qwen2ForCausalLM / MistralForCausalLM folders (the architecture they were imported from) with
    tokenizer.json and the chat template in tokenizer_config.json. Encoders become
    BertForSequenceClassification (with its labels), BertForMaskedLM or BertModel, as their heads
    say, with tokenizer.json and vocab.txt. transformers' from_pretrained(DIR) loads them.
    Prints DIR on stdout.

    \b
    Example:
      tinyllm export-hf models/gpt2 -o hf/gpt2
    """
    from tinyllm.convert import export_hf as run
    from tinyllm.convert.gpt2 import torch_dtype

    summary = run(model, out, dtype=torch_dtype(dtype), overwrite=overwrite or force, log=_log)
    _log(f"exported {summary['params'] / 1e6:.1f}M parameters to {out}")
    click.echo(json.dumps(summary) if as_json else summary["out"])
