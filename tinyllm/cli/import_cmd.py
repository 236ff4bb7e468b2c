"""`tinyllm import`: a Hugging Face checkpoint (GPT-2, BERT, Llama, Qwen2, Mistral) or a GGUF file
-> a tinyllm model directory, chosen by its model_type.

`tinyllm import-gpt2` is the same command under its older name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tinyllm.cli.gpt2_cmd import DTYPES, _log


def _run(name_or_path, out, dtype, n_head, overwrite, force, as_json):
    from tinyllm import convert
    from tinyllm.convert import hub as gpt2_hub

    t0 = time.perf_counter()
    kind, run = convert.importer_for(name_or_path)  # an unknown model_type fails here, torch-free
    options = {}
    if kind == "gpt2":
        options["n_head"] = n_head
        if name_or_path in gpt2_hub.HUB_REPOS and not Path(name_or_path).expanduser().exists():
            # offline: fails before torch is imported
            options["located"] = gpt2_hub.download(name_or_path, _log)
    elif n_head is not None:
        raise click.UsageError(f"--n-head is for a lone GPT-2 weights file; {name_or_path} is {kind}")

    from tinyllm.convert.gpt2 import torch_dtype

    source = name_or_path if kind == "gpt2" else Path(name_or_path).expanduser()
    summary = {"model_type": kind, **run(source, out, dtype=torch_dtype(dtype),
                                         overwrite=overwrite or force, log=_log, **options)}
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    what = f" ({summary['task']})" if summary.get("task") else ""
    _log(f"imported a {kind} model{what}, {summary['params'] / 1e6:.1f}M parameters, into {out} "
         f"in {summary['seconds']:.1f} s")
    click.echo(json.dumps(summary) if as_json else summary["out"])


_PARAMS = [
    click.Argument(["name_or_path"], metavar="DIR_OR_FILE"),
    click.Option(["-o", "--out"], required=True, metavar="DIR",
                 help="Model directory to write (a path; --out models/minilm for example)."),
    click.Option(["--dtype"], type=DTYPES, default="auto", show_default=True,
                 help="Store the weights as this type (auto: as in the checkpoint; float32 for GGUF)."),
    click.Option(["--n-head"], type=int, default=None,
                 help="GPT-2 only: heads, for a lone weights file without config.json of a "
                      "non-GPT-2 width."),
    click.Option(["--overwrite"], is_flag=True,
                 help="Replace what DIR holds (the old model's files are removed)."),
    click.Option(["--force"], is_flag=True, hidden=True),  # the old name of --overwrite
    click.Option(["--json", "as_json"], is_flag=True, help="Print a JSON summary instead of the path."),
]

HELP = """Import a Hugging Face checkpoint or a GGUF file as a tinyllm model directory.

DIR_OR_FILE is a folder with config.json and model.safetensors (or pytorch_model.bin, or sharded
*.index.json), a single .safetensors/.bin file (config.json beside it, if any), or a .gguf file
(llama and qwen2 architectures; any quantization the gguf package dequantizes). The importer is
chosen by config.json's model_type:

\b
  gpt2     a lone weights file without config.json is taken for GPT-2, and the released
           names gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2 are downloaded through
           huggingface_hub when online
  bert     BertModel becomes an embedder, BertForMaskedLM a masked-LM model,
           BertForSequenceClassification a classifier with its labels
  llama, qwen2, mistral
           decoders with their tokenizer.json and chat template

Another model_type is refused, naming it. Tensors stream one at a time, so memory stays near one
tensor's size. A pytorch_model.bin is read as plain tensors only (torch.load weights_only): a
pickle that would run code is refused. Prints the model directory on stdout.

\b
Examples:
  tinyllm import ~/Downloads/all-MiniLM-L6-v2 -o models/minilm
  tinyllm import ~/models/SmolLM2-135M-Instruct -o models/smollm2
  tinyllm import qwen2.5-0.5b-instruct-q8_0.gguf -o models/qwen
  tinyllm import gpt2 -o models/gpt2
"""

import_cmd = click.Command("import", callback=_run, params=_PARAMS, help=HELP,
                           short_help="Import a Hugging Face folder (GPT-2, BERT, Llama, Qwen2, "
                                      "Mistral) or a GGUF file.")
import_gpt2 = click.Command("import-gpt2", callback=_run, params=_PARAMS,
                            help="The older name of `tinyllm import` (same options).\n\n" + HELP,
                            short_help="Alias of `tinyllm import`.")
