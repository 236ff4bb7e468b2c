"""llama.cpp as a benchmark peer: a thin Python face on ``llama_cpp.sh`` (stdlib only).

The shell script does the work (build from the llama-cpp-python sdist, GGUF conversion); this module
finds the build, converts weights through the script and runs ``llama-bench -o json``, so
benchmarks/decode.py can add llama.cpp rows without importing anything of tinyllm's.

    from benchmarks.peers import llama_cpp
    if llama_cpp.bin_dir() is not None:
        files = llama_cpp.convert(hf_dir, tmp / "gpt2")          # {"f32": Path, "f16": ..., ...}
        row = llama_cpp.bench(files["q8_0"], threads=2)         # {"pp_tok_s", "tg_tok_s", "build", ...}
        llama_cpp.requantize(shipped_q4_1, tmp / "m.q8_0.gguf", "q8_0")  # from a quantized GGUF

    python benchmarks/peers/llama_cpp.py bench FILE.gguf -t 2   # one JSON object on stdout

The script's environment passes through: TINYLLM_HOME (cache root), LLAMA_CPP_AMX (which build:
off, the default, or patch / native on Intel CPUs with AMX; see ``llama_cpp.sh --help``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().with_name("llama_cpp.sh")
TYPES = ("f32", "f16", "q8_0", "q4_0")


def _script(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # the converter runs on this interpreter (it has torch and the packages) unless PYTHON says
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, check=check,
                          env=env)


def bin_dir() -> Path | None:
    """The folder holding the built ``llama-bench`` and ``llama-quantize``; None when not built."""
    p = _script("path", check=False)
    if p.returncode != 0:
        return None
    path = Path(p.stdout.strip())
    return path if (path / "llama-bench").is_file() else None


def version() -> str:
    """``"llama-cpp-python 0.3.36 llama.cpp 0c1e570 (AMX: ...)"`` for the build found; raises when not built."""
    p = _script("version", check=False)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip() or "llama.cpp is not built")
    return p.stdout.strip()


def _built() -> Path:
    d = bin_dir()
    if d is None:
        raise RuntimeError(f"llama.cpp is not built; run: {SCRIPT} build")
    return d


def _failed(what: str, p: subprocess.CompletedProcess[str]) -> RuntimeError:
    tail = "\n".join(p.stderr.strip().splitlines()[-15:])
    return RuntimeError(f"{what} failed (exit {p.returncode}):\n{tail}")


def convert(hf_dir: str | Path, out_prefix: str | Path, types: tuple[str, ...] = TYPES) -> dict[str, Path]:
    """Convert a Hugging Face GPT-2 folder to ``OUT_PREFIX.<type>.gguf`` for each type.

    Returns ``{type: path}``. Raises RuntimeError (with the script's stderr tail) on failure.
    """
    p = _script("convert", str(hf_dir), str(out_prefix), *types, check=False)
    if p.returncode != 0:
        raise _failed("llama_cpp.sh convert", p)
    out: dict[str, Path] = {}
    for line in p.stdout.splitlines():
        kind, _, path = line.partition(" ")
        if kind in TYPES and path:
            out[kind] = Path(path)
    return out


def requantize(src: str | Path, dst: str | Path, type_: str) -> Path:
    """``llama-quantize --allow-requantize SRC DST TYPE``: a GGUF that is already quantized (the
    SmolLM2 wheel's Q4_1) in another type (f16, q8_0, q4_0). Raises RuntimeError on failure."""
    p = subprocess.run([str(_built() / "llama-quantize"), "--allow-requantize", str(src), str(dst),
                        type_], capture_output=True, text=True)
    if p.returncode != 0:
        raise _failed("llama-quantize", p)
    return Path(dst)


def bench(gguf_path: str | Path, threads: int, n_prompt: int | tuple[int, ...] = 32, n_gen: int = 128,
          repetitions: int = 5, extra_args: tuple[str, ...] = ()) -> dict:
    """Run ``llama-bench -m GGUF -p n_prompt -n n_gen -t threads -r repetitions -o json``.

    ``n_prompt`` may be several sizes (``(32, 512)``: ``-p 32,512``, one prompt test each).
    Returns ``{"pp_tok_s", "tg_tok_s", "pp", "build", ...}``: prefill and decode tokens/s
    (llama-bench's mean over the repetitions; None for a test not run, i.e. n_prompt or n_gen of
    0; ``pp_tok_s`` is the first prompt size's, ``pp`` maps every size to its tokens/s), the build as
    ``"<commit> (<build number>)"``, their standard deviations, the model's size in bytes, and
    llama-bench's records under ``"raw"``.
    """
    d = _built()
    sizes = (n_prompt,) if isinstance(n_prompt, int) else tuple(n_prompt)
    cmd = [str(d / "llama-bench"), "-m", str(gguf_path), "-p", ",".join(map(str, sizes)),
           "-n", str(n_gen), "-t", str(threads), "-r", str(repetitions), "-o", "json", *extra_args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise _failed("llama-bench", p)
    records = json.loads(p.stdout)
    pps = {r["n_prompt"]: r for r in records if r["n_prompt"] > 0 and r["n_gen"] == 0}
    pp = pps.get(sizes[0])
    tg = next((r for r in records if r["n_gen"] > 0 and r["n_prompt"] == 0), None)
    first = records[0] if records else {}
    return {
        "pp_tok_s": pp["avg_ts"] if pp else None,
        "tg_tok_s": tg["avg_ts"] if tg else None,
        "pp": {n: r["avg_ts"] for n, r in pps.items()},
        "build": f'{first.get("build_commit", "unknown")} ({first.get("build_number", 0)})',
        "pp_stddev": pp["stddev_ts"] if pp else None,
        "tg_stddev": tg["stddev_ts"] if tg else None,
        "model_size": first.get("model_size"),
        "threads": threads,
        "n_prompt": sizes[0],
        "n_gen": n_gen,
        "cpu_info": first.get("cpu_info"),
        "raw": records,
    }


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="llama_cpp.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("path")
    sub.add_parser("version")
    b = sub.add_parser("bench")
    b.add_argument("gguf")
    b.add_argument("-t", "--threads", type=int, default=2)
    b.add_argument("-p", "--n-prompt", type=int, default=32)
    b.add_argument("-n", "--n-gen", type=int, default=128)
    b.add_argument("-r", "--repetitions", type=int, default=5)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "path":
            d = bin_dir()
            if d is None:
                print("llama.cpp is not built", file=sys.stderr)
                return 1
            print(d)
        elif a.cmd == "version":
            print(version())
        else:
            r = bench(a.gguf, a.threads, a.n_prompt, a.n_gen, a.repetitions)
            r.pop("raw")
            print(json.dumps(r))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
