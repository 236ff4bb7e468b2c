"""The GPU check: tinyllm's training, distributed and decoding paths on one CUDA GPU, unattended.

Run by ``benchmarks/gpu_check.sh`` (see it for the contract: a bare machine with a CUDA PyTorch,
no downloads, under 8 minutes on one H200). Every stage runs in its own subprocess with its own
time limit, and the results are written to ``OUT/gpu_check.json`` after each stage, so a stage that
fails or runs out of time leaves the others' results in place. Stages:

1. ``env``: torch, CUDA, the GPU's name, capability and bf16 support.
2. ``tests``: ``pytest -m cuda tests/test_cuda.py`` (KV cache fp32/bf16, exact resume, ONNX export).
3. ``train``: GPT-2 124M on tiny Shakespeare (GPT-2 tokenizer), bf16, eager and torch.compile:
   tokens/s and MFU against the GPU's dense bf16 peak (``tinyllm bench-train``).
4. ``distributed``: ``torchrun --nproc_per_node=1`` with DDP and with FSDP (nccl) for a few steps;
   the checkpoints load on the CPU and their CPU forward matches the GPU's bf16 forward.
5. ``decode``: GPT-2 124M (and SmolLM2-135M's shape when tinyllm has the Llama switches) at batch 1
   and 16, tokens/s of tinyllm against transformers' ``generate`` on the same weights and GPU.

``--smoke`` runs every stage on the CPU with tiny shapes (to check the script on a machine without
a GPU; its numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tinyllm" / "bundled" / "data" / "tinyshakespeare.txt"
PY = sys.executable


def run(cmd: list[str], timeout: float, **kw) -> dict:
    """Run a command; its exit code, seconds and the tails of its output (never raises)."""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)
        return {"rc": p.returncode, "seconds": round(time.time() - t0, 1),
                "stdout": p.stdout[-4000:], "stderr": p.stderr[-4000:]}
    except subprocess.TimeoutExpired as e:
        return {"rc": "timeout", "seconds": round(time.time() - t0, 1),
                "stdout": (e.stdout or b"")[-2000:].decode(errors="replace") if isinstance(e.stdout, bytes) else str(e.stdout or "")[-2000:],
                "stderr": (e.stderr or b"")[-2000:].decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr or "")[-2000:]}


def last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


# ---- stages ------------------------------------------------------------------------------------
def stage_env(args) -> dict:
    import torch

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        out.update(gpu=torch.cuda.get_device_name(0),
                   capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   bf16=torch.cuda.is_bf16_supported(),
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    try:
        import onnxruntime as ort
        out["onnxruntime"] = ort.__version__
    except ImportError:
        out["onnxruntime"] = None
    return out


def stage_tests(args) -> dict:
    xml = Path(args.out).resolve() / "cuda-tests.xml"
    r = run([PY, "-m", "pytest", "-q", "-m", "cuda", "tests/test_cuda.py", "-p", "no:cacheprovider",
             f"--junitxml={xml}"], timeout=args.stage_timeout)
    res = {"rc": r["rc"], "seconds": r["seconds"], "summary": r["stdout"].strip().splitlines()[-1:]}
    if xml.is_file():
        import xml.etree.ElementTree as ET

        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        res.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
        res["cases"] = [{"name": c.get("name"), "seconds": float(c.get("time", 0)),
                         "status": ("failed" if c.find("failure") is not None or c.find("error") is not None
                                    else "skipped" if c.find("skipped") is not None else "passed")}
                        for c in suite.iter("testcase")]
    if r["rc"] != 0:
        res["tail"] = r["stdout"][-2500:]
    return res


def stage_train(args) -> dict:
    """`tinyllm bench-train` of GPT-2 124M, bf16, eager and compiled."""
    out = {}
    preset, batch, steps, warmup = ("gpt2", args.train_batch, args.train_steps, 3)
    extra = []
    if args.smoke:
        preset, batch, steps, warmup = "tiny", 4, 3, 1
        extra = ["--set", "device=cpu", "--set", "precision=fp32"]
    for name, compile_ in (("eager", "false"), ("compile", "true")):
        cmd = [PY, "-m", "tinyllm", "bench-train", "--preset", preset, "--data", str(DATA),
               "--set", "tokenizer=gpt2", "--set", f"batch_size={batch}", "--set", f"compile={compile_}",
               "--set", "precision=bf16", "--steps", str(steps), "--warmup", str(warmup), "-q", "--json",
               *extra]
        r = run(cmd, timeout=args.stage_timeout)
        res = last_json(r["stdout"]) if r["rc"] == 0 else None
        if res is None:
            out[name] = {"rc": r["rc"], "error": r["stderr"][-2000:]}
            continue
        out[name] = {k: res.get(k) for k in ("tokens_per_s", "ms_per_step", "mfu", "gflops", "precision",
                                              "compile", "fused_adamw", "tokens_per_step", "first_step_s",
                                              "peak_how", "params", "device")}
    return out


def stage_distributed(args) -> dict:
    """torchrun with one process: DDP and FSDP over nccl; checkpoints load and agree on the CPU."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-dist-") as tmp:
        for name, sets in (("ddp", []), ("fsdp", ["--set", "fsdp=true"])):
            run_dir = Path(tmp) / name
            cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                   "-m", "tinyllm", "train", "--preset", "small" if not args.smoke else "tiny",
                   "--data", str(DATA), "--out", str(run_dir), "--max-steps", "6", "--eval-every", "3",
                   "-q", "--set", "batch_size=8", "--set", "sample_tokens=8", *sets]
            if args.smoke:
                cmd += ["--set", "device=cpu", "--set", "ddp_backend=gloo", "--set", "precision=fp32"]
            r = run(cmd, timeout=args.stage_timeout)
            res = {"rc": r["rc"], "seconds": r["seconds"]}
            if r["rc"] != 0:
                res["error"] = r["stderr"][-2000:]
            else:
                res.update(compare_on_cpu(run_dir, args.smoke))
            out[name] = res
    return out


