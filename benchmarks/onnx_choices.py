"""The measurements behind the ONNX defaults: which weight quantization, which session options.

1. Quantization (`tinyllm export-onnx --int8 --quant ...`): for each method, batch-1 greedy decode
   speed on the GPT-2 124M shape (random weights, 32-token prompt, 128 new tokens) and, on the
   bundled shakespeare-char model, top-1 next-token agreement with the float graph and the change
   in validation loss over the whole validation split (the last 10% of tiny Shakespeare).
2. Session options for the int8 graph: intra-op threads, graph optimisation level, sequential vs
   parallel execution; decode tokens/s on the same GPT-2 shape.

Rows are interleaved over the repeats, so machine noise hits them alike; medians are reported.

    python benchmarks/onnx_choices.py            # both tables
    python benchmarks/onnx_choices.py --json --repeats 5
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks._common import emit  # noqa: E402
from tinyllm import modeldir  # noqa: E402
from tinyllm.export import QUANT_METHODS  # noqa: E402



def decoder_speed(decoders: dict[str, object], prompt: list[int], new_tokens: int, repeats: int,
                  log) -> dict[str, float]:
    """Median tokens/s of greedy decoding for each OnnxDecoder, interleaved over the repeats."""
    def run(dec) -> None:
        logits = dec.prefill(prompt)
        for _ in range(new_tokens - 1):
            logits = dec.step(int(np.argmax(logits)))

    times: dict[str, list[float]] = {k: [] for k in decoders}
    for d in decoders.values():
        run(d)  # warm-up
    for i in range(repeats):
        for name, d in decoders.items():
            t0 = time.perf_counter()
            run(d)
            times[name].append(time.perf_counter() - t0)
        log(f"repeat {i + 1}/{repeats}: " + ", ".join(
            f"{k} {new_tokens / v[-1]:.1f} tok/s" for k, v in times.items()))
    return {k: new_tokens / statistics.median(v) for k, v in times.items()}


def export_gpt2_shape(tmp: Path, log) -> Path:
    """The GPT-2 124M shape with random (seeded) weights, exported to fp32 ONNX."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import preset
    from tinyllm.export.onnx import export_model
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import get_gpt2

    torch.manual_seed(0)
    d = save_model(GPT(preset("gpt2")).eval(), get_gpt2(), tmp / "gpt2-random")
    log("exporting the GPT-2 124M shape ...")
    export_model(d, log=log)
    return d


def quant_rows(gpt2: Path, tmp: Path, args, log) -> list[dict]:
    from tinyllm.export.onnx import export_model
    from tinyllm.export.onnx_check import compare, model_validation_ids
    from tinyllm.export.onnx_passes import quantize
    from tinyllm.runtime.onnx_decoder import OnnxDecoder

    graphs = {"fp32": gpt2 / "model.onnx"}
    for m in QUANT_METHODS:
        log(f"quantizing the GPT-2 shape: {m}")
        graphs[m] = gpt2 / f"model.{m}.onnx"
        quantize(gpt2 / "model.onnx", graphs[m], m)
    prompt = list(np.random.default_rng(0).integers(0, 50257, args.prompt_tokens))
    speed = decoder_speed({k: OnnxDecoder(v) for k, v in graphs.items()}, prompt,
                          args.new_tokens, args.repeats, log)

    src = modeldir.resolve(modeldir.DEFAULT_LM)
    shk = tmp / "shakespeare-char"
    shutil.copytree(src, shk, ignore=shutil.ignore_patterns("*.onnx*"))
    export_model(shk)
    info = modeldir.read_info(shk)
    tok = info.load_tokenizer()
    ids = model_validation_ids(shk, info.meta, tok)
    ctx = info.model_config.context_length
    rows = [{"table": "quantization", "name": "fp32 (model.onnx)",
             "tokens_per_s": round(speed["fp32"], 1), "ratio": 1.0,
             "size_mb": round(graphs["fp32"].stat().st_size / 1e6, 1),
             "agreement": 1.0, "val_loss_change_pct": 0.0}]
    for m in QUANT_METHODS:
        q = shk / f"model.{m}.onnx"
        quantize(shk / "model.onnx", q, m)
        acc = compare(shk / "model.onnx", q, ids, ctx, max_windows=None)
        log(f"{m}: agreement {acc['agreement']:.4f}, loss {acc['loss_candidate']:.4f} "
            f"(fp32 {acc['loss_reference']:.4f})")
        rows.append({"table": "quantization", "name": m, "tokens_per_s": round(speed[m], 1),
                     "ratio": round(speed[m] / speed["fp32"], 2),
                     "size_mb": round(graphs[m].stat().st_size / 1e6, 1),
                     "agreement": round(acc["agreement"], 4),
                     "val_loss_change_pct": round(100 * acc["loss_increase"], 3)})
    return rows


