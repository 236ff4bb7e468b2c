"""`tinyllm import`: a Hugging Face checkpoint -> a tinyllm model directory, by its model_type.

`tinyllm import-gpt2` is the same command under its older name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tinyllm.cli.gpt2_cmd import DTYPES, _log


def _run(name_or_path, out, dtype, n_head, overwrite, as_json):
    from tinyllm import convert
    from tinyllm.convert import hub as gpt2_hub

    t0 = time.perf_counter()
    kind = convert.model_type_of(name_or_path)
    run = convert.importer(kind, str(name_or_path))  # an unknown model_type fails here, torch-free
    located = None
    if kind == "gpt2" and name_or_path in gpt2_hub.HUB_REPOS \
            and not Path(name_or_path).expanduser().exists():
        located = gpt2_hub.download(name_or_path, _log)  # offline: fails before torch is imported

    from tinyllm.convert.gpt2 import torch_dtype

    summary = {"model_type": kind, **run(name_or_path, out, dtype=torch_dtype(dtype), n_head=n_head,
                                         force=overwrite, log=_log, located=located)}
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
                 help="Store the weights as this type (auto: as in the checkpoint)."),
    click.Option(["--n-head"], type=int, default=None,
                 help="GPT-2 only: heads, for a lone weights file without config.json of a "
                      "non-GPT-2 width."),
    click.Option(["--overwrite", "--force", "overwrite"], is_flag=True,
                 help="Overwrite DIR if it already holds a model."),
    click.Option(["--json", "as_json"], is_flag=True, help="Print a JSON summary instead of the path."),
]

HELP = """Import a Hugging Face checkpoint as a tinyllm model directory.

DIR_OR_FILE is a folder with config.json and model.safetensors (or pytorch_model.bin, or sharded
*.index.json), or a single .safetensors/.bin file (config.json beside it, if any). The importer is
chosen by config.json's model_type: gpt2 (a lone weights file without config.json is taken for
GPT-2, and the released names gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2 are downloaded
through huggingface_hub when online) or bert (BertModel becomes an embedder, BertForMaskedLM a
masked-LM model, BertForSequenceClassification a classifier with its labels; its vocab.txt or
tokenizer.json is imported too). Another model_type is refused, naming it.

Tensors stream one at a time, so memory stays near one tensor's size. A pytorch_model.bin is read
as plain tensors only (torch.load weights_only): a pickle that would run code is refused.
Prints the model directory on stdout.

\b
Examples:
  tinyllm import ~/Downloads/all-MiniLM-L6-v2 -o models/minilm
  tinyllm import gpt2 -o models/gpt2
  echo "a sentence" | tinyllm embed --model models/minilm
"""

import_cmd = click.Command("import", callback=_run, params=_PARAMS, help=HELP,
                           short_help="Import a Hugging Face checkpoint (GPT-2, BERT) by its model_type.")
import_gpt2 = click.Command("import-gpt2", callback=_run, params=_PARAMS,
                            help="The older name of `tinyllm import` (same options).\n\n" + HELP,
                            short_help="Alias of `tinyllm import`.")
