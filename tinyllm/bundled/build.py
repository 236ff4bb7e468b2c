"""The recipes of the bundled models: trained from scratch, with fixed seeds. `make models` runs
them through their command (:mod:`tinyllm.cli.build_models`):

    python -m tinyllm.cli.build_models                        # every bundled model
    python -m tinyllm.cli.build_models shakespeare-char       # just this one
    python -m tinyllm.cli.build_models --max-steps 50 --out /tmp/models   # a quick trial elsewhere

- ``shakespeare-char``: the default language model, a character-level GPT trained on
  ``bundled/data/tinyshakespeare.txt`` with the training loop of ``tinyllm train`` (the recipe is
  the ``shakespeare-char-10min`` preset with a fixed step count, :data:`SHAKESPEARE_STEPS`).
- ``sms-spam``: the default classifier, trained from scratch on ``bundled/data/SMSSpamCollection.tsv``
  by :func:`tinyllm.bundled.sms_spam.build`.

Each model is built in a staging folder and swapped in only when complete, so an interrupted build
leaves the previous model in place. All bundled models together must stay under 10 MB. Progress
and notes go to the ``callbacks``, ``progress`` and ``log`` the caller passes (silent by default).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tinyllm import modeldir
from tinyllm.runtime.engine import Log

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


def build_shakespeare(out_dir: Path, max_steps: int | None = None, threads: int = 0,
                      callbacks=(), progress: Callable | None = None, log: Log | None = None
                      ) -> dict[str, Any]:
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
        done = train_lm(run, overwrite=True, callbacks=callbacks, progress=progress, log=log)
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
                   callbacks=(), progress: Callable | None = None, log: Log | None = None
                   ) -> dict[str, Any]:
    """The SMS spam classifier (recipe and fixed seed: :mod:`tinyllm.bundled.sms_spam`).

    ``threads`` 0 means the recipe's own count (:data:`tinyllm.bundled.sms_spam.THREADS`)."""
    from tinyllm.bundled import sms_spam

    return sms_spam.build(out_dir, callbacks=callbacks, threads=threads or sms_spam.THREADS)


def export_int8(model_dir: Path, log: Log | None = None) -> dict[str, Any]:
    """Ship the int8 ONNX graph (only; the float graph would not fit the size budget) beside the
    weights, so `tinyllm classify` and `tinyllm generate` run on ONNX Runtime without importing
    torch (see docs/onnx.md). ``--quant auto``: a language model gets the fastest
    8-bit method that stays close to float on its validation text."""
    from tinyllm.export import INT8_FILE
    from tinyllm.export.onnx import export_model

    res = export_model(model_dir, int8=True, keep_fp32=False, quant="auto", log=log)
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
