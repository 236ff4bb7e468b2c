"""`tinyllm classify` end to end: messages/s on the 5,574 SMS messages, torch vs ONNX Runtime, and the
cold start of one message through the onnx backend.

Every row is a fresh `tinyllm classify` process fed all 5,574 messages of the SMS Spam Collection on
stdin, so process start, imports, model loading and output are included. Rows are interleaved over
the repeats (median reported), and the labels of every row are compared with the torch row's.
The cold start is the wall time of ``echo "WINNER! claim your prize" | tinyllm classify --backend
onnx`` (target: under 0.5 s), measured the same way for the torch backend as its peer.

    python benchmarks/classify.py                  # the bundled sms-spam classifier
    python benchmarks/classify.py --model DIR --repeats 5 --json

A model without exported graphs is copied to a temporary directory and exported there first
(`tinyllm export-onnx --int8`); the original directory is not touched.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinyllm import modeldir  # noqa: E402  (no torch)
from benchmarks._common import emit  # noqa: E402

SMS = ROOT / "tinyllm" / "bundled" / "data" / "SMSSpamCollection.tsv"
REFERENCE = "tinyllm classify --backend torch"
COLD_TEXT = "WINNER! claim your prize\n"


def tinyllm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("tinyllm")  # the console script, as a user runs it
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tinyllm"]


def run_classify(model: Path, backend: str, precision: str | None, stdin: bytes) -> tuple[float, bytes]:
    env = {**os.environ}
    if precision:
        env["TINYLLM_ONNX_PRECISION"] = precision
    t0 = time.perf_counter()
    proc = subprocess.run([*tinyllm_cmd(), "classify", "--model", str(model), "--backend", backend],
                          input=stdin, capture_output=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tinyllm classify --backend {backend} failed:\n{proc.stderr.decode()}")
    return dt, proc.stdout


def ensure_graphs(model: Path, tmp: Path, log) -> Path:
    """A directory with model.onnx and model.int8.onnx for ``model`` (a temporary copy if needed)."""
    if (model / "model.onnx").is_file() and (model / "model.int8.onnx").is_file():
        return model
    copy = tmp / model.name
    shutil.copytree(model, copy, ignore=shutil.ignore_patterns("train_state", "*.onnx*"))
    log(f"exporting {model} to {copy} (tinyllm export-onnx --int8) ...")
    subprocess.run([*tinyllm_cmd(), "export-onnx", str(copy), "--int8"], check=True,
                   stdout=subprocess.DEVNULL)
    return copy


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="classifier (default: the bundled sms-spam)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cold-repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    model = modeldir.resolve(args.model, modeldir.DEFAULT_CLASSIFIER)
    texts = [line.split("\t", 1)[1] for line in SMS.read_text(encoding="utf-8").splitlines()
             if "\t" in line]
    stdin = ("\n".join(texts) + "\n").encode("utf-8")
    rows = [(REFERENCE, "torch", None), ("tinyllm classify --backend onnx (fp32)", "onnx", "fp32"),
            ("tinyllm classify --backend onnx (int8)", "onnx", "int8")]
    with tempfile.TemporaryDirectory() as tmp:
        graphs = ensure_graphs(model, Path(tmp), log)
        times: dict[str, list[float]] = {r[0]: [] for r in rows}
        outputs: dict[str, bytes] = {}
        for i in range(args.repeats):
            for name, backend, precision in rows:  # interleaved, so noise hits every row alike
                dt, out = run_classify(graphs, backend, precision, stdin)
                times[name].append(dt)
                outputs[name] = out
                log(f"repeat {i + 1}/{args.repeats}: {name}: {len(texts) / dt:,.0f} messages/s")
        cold: dict[str, list[float]] = {"onnx": [], "torch": []}
        for i in range(args.cold_repeats):
            for backend in cold:
                cold[backend].append(run_classify(graphs, backend, None, COLD_TEXT.encode())[0])
        log(f"cold start: onnx {statistics.median(cold['onnx']):.3f}s, "
            f"torch {statistics.median(cold['torch']):.3f}s")

    ref_labels = [ln.split(b"\t", 1)[0] for ln in outputs[REFERENCE].splitlines()]
    ref_rate = len(texts) / statistics.median(times[REFERENCE])
    result_rows = []
    for name, backend, precision in rows:
        med = statistics.median(times[name])
        labels = [ln.split(b"\t", 1)[0] for ln in outputs[name].splitlines()]
        same = sum(a == b for a, b in zip(labels, ref_labels))
        result_rows.append({"name": name, "messages_per_s": round(len(texts) / med, 1),
                            "seconds": round(med, 3), "ratio": round(len(texts) / med / ref_rate, 3),
                            "same_labels": f"{same}/{len(texts)}"})
    for backend in ("torch", "onnx"):
        med = statistics.median(cold[backend])
        result_rows.append({"name": f"cold start, 1 message, --backend {backend}",
                            "seconds": round(med, 3), "min_s": round(min(cold[backend]), 3),
                            "target_s": 0.5 if backend == "onnx" else None})
    info = modeldir.read_info(model)
    setup = {"model": str(model.name), "params": info.model_config.num_params(),
             "messages": len(texts), "repeats": args.repeats, "statistic": "median",
             "cold_repeats": args.cold_repeats, "cpu_count": os.cpu_count()}
    return emit("classify", setup, REFERENCE, result_rows, args.json, print_table)


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"classify, {s['model']} ({s['params'] / 1e6:.2f}M params), {s['messages']} messages per "
          f"process, median of {s['repeats']}")
    print(f"{'':44} {'messages/s':>11} {'seconds':>8} {'vs torch':>9} {'same labels':>12}")
    for r in result["rows"]:
        if "messages_per_s" in r:
            print(f"{r['name']:44} {r['messages_per_s']:11,.0f} {r['seconds']:8.2f} "
                  f"{r['ratio']:8.2f}x {r['same_labels']:>12}")
        else:
            target = f"  (target < {r['target_s']} s)" if r.get("target_s") else ""
            print(f"{r['name']:44} {'':11} {r['seconds']:8.3f}{target}")


if __name__ == "__main__":
    main()