def session_rows(gpt2: Path, args, log) -> list[dict]:
    import onnxruntime as ort

    from tinyllm.export.onnx_passes import quantize
    from tinyllm.runtime.onnx_decoder import OnnxDecoder
    from tinyllm.runtime.session import default_threads, session_options

    q = gpt2 / "model.int8.onnx"
    if not q.exists():
        quantize(gpt2 / "model.onnx", q, QUANT_METHODS[0])
    cores = default_threads()  # one per core (or TINYLLM_ORT_THREADS)
    variants = {
        f"default ({default_threads()} threads, spinning when the cores are idle, all, "
        f"sequential)": dict(threads=None, spin=None),
        f"{cores} threads, never spinning": dict(threads=cores, spin=False),
        f"{cores} threads, spinning": dict(threads=cores, spin=True),
        "1 thread": dict(threads=1),
        "threads 0 (ORT chooses), spinning": dict(threads=0, spin=True),
        "level extended": dict(threads=None, level="extended"),
        "level basic": dict(threads=None, level="basic"),
        "parallel execution": dict(threads=None, parallel=True),
    }
    decoders = {}
    for name, v in variants.items():
        so = session_options(v["threads"], v.get("level", "all"), spin=v.get("spin", False))
        if v.get("parallel"):
            so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            so.inter_op_num_threads = 2
        sess = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
        decoders[name] = OnnxDecoder(sess)
    prompt = list(np.random.default_rng(0).integers(0, 50257, args.prompt_tokens))
    speed = decoder_speed(decoders, prompt, args.new_tokens, args.repeats, log)
    base = speed[next(iter(variants))]
    return [{"table": "session options", "name": k, "tokens_per_s": round(v, 1),
             "ratio": round(v / base, 2)} for k, v in speed.items()]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--only", choices=["quant", "session"], default=None)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        gpt2 = export_gpt2_shape(Path(tmp), log)
        if args.only in (None, "quant"):
            rows += quant_rows(gpt2, Path(tmp), args, log)
        if args.only in (None, "session"):
            rows += session_rows(gpt2, args, log)
    import onnxruntime

    setup = {"decode": f"gpt2 shape, batch 1, {args.prompt_tokens}-token prompt, "
                       f"{args.new_tokens} new tokens, greedy",
             "accuracy": "bundled shakespeare-char, whole validation split",
             "repeats": args.repeats, "statistic": "median",
             "load_average": round(os.getloadavg()[0], 1), "onnxruntime": onnxruntime.__version__}
    return emit("onnx_choices", setup, "fp32 graph (quantization) / default options (session)",
                rows, args.json, print_table)


def print_table(result: dict) -> None:
    rows = result["rows"]
    for table in dict.fromkeys(r["table"] for r in rows):
        print(f"\n{table}")
        sub = [r for r in rows if r["table"] == table]
        keys = [k for k in sub[0] if k not in ("table", "name")]
        print(f"{'':38}" + "".join(f"{k:>20}" for k in keys))
        for r in sub:
            print(f"{r['name']:38}" + "".join(f"{str(r.get(k, '')):>20}" for k in keys))


if __name__ == "__main__":
    main()
