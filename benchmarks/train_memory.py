"""Training memory against corpus size: peak RSS of training on a 1 GB token file vs a 10 MB one.

Token files are what ``tinyllm train`` tokenises a corpus into (raw uint16 ids, read window by window
with ``pread``, never loaded whole). This benchmark writes two such files of random char-vocabulary ids
(no real 1 GB text needed), then trains the same small GPT for the same number of steps on each, each
run in a fresh process through the real Trainer (random windows over the whole training split, an
evaluation over windows spread across the validation split at the end), and compares the peak
resident set sizes (``ru_maxrss``). Target: the large file's peak within 1.2x of the small one's.

    python benchmarks/train_memory.py                        # 10 MB vs 1 GB, 50 steps each
    python benchmarks/train_memory.py --small 2MB --large 200MB --steps 10 --json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from benchmarks._common import emit  # noqa: E402
from tinyllm.units import human_bytes  # noqa: E402

VOCAB = 65             # tiny Shakespeare's char vocabulary
MODEL = dict(n_layer=2, n_head=2, n_embd=64, context_length=64)


def parse_size(text: str) -> int:
    """'10MB' / '1GB' / '512KB' / '1000' -> bytes (powers of 1024)."""
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def write_token_file(path: Path, n_bytes: int, seed: int = 0) -> int:
    """Random uint16 ids < VOCAB, written through np.memmap in 32 MB pieces; returns the token count."""
    import numpy as np

    n = n_bytes // 2
    arr = np.memmap(path, dtype=np.uint16, mode="w+", shape=(n,))
    rng = np.random.default_rng(seed)
    piece = 16 << 20
    for start in range(0, n, piece):
        arr[start:start + piece] = rng.integers(0, VOCAB, size=min(piece, n - start), dtype=np.uint16)
    arr.flush()
    del arr
    return n


def child(path: str, steps: int, threads: int) -> dict:
    """Train on the token file at ``path`` in this process; report the peak RSS."""
    import numpy as np
    import torch

    from tinyllm.config import ModelConfig, TrainConfig
    from tinyllm.data.text import SlidingWindowDataset, TokenFile, split_tokens
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import CharTokenizer
    from tinyllm.train.bench import random_batches
    from tinyllm.models.loss import lm_loss
    from tinyllm.train.pretrain import make_lm_eval
    from tinyllm.train.trainer import Trainer

    t0 = time.time()
    torch.set_num_threads(threads)
    n = os.path.getsize(path) // 2
    tokens = TokenFile(Path(path), np.dtype(np.uint16), 0, n)
    cfg = TrainConfig(batch_size=16, max_steps=steps, eval_every=0, eval_batches=8, sample_tokens=0,
                      warmup_steps=0, device="cpu")
    train_span, val_span = split_tokens(tokens, cfg.val_fraction)
    seq = MODEL["context_length"]
    splits = {"train": SlidingWindowDataset(train_span, seq, seq),
              "val": SlidingWindowDataset(val_span, seq, seq)}
    tok = CharTokenizer([chr(32 + i) for i in range(VOCAB)])
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=VOCAB, **MODEL))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, cfg, random_batches(train_span, cfg, seq), lm_loss, out,
                          eval_fn=make_lm_eval(splits, cfg, tok, lambda: torch.device("cpu")))
        done = trainer.fit()
    return {"tokens": n, "steps": done["step"], "val_loss": round(done["val_loss"], 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", default="10MB", help="size of the small token file (default 10MB)")
    ap.add_argument("--large", default="1GB", help="size of the large token file (default 1GB)")
    ap.add_argument("--steps", type=int, default=50, help="training steps on each (default 50)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--dir", help="where to write the token files (default: a temporary directory)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.threads)))
        return None

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="train-memory-") as tmp:
        for label in (args.small, args.large):
            size = parse_size(label)
            path = Path(tmp) / f"tokens-{size}.tok"
            t0 = time.time()
            write_token_file(path, size)
            log(f"wrote {human_bytes(size)} token file in {time.time() - t0:.1f} s; training {args.steps} steps")
            r = subprocess.run([sys.executable, __file__, "--child", str(path), "--steps", str(args.steps),
                                "--threads", str(args.threads)], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"error: the run on {human_bytes(size)} failed:\n{r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            log(f"{human_bytes(size)}: peak RSS {res['peak_rss_mb']} MiB ({res['seconds']} s)")
            rows.append({"name": f"{human_bytes(size)} token file", "file_mb": round(size / (1 << 20), 1),
                         **res})
            path.unlink()
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["ratio"] = round(row["peak_rss_mb"] / base, 3)
    setup = {"model": "2 layers x 64 wide, context 64", "batch": 16, "steps": args.steps,
             "vocab": VOCAB, "dtype": "uint16", "threads": args.threads, "target_ratio": 1.2}
    return emit("train_memory", setup, rows[0]["name"], rows, args.json, print_table)


def print_table(result: dict) -> None:
    rows, s = result["rows"], result["setup"]
    print(f"peak RSS of {s['steps']} training steps (2x64 GPT, batch 16 x 64) by token-file size")
    for row in rows:
        print(f"{row['name']:>18}: {row['tokens']:>12,} tokens  peak RSS {row['peak_rss_mb']:8.1f} MiB  "
              f"{row['ratio']:.3f}x")
    verdict = "within" if rows[-1]["ratio"] <= s["target_ratio"] else "OVER"
    print(f"large/small = {rows[-1]['ratio']:.3f} ({verdict} the {s['target_ratio']}x target)")


if __name__ == "__main__":
    main()
