"""`tinyllm serve` under load: concurrent streaming clients against the same requests one at a time.

A GPT-2 124M-shaped model with random (seeded) weights is exported to ONNX Runtime int8 (``nbits8``:
its rows are computed alike at any batch size, so a batched request gets exactly the text it gets
alone; ``dynamic`` shares one activation scale across a step's rows) and served by ``tinyllm serve``
in its own process. The same 16 greedy completion requests (distinct prompts, 128 new tokens each)
are sent one at a time (the peer), then by 4, 8 and 16 concurrent streaming clients. Each row
reports aggregate tokens/s, per-request p50/p95 latency and time to first token, and the ratio of
its tokens/s to one at a time; every request's text is checked against the text it got alone.
Then a soak: ``--soak`` requests (random lengths, a third of the clients leave mid-stream or
before the first token) by 16 clients, after which the server must hold no slot and no queue;
its RSS before and after is reported.

    python benchmarks/serve.py                       # table on stdout
    python benchmarks/serve.py --json                # what benchmarks/run_all.py reads
    python benchmarks/serve.py --model DIR           # another model directory with an ONNX graph
    python benchmarks/serve.py --keep /tmp/g124      # keep (and reuse) the exported model

Target: 8 concurrent clients >= 4x the aggregate tokens/s of one at a time, every text the same,
no errors, nothing left behind by the soak.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit  # noqa: E402

LEVELS = (4, 8, 16)
PROMPTS = [f"Request {i}: tell me about the {topic}." for i, topic in enumerate(
    "sea,mountains,rain,city,forest,desert,river,moon,sun,stars,snow,wind,garden,island,road,"
    "library".split(","))]


def build_model(out: Path, log) -> Path:
    """GPT-2 124M shape, random weights (seed 0), exported to model.int8.onnx (nbits8)."""
    import torch

    from tinyllm.checkpoint import save_model
    from tinyllm.config import preset
    from tinyllm.export.onnx import export_model
    from tinyllm.models.decoder import GPT
    from tinyllm.tokenizer import get_gpt2

    if (out / "model.int8.onnx").is_file():
        return out
    torch.manual_seed(0)
    log("building a random GPT-2 124M-shaped model and exporting it to ONNX int8 (nbits8)")
    save_model(GPT(preset("gpt2")), get_gpt2(), out)
    export_model(out, int8=True, quant="nbits8", keep_fp32=False, log=log)
    (out / "model.safetensors").unlink()          # the server runs the graph only
    return out


class Served:
    """`tinyllm serve` in a child process on a free port."""

    def __init__(self, model: Path, max_batch: int, threads: int | None, precision: str | None):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if precision:
            env["TINYLLM_ONNX_PRECISION"] = precision
        if threads:
            env["TINYLLM_ORT_THREADS"] = str(threads)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinyllm", "serve", "-m", str(model), "--port", "0",
             "--backend", "onnx", "--max-batch", str(max_batch), "--max-queue", "256"],
            env=env, stderr=subprocess.PIPE, text=True)
        first = self.proc.stderr.readline()
        if " on http://" not in first:
            raise RuntimeError(f"tinyllm serve did not start: {first}{self.proc.stderr.read()}")
        self.host, port = first.split(" on http://")[1].split("/")[0].rsplit(":", 1)
        self.port = int(port)
        self.model = model.name
        while "ready" not in (line := self.proc.stderr.readline()):
            if not line:
                raise RuntimeError("tinyllm serve exited while loading")
        # drain the request log so the pipe never fills
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def health(self) -> dict:
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        c.request("GET", "/health")
        return json.loads(c.getresponse().read())["models"][self.model]

    def rss_mb(self) -> float:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def stream(srv: Served, prompt: str, max_tokens: int, leave_after: int | None = None) -> dict:
    """One streaming completion; its text, token count, latency and time to first token.
    ``leave_after`` closes the connection after that many chunks (0: before the first)."""
    body = json.dumps({"model": srv.model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True})
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=600)
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        return {"error": f"HTTP {r.status}: {r.read()[:200]!r}"}
    text, chunks, first = [], 0, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            break
        if leave_after is not None and chunks >= leave_after:
            c.close()
            return {"left": True}
        piece = json.loads(line[6:])["choices"][0]["text"]
        if piece and first is None:
            first = time.perf_counter() - t0
        text.append(piece)
        chunks += 1
    c.close()
    return {"text": "".join(text), "chunks": chunks, "seconds": time.perf_counter() - t0,
            "ttft": first if first is not None else time.perf_counter() - t0}


def count_tokens(texts: list[str]) -> int:
    from tinyllm.tokenizer import get_gpt2

    tok = get_gpt2()
    return sum(len(tok.encode(t)) for t in texts)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def level(srv: Served, clients: int, new_tokens: int) -> tuple[list[dict], float]:
    """Every prompt once, by ``clients`` concurrent clients (client j sends prompts j, j+c, ...)."""
    def client(j: int) -> list[dict]:
        return [stream(srv, PROMPTS[i], new_tokens) for i in range(j, len(PROMPTS), clients)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - t0
    out = [None] * len(PROMPTS)
    for j, part in enumerate(parts):
        for k, res in enumerate(part):
            out[j + k * clients] = res
    return out, wall


def row(name: str, results: list[dict], wall: float, tokens: int, alone: list[str] | None,
        base_tps: float | None) -> dict:
    errors = [r["error"] for r in results if "error" in r]
    ok = [r for r in results if "error" not in r]
    tps = tokens / wall
    out = {"name": name, "requests": len(results), "tokens/s": round(tps, 1),
           "p50 latency s": round(pct([r["seconds"] for r in ok], 0.5), 2),
           "p95 latency s": round(pct([r["seconds"] for r in ok], 0.95), 2),
           "p50 TTFT ms": round(1000 * pct([r["ttft"] for r in ok], 0.5)),
           "p95 TTFT ms": round(1000 * pct([r["ttft"] for r in ok], 0.95)),
           "errors": len(errors)}
    if alone is not None:
        out["same text"] = f"{sum(r.get('text') == a for r, a in zip(results, alone))}/{len(alone)}"
    out["ratio"] = round(tps / base_tps, 2) if base_tps else 1.0
    return out


def soak(srv: Served, n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        leave = None
        if rng.random() < 1 / 3:
            leave = rng.choice([0, 1, 2, 4, 8])        # 0: gone before the first token
        plans.append((PROMPTS[i % len(PROMPTS)], rng.randint(4, 32), leave))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda p: stream(srv, *p), plans))
    seconds = time.perf_counter() - t0
    deadline = time.time() + 30
    while (h := srv.health())["active"] or h["queued"]:
        if time.time() > deadline:
            break
        time.sleep(0.1)
    return {"requests": n, "left early": sum(1 for r in results if r.get("left")),
            "errors": sum(1 for r in results if "error" in r), "seconds": round(seconds, 1),
            "active after": h["active"], "queued after": h["queued"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--model", type=Path, default=None,
                    help="a model directory with an ONNX graph (default: a random GPT-2 124M)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the default model here and reuse it on the next run")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--soak", type=int, default=500, help="soak requests (0: no soak)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads of the server")
    ap.add_argument("--precision", choices=("int8", "fp32"), default=None,
                    help="which graph of --model the server runs (default: int8 when present)")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="tinyllm-bench-serve-") as tmp:
        model = args.model or build_model(args.keep or Path(tmp) / "gpt2-124m-random", log)
        srv = Served(model, max(LEVELS), args.threads, args.precision)
        try:
            stream(srv, "warm up", 8)
            log("one at a time")
            alone, wall = level(srv, 1, args.new_tokens)
            errors = [r["error"] for r in alone if "error" in r]
            if errors:
                raise RuntimeError(f"requests failed: {errors[0]}")
            alone_text = [r["text"] for r in alone]
            tokens = count_tokens(alone_text)
            rows = [row("one at a time", alone, wall, tokens, None, None)]
            base = rows[0]["tokens/s"]
            rss_before = srv.rss_mb()
            for c in LEVELS:
                log(f"{c} concurrent clients")
                res, wall = level(srv, c, args.new_tokens)
                rows.append(row(f"{c} concurrent", res, wall, tokens, alone_text, base))
            rss_mid = srv.rss_mb()
            soaked = None
            if args.soak:
                log(f"soak: {args.soak} requests, random disconnects")
                soaked = soak(srv, args.soak)
                soaked.update({"RSS before MB": round(rss_mid, 1),
                               "RSS after MB": round(srv.rss_mb(), 1)})
        finally:
            srv.stop()
    from tinyllm.train.bench import machine

    m = machine()
    result = {"benchmark": "serve", "reference": "one at a time",
              "setup": {"model": model.name if args.model else "GPT-2 124M shape, random, int8 "
                                                                 "nbits8 (ONNX Runtime)",
                        "graph": args.precision or "int8 if present",
                        "requests": len(PROMPTS), "new tokens": args.new_tokens,
                        "RSS after warm-up MB": round(rss_before, 1),
                        "machine": f"{m['cpu']} x{m['nproc']}, load {m['load_avg_1m']}"},
              "rows": rows}
    if soaked:
        result["soak"] = soaked
        result["setup"].update({f"soak {k}": v for k, v in soaked.items()})
    return emit(result, args.json, print_table)


def print_table(result: dict) -> None:
    print("; ".join(f"{k}: {v}" for k, v in result["setup"].items()))
    rows = result["rows"]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))


if __name__ == "__main__":
    main()
