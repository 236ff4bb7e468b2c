"""Sharded training (train.fsdp): 2 CPU processes under torchrun (gloo) equal one process with the same
global batch, and an FSDP run resumes exactly (under torchrun, and in one process)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from tinyllm.train.pretrain import train_lm
from tinyllm.train.runconfig import load_run

from conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

DATA = SHARED_DATA / "the-verdict.txt"
# a constant learning rate, so that a run stopped at step 2 and resumed to 4 equals one run of 4
# an odd eval_batches and a sample: under FSDP every rank must run the same forward passes
COMMON = ["n_layer=2", "n_head=2", "n_embd=32", "context_length=32", "eval_batches=3",
          "sample_tokens=8", "grad_accum=2", "schedule=constant", "warmup_steps=0",
          "precision=fp32"]  # fp32: bf16 autocast (CPUs with AMX) rounds differently per split


def torchrun(out, max_steps, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tinyllm", "train", "--data", str(DATA), "--out", str(out), "--max-steps",
           str(max_steps), "--eval-every", "2", "-q", *args]
    for s in [*COMMON, "batch_size=2", "fsdp=true"]:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(out)  # only rank 0 prints


def state(out):
    return torch.load(out / "train_state" / "state.pt", weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_fsdp_equals_one_process_and_resumes(tmp_path, capsys):
    full, part, single = tmp_path / "fsdp", tmp_path / "fsdp-resumed", tmp_path / "single"
    torchrun(full, 4)
    run = load_run(data=str(DATA), out=str(single), max_steps=4, eval_every=2,
                   sets=[*COMMON, "batch_size=4"])
    train_lm(run)

    a, b = state(full), state(single)
    assert (a["world_size"], b["world_size"]) == (2, 1)
    assert a["step"] == b["step"] == 4 and a["tokens"] == b["tokens"] == 4 * 8 * 32
    assert_same_weights(a["model"], b["model"])
    # the optimizer state is stored as a single process stores it (parameter indices)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for i, s in b["optimizer"]["state"].items():
        assert_same_weights(a["optimizer"]["state"][i], s)
    # the model directories hold the full weights, written by rank 0 alone
    assert_same_weights(load_file(full / "last" / "model.safetensors"),
                        load_file(single / "last" / "model.safetensors"))
    lines = (full / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in line for line in lines) == 1

    # stopped at step 2, resumed under torchrun: the same as the uninterrupted run
    torchrun(part, 2)
    one = tmp_path / "one-process"
    shutil.copytree(part, one)
    torchrun(part, 4, "--resume")
    assert state(part)["step"] == 4
    assert_same_weights(state(part)["model"], a["model"])

    # an FSDP train state resumes in one process too, with the same global batch (fsdp=true then
    # trains unsharded, with a note)
    run = load_run(out=str(one), max_steps=4, resume=True, sets=["batch_size=4"])
    notes = []
    train_lm(run, resume=True, log=notes.append)
    assert any("train.fsdp needs a distributed launch" in n for n in notes)
    assert capsys.readouterr().err == ""  # the library never prints
    assert_same_weights(state(one)["model"], a["model"])
