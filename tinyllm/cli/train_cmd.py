"""`tinyllm train`: pretrain a GPT (next-token) or an encoder (masked tokens) on a text file."""
from __future__ import annotations

import json
import os
import sys

import click

# OpenMP threads that spin while waiting turn a busy machine into a 10x slowdown (measured on the
# 2-core reference machine under load: 2 threads 3-5 s/step active vs 0.45 s passive; see
# docs/performance.md, training speed). Set before torch is imported; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@click.command(context_settings={"show_default": True})
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A model preset (tiny, small, gpt2, ...) or a bundled training preset "
              "(shakespeare-char, ...). `tinyllm train --list-presets` shows them.")
@click.option("--data", help="UTF-8 text file to train on.")
@click.option("--objective", type=click.Choice(["lm", "mlm"]),
              help="lm: predict the next token (decoders); mlm: predict masked tokens (encoders, "
                   "BERT's pretraining; the model defaults to bert-tiny). [default: lm]")
@click.option("--tokenizer", type=click.Choice(["gpt2", "char", "bpe", "wordpiece"]),
              help="Tokenizer (char, bpe and wordpiece are trained on the data and saved with the "
                   "model). [default: char; wordpiece for --objective mlm]")
@click.option("--out", help="Output model directory. [default: $TINYLLM_HOME/models/<run name>]")
@click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps in total.")
@click.option("--eval-every", type=click.IntRange(min=0), help="Evaluate (and keep the best) every N steps.")
@click.option("--save-every", type=click.IntRange(min=0),
              help="Write last/ and the train state every N steps (0: at each eval).")
@click.option("--seed", type=int, help="Random seed (init, data order, dropout).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its train state.")
@click.option("--overwrite", is_flag=True, help="Start over in an --out that already holds a run.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a setting: train.lr=3e-4, model.n_layer=4, or a bare key (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON on stdout.")
@click.option("--list-presets", is_flag=True, help="List model and training presets and exit.")
def train(config, preset, data, objective, tokenizer, out, max_steps, eval_every, save_every, seed,
          resume, overwrite, sets, quiet, as_json, list_presets):
    """Pretrain a GPT language model (or, with --objective mlm, a BERT encoder) on a text file.

    \b
    CONFIG is a YAML with `model:` (a preset and/or ModelConfig fields) and `train:` (TrainConfig
    fields); options and --set override it. The output directory is a model directory (the best
    validation checkpoint) with last/ (the latest), train_state/ (for --resume), train.yaml and
    metrics.jsonl. Ctrl-C saves and exits (code 130); --resume continues exactly.

    \b
    Examples:
      tinyllm train --preset tiny --data tinyllm/bundled/data/tinyshakespeare.txt --out runs/tiny --max-steps 200
      tinyllm train --preset shakespeare-char --out runs/shakespeare
      tinyllm train --out runs/shakespeare --resume --max-steps 6000
      tinyllm train --preset bert-tiny --objective mlm --data tinyllm/bundled/data/tinyshakespeare.txt --out runs/bert-tiny
      torchrun --nproc_per_node=2 -m tinyllm train --preset tiny --data FILE --out runs/ddp
    """
    from tinyllm.cli.notes import set_quiet
    from tinyllm.train.runconfig import load_run

    set_quiet(quiet)
    if list_presets:
        _list_presets(as_json)
        return
    run = load_run(config, preset, data=data, tokenizer=tokenizer, out=out, max_steps=max_steps,
                   eval_every=eval_every, save_every=save_every, seed=seed, sets=sets, resume=resume,
                   objective=objective)
    from tinyllm.train import ddp
    from tinyllm.train.pretrain import train_lm

    from tinyllm.cli.notes import say
    from tinyllm.cli.progress import TrainProgress, progress_bar

    done = train_lm(run, resume=resume, overwrite=overwrite, log=say,
                    callbacks=[] if quiet else [TrainProgress()],
                    progress=None if quiet else progress_bar)
    if ddp.info().is_main:
        click.echo(json.dumps(done) if as_json else done["out"])
    if run.train.fsdp and ddp.info().enabled:
        # Everything is written and the process group is gone, but with gloo on a CPU the FSDP
        # process sometimes aborted while the interpreter shut down ("terminate called without an
        # active exception" from a C++ thread; about 1 run in 10 here), which makes torchrun
        # report a failed job. Leave without running those destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _list_presets(as_json: bool) -> None:
    from tinyllm.config import PRESETS, read_yaml
    from tinyllm.train.runconfig import training_presets

    rows = [{"name": k, "kind": "model", **v} for k, v in PRESETS.items()]
    for name, path in training_presets().items():
        data = read_yaml(path)
        rows.append({"name": name, "kind": "training", "path": str(path),
                     "model": data.get("model"), "data": (data.get("train") or {}).get("data")})
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        if r["kind"] == "model":
            shape = ", ".join(f"{k}={v}" for k, v in r.items() if k not in ("name", "kind"))
            click.echo(f"{r['name']:<18} model     {shape}")
        else:
            click.echo(f"{r['name']:<18} training  {r['path']}")
