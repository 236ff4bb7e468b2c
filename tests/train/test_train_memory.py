"""Training reads its token file window by window, never whole: why memory stays flat as the corpus
grows. The peak-RSS ratio itself (1 GB against 10 MB of tokens) is measured by
``benchmarks/train_memory.py``; here the property behind it is checked exactly, plus a smoke run of
that benchmark at a tiny scale so it keeps working."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tinyllm.data import text as text_mod
from tinyllm.train.pretrain import train_lm
from tinyllm.train.runconfig import load_run

from conftest import shakespeare_file

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "train_memory.py"
SEQ, BATCH, EVAL_BATCHES, STEPS = 32, 4, 2, 3


def test_training_reads_only_the_windows_it_uses(tmp_path, monkeypatch):
    corpus = shakespeare_file(tmp_path / "shakespeare.txt", 400_000)
    reads: list[tuple[int, int]] = []        # (bytes, offset) of every pread while training
    real_pread = os.pread

    def recording_pread(fd, n, offset):
        reads.append((n, offset))
        return real_pread(fd, n, offset)

    def whole_file(*a, **k):
        raise AssertionError("the token file was mapped or read whole")

    monkeypatch.setattr(os, "pread", recording_pread)
    monkeypatch.setattr(text_mod.TokenSpan, "array", whole_file)
    monkeypatch.setattr(np, "memmap", whole_file)
    monkeypatch.setattr(np, "fromfile", whole_file)
    run = load_run(data=str(corpus), out=str(tmp_path / "run"), max_steps=STEPS, sets=[
        "n_layer=1", "n_head=2", "n_embd=16", f"context_length={SEQ}", f"batch_size={BATCH}",
        f"eval_batches={EVAL_BATCHES}", "eval_every=0", "sample_tokens=0",
        f"cache_dir={tmp_path / 'cache'}"])
    done = train_lm(run)
    assert done["reason"] == "finished" and done["step"] == STEPS and "val_loss" in done

    (tok_file,) = (tmp_path / "cache").glob("*.tok")
    size = tok_file.stat().st_size
    assert size == 2 * json.loads(tok_file.with_suffix(".json").read_text())["n"]   # uint16 ids
    window = (SEQ + 1) * 2
    assert reads and all(n == window for n, _ in reads)   # one window of seq_len + 1 tokens a read
    # the training windows (the first batch is read once more to count tokens per step) and one
    # evaluation of eval_batches batches on each split: nothing else comes off the disk
    assert len(reads) <= (STEPS + 1) * BATCH + 2 * EVAL_BATCHES * BATCH
    assert sum(n for n, _ in reads) < size / 100
    assert all(0 <= off and off + n <= size for n, off in reads)


def test_benchmark_runs_at_a_tiny_scale(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH), "--small", "64KB", "--large", "256KB",
                        "--steps", "1", "--dir", str(tmp_path), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    small, large = res["rows"]
    assert large["tokens"] == 4 * small["tokens"] == 2**17             # uint16: 2 bytes a token
    assert small["steps"] == large["steps"] == 1
    assert 0 < small["val_loss"] < 10 and 0 < large["val_loss"] < 10    # it trained and evaluated
    assert small["ratio"] == 1.0 and large["ratio"] > 0                  # reported, not judged here
    assert list(tmp_path.iterdir()) == []                              # token files cleaned up