def compare_on_cpu(run_dir: Path, smoke: bool) -> dict:
    """Load the run's model on the CPU; its fp32 logits against the GPU's bf16 forward."""
    import torch

    from tinyllm.checkpoint import load_model

    cpu = load_model(run_dir, device="cpu")
    ids = torch.randint(0, cpu.config.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = cpu(ids).float()
        if smoke or not torch.cuda.is_available():
            got = want
        else:
            gpu = load_model(run_dir, device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                got = gpu(ids.cuda()).float().cpu()
    diff = (got - want).abs().max().item()
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    state = torch.load(run_dir / "train_state" / "state.pt", weights_only=True, map_location="cpu")
    start = next(json.loads(line) for line in (run_dir / "metrics.jsonl").open()
                 if '"start"' in line)
    return {"loads_on_cpu": True, "step": state["step"], "world_size": state["world_size"],
            "parallel": start.get("parallel"), "device": start.get("device"),
            "precision": start.get("precision"),
            "max_abs_logit_diff_bf16": round(diff, 4), "top1_agreement": round(agree, 4),
            "within_bf16_tolerance": diff < 0.25 and agree >= 0.95}


def stage_decode(args) -> dict:
    """Greedy decoding, 32 prompt + 128 new tokens, batch 1 and 16, tinyllm vs transformers."""
    import torch

    device = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    new = 8 if args.smoke else 128
    shapes = [("gpt2-124m", "gpt2")]
    try:
        from tinyllm.config import PRESETS
        if "smollm2-135m" in PRESETS:
            shapes.append(("smollm2-135m", "smollm2-135m"))
    except ImportError:
        pass
    if args.smoke:
        shapes = [("tiny", "tiny")]
    out = {}
    for label, preset in shapes:
        try:
            hf, ours = paired_models(preset, device, dtype)
        except Exception as e:  # a shape this tinyllm cannot build yet
            out[label] = {"error": f"{type(e).__name__}: {e}"}
            continue
        rows = {}
        for batch in (1, 16):
            g = torch.Generator().manual_seed(batch)
            prompt = torch.randint(0, ours.config.vocab_size, (batch, 32), generator=g).to(device)
            t_hf, ids_hf = timed(lambda: hf_generate(hf, prompt, new), device, args.repeats)
            t_us, ids_us = timed(lambda: tinyllm_generate(ours, prompt, new), device, args.repeats)
            same = (ids_hf == ids_us).float().mean().item()
            rows[f"batch{batch}"] = {
                "transformers_tok_s": round(batch * new / t_hf, 1),
                "tinyllm_tok_s": round(batch * new / t_us, 1),
                "ratio": round(t_hf / t_us, 2), "same_tokens": round(same, 4)}
        out[label] = {"dtype": str(dtype).replace("torch.", ""), **rows}
        del hf, ours
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def paired_models(preset: str, device: str, dtype):
    """transformers and tinyllm models with the same random weights (tinyllm's importer maps them)."""
    import torch

    from tinyllm.config import preset as model_preset

    torch.manual_seed(0)
    cfg = model_preset(preset)
    if getattr(cfg, "family", "gpt2") == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        from tinyllm.convert.gpt2 import from_hf_state_dict

        hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length,
                                        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                                        activation_function="gelu_new")).eval()
        ours = from_hf_state_dict(hf.state_dict(), hf.config)
    else:  # the Llama family: transformers builds it from the config tinyllm exports
        from tinyllm.convert import llama as conv

        hf = conv.random_hf_model(cfg)
        ours = conv.from_hf_model(hf)
    return hf.eval().to(device, dtype), ours.eval().to(device, dtype)


