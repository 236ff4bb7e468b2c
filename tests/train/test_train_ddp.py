"""Data-parallel training: 2 CPU processes under torchrun (gloo) equal one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from tinyllm.train.pretrain import train_lm
from tinyllm.train.runconfig import load_run

from conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

COMMON = ["n_layer=1", "n_head=2", "n_embd=32", "context_length=32", "eval_batches=2",
          "sample_tokens=0", "grad_accum=2", "precision=fp32"]  # fp32: bf16 rounding depends on the split


def test_two_process_ddp_equals_one_process(tmp_path):
    data = SHARED_DATA / "the-verdict.txt"
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tinyllm", "train", "--data", str(data), "--out", str(ddp_out), "--max-steps", "4",
           "--eval-every", "2", "-q"]
    for s in [*COMMON, "batch_size=2"]:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(ddp_out)  # only rank 0 prints

    run = load_run(data=str(data), out=str(single_out), max_steps=4, eval_every=2,
                   sets=[*COMMON, "batch_size=4"])
    train_lm(run)

    a = torch.load(ddp_out / "train_state" / "state.pt", weights_only=True)
    b = torch.load(single_out / "train_state" / "state.pt", weights_only=True)
    assert (a["world_size"], b["world_size"]) == (2, 1)
    assert a["step"] == b["step"] == 4 and a["tokens"] == b["tokens"] == 4 * 8 * 32
    for k in b["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-5, rtol=0)
    assert not any(p.name.startswith("metrics") for p in (ddp_out / "last").iterdir())
    lines = (ddp_out / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in line for line in lines) == 1  # rank 0 alone writes
