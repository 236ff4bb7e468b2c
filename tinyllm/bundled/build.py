"""Train the bundled models from scratch, with fixed seeds (what `make models` runs).

    python -m tinyllm.bundled.build                        # every bundled model
    python -m tinyllm.bundled.build shakespeare-char       # just this one
    python -m tinyllm.bundled.build --max-steps 50 --out /tmp/models   # a quick trial elsewhere

- ``shakespeare-char``: the default language model, a character-level GPT trained on
  ``bundled/data/tinyshakespeare.txt`` with the training loop of ``tinyllm train`` (the recipe is
  the ``shakespeare-char-10min`` preset with a fixed step count, :data:`SHAKESPEARE_STEPS`).
- ``sms-spam``: the default classifier, trained from scratch on ``bundled/data/SMSSpamCollection.tsv``
  by :func:`tinyllm.bundled.sms_spam.build`.

Each model is built in a staging folder and swapped in only when complete, so an interrupted build
leaves the previous model in place. All bundled models together must stay under 10 MB.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tinyllm import modeldir

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MODELS = modeldir.BUNDLED_MODELS
MAX_BYTES = 10 * 1000 * 1000  # every bundled model together

# The recipe of the bundled language model: the `shakespeare-char-10min` training preset (4 layers,
# 4 heads, 128 wide, context 64, 0.8M parameters, 1.6 MB in float16) with a fixed step count in place
# of its 10-minute budget, so the build gives the same weights on any machine. 8,800 steps is what
# the budget allows on the 2-core reference machine (about 10 minutes).
SHAKESPEARE_PRESET = "shakespeare-char-10min"
SHAKESPEARE_STEPS = 8800
SHAKESPEARE_SETS = ("max_time_minutes=0", "sample_tokens=0", "seed=1337", "precision=fp32",
                    "compile=false")
SHAKESPEARE_DTYPE = "float16"   # storage dtype of the shipped weights (half of float32; loads as float32)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_shakespeare(out_dir: Path, max_steps: int | None = None, threads: int = 0,
                      quiet: bool = False) -> dict[str, Any]:
    """Train the char-level Shakespeare LM; writes a plain model directory at ``out_dir``."""
    import torch

    from tinyllm.checkpoint import load_model, load_tokenizer, save_model
    from tinyllm.train.pretrain import train_lm
    from tinyllm.train.runconfig import load_run

    steps = max_steps or SHAKESPEARE_STEPS
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tinyllm-build-") as tmp:
        sets = [*SHAKESPEARE_SETS, f"max_steps={steps}", f"num_threads={threads}",
                f"cache_dir={Path(tmp) / 'cache'}"]
        if max_steps:
            sets.append(f"eval_every={min(1000, max_steps)}")
        run = load_run(preset=SHAKESPEARE_PRESET, data=str(DATA / "tinyshakespeare.txt"),
                       out=str(Path(tmp) / "run"), sets=sets)
        done = train_lm(run, overwrite=True, quiet=quiet)
        best = Path(run.out)                      # the top-level run dir holds the best checkpoint
        model = load_model(best)
        info = dict(model.meta.get("train") or {})
        info.update(data="tinyllm/bundled/data/tinyshakespeare.txt", seed=run.train.seed,
                    max_steps=steps, recipe=f"preset {SHAKESPEARE_PRESET}, {steps} steps",
                    train_seconds=round(time.perf_counter() - t0, 1))
        info.pop("out", None)
        save_model(model, load_tokenizer(best), out_dir, task="lm", extra={"train": info},
                   dtype=getattr(torch, SHAKESPEARE_DTYPE))
    return {"val_loss": done.get("val_loss"), "best_metric": done.get("best_metric"),
            "best_step": done.get("best_step"), "steps": done.get("step"),
            "seconds": round(time.perf_counter() - t0, 1)}


def build_sms_spam(out_dir: Path, max_steps: int | None = None, threads: int = 0,
                   quiet: bool = False) -> dict[str, Any]:
    """The SMS spam classifier (recipe and fixed seed: :mod:`tinyllm.bundled.sms_spam`).

    ``threads`` 0 means the recipe's own count (:data:`tinyllm.bundled.sms_spam.THREADS`)."""
    from tinyllm.bundled import sms_spam

    return sms_spam.build(out_dir, quiet=quiet, threads=threads or sms_spam.THREADS)


def export_int8(model_dir: Path, quiet: bool = False) -> dict[str, Any]:
    """Ship the int8 ONNX graph (only; the float graph would not fit the size budget) beside the
    weights, so `tinyllm classify` and `tinyllm generate` run on ONNX Runtime without importing
    torch (see the README's onnx section). ``--quant auto``: a language model gets the fastest
    8-bit method that stays close to float on its validation text."""
    from tinyllm.export import INT8_FILE
    from tinyllm.export.onnx import export_model

    res = export_model(model_dir, int8=True, keep_fp32=False, quant="auto",
                       log=None if quiet else log)
    return {"onnx_exporter": res.exporter, "onnx_quant": res.quant_method,
            "onnx_quant_check": res.quant_check, "onnx_int8_bytes": res.sizes.get(INT8_FILE)}


BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "shakespeare-char": build_shakespeare,
    "sms-spam": build_sms_spam,
}


def swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by the finished ``staging`` directory (the old one is removed last)."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinyllm.bundled.build",
                                 description="Train the bundled models with fixed seeds.")
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"models to build (default: all: "
                                                             f"{', '.join(BUILDERS)})")
    ap.add_argument("--out", type=Path, default=MODELS, help="where the model folders go "
                                                              "(default: the package's bundled/models)")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="override the LM's step count (for a quick trial; not for shipping)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default; 1 is faster on a busy machine)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--no-onnx", action="store_true",
                    help="do not ship model.int8.onnx beside the weights")
    args = ap.parse_args(argv)

    names = args.names or list(BUILDERS)
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        log(f"== building {name} in {args.out}")
        staging = args.out / f".{name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        kwargs = {"threads": args.threads, "quiet": args.quiet}
        if name == "shakespeare-char":
            kwargs["max_steps"] = args.max_steps
        report = BUILDERS[name](staging, **kwargs)
        if not args.no_onnx:
            report.update(export_int8(staging, args.quiet))
        swap_in(staging, args.out / name)
        log(f"{name}: {report}")
        log(f"{name}: {dir_bytes(args.out / name) / 1e6:.2f} MB")
    total = sum(dir_bytes(d) for d in args.out.iterdir() if d.is_dir() and not d.name.startswith("."))
    log(f"all bundled models: {total / 1e6:.2f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    if total > MAX_BYTES:
        log("error: the bundled models are over the size limit; store float16 or shrink a model")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
