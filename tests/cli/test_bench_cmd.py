"""`tinyllm bench-train`: output fields (not speed), FLOPs accounting, peak estimation, bad input."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tinyllm.cli import main
from tinyllm.config import ModelConfig
from tinyllm.train import bench

from conftest import shakespeare_file

TINY = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "context_length=32",
        "--set", "batch_size=4"]


@pytest.fixture
def corpus(tmp_path):
    return shakespeare_file(tmp_path / "shakespeare-20k.txt", 20000)


def invoke(*args):
    return CliRunner().invoke(main, ["bench-train", *map(str, args)])


def test_json_fields_and_consistent_numbers(corpus, tmp_path):
    r = invoke("--preset", "tiny", "--data", corpus, "--steps", 3, "--warmup", 1, "--json", "-q", *TINY)
    assert r.exit_code == 0, r.output
    d = json.loads(r.output.strip().splitlines()[-1])
    assert d["model"] == {"n_layer": 1, "n_head": 2, "n_embd": 32, "vocab_size": d["model"]["vocab_size"]}
    assert 30 < d["model"]["vocab_size"] < 100                   # a char vocabulary of the corpus
    assert d["tokens_per_step"] == 4 * 32 and d["steps"] == 3 and d["warmup_steps"] == 1
    cfg = ModelConfig(vocab_size=d["model"]["vocab_size"], context_length=32, n_layer=1, n_head=2,
                      n_embd=32)
    assert d["flops_per_token"] == cfg.flops_per_token(32)
    assert d["ms_per_step"] > 0 and d["ms_per_step_min"] <= d["ms_per_step"]
    assert d["tokens_per_s"] == pytest.approx(d["tokens_per_step"] / d["ms_per_step"] * 1000, rel=1e-2)
    assert d["gflops"] == pytest.approx(d["tokens_per_s"] * d["flops_per_token"] / 1e9, rel=1e-2)
    if d["peak_gflops"] is None:
        assert d["mfu"] is None and "unknown" in d["peak_how"]
    else:
        assert d["mfu"] == pytest.approx(d["gflops"] / d["peak_gflops"], rel=2e-2)
    assert d["precision"] in ("fp32", "bf16") and d["compile"] is False
    assert d["machine"]["nproc"] >= 1 and not (tmp_path / "runs").exists()


def test_human_table(corpus):
    r = invoke("--preset", "tiny", "--data", corpus, "--steps", 2, "--warmup", 0, "-q", *TINY)
    assert r.exit_code == 0, r.output
    for field in ("tokens/s", "ms/step", "MFU", "FLOPs/token", "peak", "1 layers x 32 wide"):
        assert field in r.output, r.output


def test_peak_from_cpu_flags(monkeypatch):
    fake = {"flags": "fpu sse avx fma avx2", "cpu MHz": "2000.0", "siblings": "2", "cpu cores": "2",
            "model name": "Test CPU"}
    monkeypatch.setattr(bench, "_cpuinfo", lambda: fake)
    monkeypatch.setattr(bench, "_cpu_ghz", lambda info: 2.0)
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    p = bench.peak_flops("cpu", threads=2)
    assert p.flops == 2 * 2.0e9 * 32 and "AVX2" in p.how
    assert bench.peak_flops("cpu", threads=1).flops == 2.0e9 * 32   # one thread uses one core
    fake["flags"] = "fpu sse avx"                                    # no FMA: unknown
    assert bench.peak_flops("cpu").flops is None
    assert bench.peak_flops("meta").flops is None                    # not a CPU: unknown


def test_bad_input_is_a_clear_error(tmp_path):
    r = invoke("--preset", "no-such-preset")
    assert r.exit_code == 2 and "unknown preset" in r.output
    r = invoke("--preset", "tiny", "--data", tmp_path / "missing.txt")
    assert r.exit_code == 2 and "missing.txt" in r.output
