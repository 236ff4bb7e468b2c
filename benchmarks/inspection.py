"""`tinyllm inspect` speed, and proof that the model's own forward did not move.

On GPT-2 124M's shape (random seeded weights, the GPT-2 tokenizer) with a 64-token prompt:

* ``forward (SDPA)``: the model's own forward pass, the reference row;
* ``forward, decoder.py at REF``: the same weights in the decoder as it is at git ``--base``
  (default ``main``), loaded from ``git show`` into a scratch module: the ratio ~1.0 says the
  inspection work left the normal forward alone (skipped outside a git checkout);
* ``explicit attention path``: :func:`tinyllm.models.inspect.trace`, which keeps every layer's
  weights and residual stream;
* ``inspect answer``: :meth:`Inspector.inspect`, the whole analysis ``tinyllm inspect`` prints
  (trace, next-token odds, the logit lens of every layer through the 50,257-token LM head);
* ``tinyllm inspect`` / ``tinyllm generate -n 1``: each command end to end in a fresh process
  (Python start, torch import, 500 MB of weights read), the second as the peer: the fixed cost
  any command on this model pays.

Rows are interleaved over ``--repeats`` and the median reported. ::

    python benchmarks/inspection.py              # table
    python benchmarks/inspection.py --json       # what benchmarks/run_all.py reads
    python benchmarks/inspection.py --repeats 9 --base HEAD~3
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._common import emit, print_skipped  # noqa: E402
from tinyllm.checkpoint import save_model  # noqa: E402
from tinyllm.config import ModelConfig  # noqa: E402
from tinyllm.engines.inspect import open_inspector  # noqa: E402
from tinyllm.models.decoder import GPT  # noqa: E402
from tinyllm.models.inspect import trace  # noqa: E402
from tinyllm.tokenizer import get_gpt2  # noqa: E402
from tinyllm.train.bench import machine  # noqa: E402

REFERENCE = "forward (SDPA)"
VERDICT = ROOT / "tinyllm" / "bundled" / "data" / "the-verdict.txt"


def prompt_of(n_tokens: int) -> str:
    """The Verdict's first ``n_tokens`` GPT-2 tokens as text (that re-encodes to as many)."""
    tok = get_gpt2()
    ids = tok.encode(VERDICT.read_text(encoding="utf-8"))
    text = tok.decode(ids[:n_tokens])
    assert len(tok.encode(text)) == n_tokens
    return text


def decoder_at(ref: str):
    """The GPT class of tinyllm/models/decoder.py at git ``ref`` (None when git cannot say)."""
    try:
        source = subprocess.run(["git", "show", f"{ref}:tinyllm/models/decoder.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader(f"decoder_at_{abs(hash(ref))}", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{ref}:tinyllm/models/decoder.py", "exec"), module.__dict__)
    return module.GPT


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64, help="prompt length in tokens")
    ap.add_argument("--base", default="main", help="git ref whose decoder.py is the forward peer")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads, here and in the commands (OMP_NUM_THREADS); 1 reads best "
                         "on a shared 2-core machine")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = ModelConfig()                                 # GPT-2 124M
    model = GPT(cfg).eval()
    text = prompt_of(args.tokens)
    idx = torch.tensor([get_gpt2().encode(text)])
    rows: dict[str, list[float]] = {}
    work: dict[str, object] = {}

    work[REFERENCE] = lambda: model(idx)
    Base = decoder_at(args.base)
    base_name = f"forward, decoder.py at {args.base}"
    if Base is not None:
        base = Base(cfg).eval()
        base.load_state_dict(model.state_dict())
        with torch.inference_mode():
            assert torch.allclose(base(idx), model(idx), atol=1e-5)
        work[base_name] = lambda: base(idx)
    work["explicit attention path"] = lambda: trace(model, idx)

    with tempfile.TemporaryDirectory() as tmp:
        d = save_model(model, get_gpt2(), Path(tmp) / "gpt2-124m-random")
        inspector = open_inspector(d)
        work["inspect answer (model loaded)"] = lambda: inspector.inspect(text, top_k=5)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYLLM_HOME": tmp,
               "OMP_NUM_THREADS": str(args.threads)}
        exe = str(Path(sys.executable).parent / "tinyllm")
        for name, cmd in (("`tinyllm inspect` (process)", ["inspect", "-m", str(d), text]),
                          ("`tinyllm generate -n 1` (process)",
                           ["generate", "-m", str(d), "-n", "1", "--temperature", "0", text])):
            work[name] = lambda cmd=cmd: subprocess.run([exe, *cmd], env=env, check=True,
                                                        stdout=subprocess.DEVNULL)
        with torch.inference_mode():
            for fn in work.values():                   # warm-up: first calls allocate
                fn()
            for _ in range(args.repeats):
                for name, fn in work.items():
                    rows.setdefault(name, []).append(timed(fn))

    ref = statistics.median(rows[REFERENCE])
    out_rows = []
    for name, times in rows.items():
        ms = statistics.median(times) * 1000
        out_rows.append({"name": name, "ms": round(ms, 1), "ratio": round(ms / (ref * 1000), 2)})
    if Base is None:
        out_rows.insert(1, {"name": base_name, "skipped": "not a git checkout (or no such ref)"})
    process = {r["name"]: r for r in out_rows if "(process)" in r["name"]}
    if len(process) == 2:
        cmd, peer = process.values()
        cmd["vs generate"] = round(cmd["ms"] / peer["ms"], 2)
    setup = {"shape": "GPT-2 124M (random weights)", "prompt tokens": args.tokens,
             "repeats": args.repeats, **machine()}
    return emit("inspection", setup, REFERENCE, out_rows, args.json, print_table)


def print_table(result: dict) -> None:
    for k, v in result["setup"].items():
        print(f"{k}: {v}")
    width = max(len(r["name"]) for r in result["rows"]) + 2
    print(f"{'':{width}}{'ms':>9} {'x forward':>10}")
    for r in result["rows"]:
        if print_skipped(r, width):
            continue
        extra = f"   ({r['vs generate']:.2f}x generate -n 1)" if "vs generate" in r else ""
        print(f"{r['name']:{width}}{r['ms']:9.1f} {r['ratio']:10.2f}{extra}")


if __name__ == "__main__":
    main()
