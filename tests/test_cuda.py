"""The same code on a GPU: KV-cache decoding, exact resume, and ONNX export of a CUDA-trained model.

Every test here needs a CUDA GPU and is marked ``cuda``; on a machine without one they skip with
that reason. ``benchmarks/gpu_check.sh`` runs them (``pytest -m cuda tests/test_cuda.py``) on a GPU
machine. Tolerances are stated per test: fp32 on a GPU uses TF32-free matmuls here
(``torch.backends.cuda.matmul.allow_tf32 = False``) so it matches a full recompute to 1e-4; bf16
keeps 8 bits of mantissa, so logits agree with the fp32 forward to about 1e-1 and the greedy
argmax of the cached and uncached bf16 paths agree.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import SHARED_DATA

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none found)"),
]

FP32_ATOL = 1e-4      # cached vs full forward, fp32 on the GPU (TF32 off)
BF16_ATOL = 1.5e-1    # bf16 cached vs fp32 full forward (logits of a random 2-layer model)


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def small_model(dtype=torch.float32):
    from tinyllm.config import ModelConfig
    from tinyllm.models.decoder import GPT

    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=97, context_length=64, n_layer=2, n_head=4, n_embd=64)
    return GPT(cfg).eval().to("cuda", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kv_cache_equals_full_forward_on_gpu(dtype):
    model = small_model(dtype)
    ref = small_model(torch.float32)
    ids = torch.randint(0, 97, (2, 24), device="cuda")
    with torch.inference_mode():
        full = ref(ids).float()                                   # (B, T, V) fp32, no cache
        cache = model.new_cache(2)
        assert cache.k[0].dtype == dtype and cache.k[0].device.type == "cuda"
        pieces = [model(ids[:, :10], cache).float()]              # prefill 10, then one at a time
        for t in range(10, 24):
            pieces.append(model(ids[:, t:t + 1], cache).float())
        cached = torch.cat(pieces, dim=1)
        same_dtype_full = model(ids).float()
    tol = FP32_ATOL if dtype == torch.float32 else BF16_ATOL
    torch.testing.assert_close(cached, full, atol=tol, rtol=0)
    if dtype == torch.bfloat16:  # cached and uncached bf16 pick the same next tokens
        agree = (cached.argmax(-1) == same_dtype_full.argmax(-1)).float().mean().item()
        assert agree >= 0.95, agree


def _train(out, steps, *extra, resume=False):
    cmd = [sys.executable, "-m", "tinyllm", "train", "--data", str(SHARED_DATA / "the-verdict.txt"),
           "--out", str(out), "--max-steps", str(steps), "--eval-every", "2", "-q",
           "--set", "device=cuda", "--set", "precision=fp32", "--set", "schedule=constant",
           "--set", "warmup_steps=0", "--set", "n_layer=2", "--set", "n_head=2",
           "--set", "n_embd=64", "--set", "context_length=64", "--set", "batch_size=8",
           "--set", "sample_tokens=0", "--set", "deterministic=true", *extra]
    if resume:
        cmd.append("--resume")
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # what deterministic cuBLAS needs
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]


def test_resume_is_exact_on_gpu(tmp_path):
    """4 steps in one go equal 2 steps, a stop, and 2 resumed steps (deterministic kernels)."""
    _train(tmp_path / "one", 4)
    _train(tmp_path / "two", 2)
    _train(tmp_path / "two", 4, resume=True)
    a = torch.load(tmp_path / "one" / "train_state" / "state.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "train_state" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=0)


def test_onnx_export_of_a_cuda_trained_model(tmp_path):
    """A model trained on the GPU exports to ONNX and the graph agrees with the CUDA model."""
    import numpy as np

    from tinyllm.checkpoint import load_model
    from tinyllm.export.onnx import export_model
    from tinyllm.runtime.onnx_decoder import OnnxDecoder

    out = tmp_path / "run"
    _train(out, 2)
    res = export_model(out)
    model = load_model(out, device="cuda")
    ids = [5, 9, 3, 17, 2, 40]
    with torch.inference_mode():
        want = model(torch.tensor([ids], device="cuda"))[0, -1].float().cpu().numpy()
    got = OnnxDecoder(res.fp32_path).prefill(ids)
    np.testing.assert_allclose(got, want, atol=1e-3)
