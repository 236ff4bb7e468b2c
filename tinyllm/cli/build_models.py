"""Train the bundled models from scratch, with fixed seeds (what `make models` runs).

    python -m tinyllm.cli.build_models                        # every bundled model
    python -m tinyllm.cli.build_models shakespeare-char       # just this one
    python -m tinyllm.cli.build_models --max-steps 50 --out /tmp/models   # a quick trial elsewhere

The recipes are :mod:`tinyllm.bundled.build`'s; this is their command line, which shows progress.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tinyllm.bundled.build import BUILDERS, MAX_BYTES, MODELS, dir_bytes, export_int8, swap_in
from tinyllm.cli.notes import say
from tinyllm.cli.progress import TrainProgress, progress_bar


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinyllm.cli.build_models",
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
        say(f"== building {name} in {args.out}")
        staging = args.out / f".{name}.new"
        shutil.rmtree(staging, ignore_errors=True)
        kwargs = {"threads": args.threads, "log": say}
        if not args.quiet:
            kwargs.update(callbacks=[TrainProgress()], progress=progress_bar)
        if name == "shakespeare-char":
            kwargs["max_steps"] = args.max_steps
        report = BUILDERS[name](staging, **kwargs)
        if not args.no_onnx:
            report.update(export_int8(staging, log=None if args.quiet else say))
        swap_in(staging, args.out / name)
        say(f"{name}: {report}")
        say(f"{name}: {dir_bytes(args.out / name) / 1e6:.2f} MB")
    total = sum(dir_bytes(d) for d in args.out.iterdir() if d.is_dir() and not d.name.startswith("."))
    say(f"all bundled models: {total / 1e6:.2f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    if total > MAX_BYTES:
        say("error: the bundled models are over the size limit; store float16 or shrink a model")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
