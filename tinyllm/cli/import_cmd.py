"""`tinyllm import`: a Hugging Face folder (GPT-2, Llama, Qwen2, Mistral) or a GGUF file."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tinyllm.cli.gpt2_cmd import DTYPES, FORCE, OVERWRITE, _log


@click.command("import")
@click.argument("src", metavar="DIR_OR_FILE")
@click.option("-o", "--out", required=True, metavar="DIR", help="Model directory to write.")
@click.option("--dtype", type=DTYPES, default="auto", show_default=True,
              help="Store the weights as this type (auto: as in the checkpoint; float32 for GGUF).")
@OVERWRITE
@FORCE
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of the path.")
def import_model(src, out, dtype, overwrite, force, as_json):
    """Import a model as a tinyllm model directory; prints DIR on stdout.

    DIR_OR_FILE is a Hugging Face folder (config.json, safetensors, possibly sharded, or
    pytorch_model.bin; tokenizer.json) of model_type gpt2, llama, qwen2 or mistral, or a .gguf
    file (llama, qwen2 architectures; any quantization the gguf package dequantizes). The
    tokenizer and chat template come along; tensors stream one at a time.

    \b
    Examples:
      tinyllm import ~/models/SmolLM2-135M-Instruct -o models/smollm2
      tinyllm import qwen2.5-0.5b-instruct-q8_0.gguf -o models/qwen
      tinyllm chat --model models/smollm2
    """
    from tinyllm.convert import importer_for
    from tinyllm.convert.gpt2 import torch_dtype

    t0 = time.perf_counter()
    kind, run = importer_for(src)
    source = src if kind == "gpt2" else Path(src).expanduser()  # gpt2 also takes hub names
    summary = run(source, out, dtype=torch_dtype(dtype), overwrite=overwrite or force, log=_log)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _log(f"imported {summary['params'] / 1e6:.1f}M parameters ({kind}) into {out} "
         f"in {summary['seconds']:.1f} s")
    click.echo(json.dumps(summary) if as_json else summary["out"])