def hf_generate(hf, prompt, new):
    import torch

    with torch.inference_mode():
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                          min_new_tokens=new, do_sample=False, use_cache=True, pad_token_id=0)
    return out[:, prompt.shape[1]:]


def tinyllm_generate(model, prompt, new):
    """Batched greedy decoding with tinyllm's preallocated KV cache."""
    import torch

    with torch.inference_mode():
        cache = model.new_cache(prompt.shape[0], prompt.shape[1] + new)
        logits = model(prompt, cache, last_only=True)
        toks = []
        for _ in range(new):
            nxt = logits[:, -1].argmax(-1, keepdim=True)      # (B, 1)
            toks.append(nxt)
            logits = model(nxt, cache, last_only=True)
        return torch.cat(toks, dim=1)


def timed(fn, device: str, repeats: int):
    """(median seconds, last output) over ``repeats`` runs after one warm-up."""
    import torch

    out = fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


STAGES = {"env": stage_env, "tests": stage_tests, "train": stage_train,
          "distributed": stage_distributed, "decode": stage_decode}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=os.environ.get("OUT") or "gpu-check-out",
                    help="folder for gpu_check.json (default: $OUT, else ./gpu-check-out)")
    ap.add_argument("--only", action="append", choices=list(STAGES), help="run only these stages")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: check the script itself")
    ap.add_argument("--stage-timeout", type=float, default=150.0, help="seconds per subprocess")
    ap.add_argument("--train-batch", type=int, default=16, help="GPT-2 124M micro-batch (x 1024 tokens)")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result_path = out_dir / "gpu_check.json"
    results: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "smoke": args.smoke, "stages": {}}
    for name in args.only or list(STAGES):
        t0 = time.time()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            res = STAGES[name](args)
        except Exception as e:  # a stage's failure is a result, not the end of the check
            res = {"error": f"{type(e).__name__}: {e}"}
        res["stage_seconds"] = round(time.time() - t0, 1)
        results["stages"][name] = res
        result_path.write_text(json.dumps(results, indent=2))
        print(json.dumps(res)[:600], file=sys.stderr, flush=True)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result_path.write_text(json.dumps(results, indent=2))
    print(result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
