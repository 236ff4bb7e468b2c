"""`tinyllm bench-train`: how fast the training loop runs a config on this machine."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

# the same thread policy `tinyllm train` uses (see tinyllm/cli/train_cmd.py); set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BUNDLED_TEXT = Path(__file__).resolve().parents[1] / "bundled" / "data" / "tinyshakespeare.txt"


@click.command("bench-train", context_settings={"show_default": True})
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A model preset (tiny, small, medium, gpt2, ...) or a bundled training "
              "preset (shakespeare-char, ...).")
@click.option("--data", help="Text to draw batches from. [default: the config's, else the bundled "
              "tiny Shakespeare]")
@click.option("--steps", type=click.IntRange(min=1), default=10, help="Timed optimizer steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=2,
              help="Untimed steps first (the first one includes torch.compile's compilation).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a setting: batch_size=64, compile=true, precision=bf16, model.n_layer=6.")
@click.option("--quiet", "-q", is_flag=True, help="No per-step lines on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def bench_train(config, preset, data, steps, warmup, sets, quiet, as_json):
    """Measure training speed: tokens/s, ms per step and model FLOPs utilisation.

    \b
    Runs the real training loop (same autocast, torch.compile, fused AdamW and DDP settings as
    `tinyllm train` with this CONFIG/--preset/--set) for --warmup untimed steps and --steps timed
    ones, and prints the median. FLOPs per token are 6N + 12*L*H*Q*T (PaLM); MFU is achieved FLOP/s
    over the machine's peak, estimated for CPUs as cores x GHz x FLOPs/cycle (AVX2 FMA: 32,
    AVX-512: 64), "unknown" where it cannot be estimated. Nothing is written to the output directory.

    \b
    Examples:
      tinyllm bench-train --preset tiny
      tinyllm bench-train --preset medium --set batch_size=64 --steps 3 --warmup 1
      tinyllm bench-train --preset shakespeare-char --set compile=true --json
      torchrun --nproc_per_node=2 -m tinyllm bench-train --preset small
    """
    from tinyllm.train.runconfig import load_run

    if data is None and config is None and not _preset_has_data(preset):
        data = str(BUNDLED_TEXT)
    run = load_run(config, preset, data=data, sets=sets, out=os.devnull)
    from tinyllm.train import ddp
    from tinyllm.train.bench import bench_run

    from tinyllm.cli.notes import say
    from tinyllm.cli.progress import progress_bar

    from tinyllm.cli.notes import set_quiet

    set_quiet(quiet)
    log = None if quiet or not ddp.info().is_main else say
    r = bench_run(run, steps=steps, warmup=warmup, log=log,
                  progress=None if quiet else progress_bar)
    if not ddp.info().is_main:
        return
    if as_json:
        click.echo(json.dumps(r))
        return
    m = r["model"]
    mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "unknown"
    peak = f"{r['peak_gflops']:.1f} GFLOP/s ({r['peak_how']})" if r["peak_gflops"] else r["peak_how"]
    rows = [
        ("model", f"{m['n_layer']} layers x {m['n_embd']} wide, {m['n_head']} heads, vocab "
                  f"{m['vocab_size']}, {r['params'] / 1e6:.2f}M params"),
        ("batch", f"{r['batch_size']} x {r['seq_len']} tokens x {r['grad_accum']} accum x "
                  f"{r['world_size']} processes = {r['tokens_per_step']} tokens/step"),
        ("settings", f"{r['device']}, {r['precision']}, compile={r['compile']}, "
                     f"fused AdamW={r['fused_adamw']}, {r['machine']['threads']} threads"),
        ("first step", f"{r['first_step_s']} s" if r["first_step_s"] is not None else "-"),
        ("ms/step", f"{r['ms_per_step']:.1f} (median of {r['steps']}; best {r['ms_per_step_min']:.1f})"),
        ("tokens/s", f"{r['tokens_per_s']:,.0f}"),
        ("FLOPs/token", f"{r['flops_per_token'] / 1e6:.2f}M (6N + 12*L*H*Q*T)"),
        ("achieved", f"{r['gflops']:.1f} GFLOP/s"),
        ("peak", peak),
        ("MFU", mfu),
        ("machine", f"{r['machine']['cpu']}, {r['machine']['nproc']} CPUs, load average "
                    f"{r['machine']['load_avg_1m']}"),
    ]
    for k, v in rows:
        click.echo(f"{k:<12} {v}")


def _preset_has_data(preset: str | None) -> bool:
    if preset is None:
        return False
    from tinyllm.train.runconfig import training_presets

    path = training_presets().get(preset)
    if path is None:
        return False
    from tinyllm.config import read_yaml

    return bool((read_yaml(path).get("train") or {}).get("data"))
