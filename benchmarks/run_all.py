"""Run every benchmark in benchmarks/ and write one table per benchmark to benchmarks/results.md.

    python benchmarks/run_all.py                   # what `make bench` runs
    python benchmarks/run_all.py decode classify   # only these (file stems)
    python benchmarks/run_all.py decode -- --repeats 3   # extra arguments for the scripts run

Each script ``benchmarks/NAME.py`` is run in its own process with ``--json`` and must print one JSON
object on its last stdout line::

    {"benchmark": "decode", "setup": {...}, "reference": "row name of the peer",
     "rows": [{"name": "...", "<metric>": number, ..., "ratio": number}, ...]}

Rows are shown in order with their keys as columns; ``setup`` is printed above the table. Progress
of each script goes to stderr as it runs. A script that fails is reported in the results and makes
the exit code 1, after the others ran.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
SKIP = {"run_all.py"}


def scripts(only: list[str]) -> list[Path]:
    found = [p for p in sorted(HERE.glob("*.py")) if p.name not in SKIP and not p.name.startswith("_")]
    if only:
        unknown = set(only) - {p.stem for p in found}
        if unknown:
            sys.exit(f"error: no benchmark named {', '.join(sorted(unknown))} in {HERE}")
        found = [p for p in found if p.stem in only]
    return found


def run(script: Path, extra: list[str]) -> dict:
    """Run one benchmark; its JSON result, or {"error": ...}."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), "--json", *extra], stdout=subprocess.PIPE,
                          stderr=None, text=True, cwd=HERE.parent)
    seconds = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"benchmark": script.stem, "error": f"exit code {proc.returncode}",
                "output": proc.stdout[-2000:], "seconds": seconds}
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"benchmark": script.stem, "error": f"last stdout line is not JSON ({e})",
                "output": proc.stdout[-2000:], "seconds": seconds}
    result.setdefault("benchmark", script.stem)
    result["seconds"] = round(seconds, 1)
    return result


def fmt(v) -> str:
    if isinstance(v, float):
        if v != 0 and abs(v) < 0.01:
            return f"{v:.3g}"
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def to_markdown(result: dict) -> str:
    out = [f"## {result['benchmark']}", ""]
    if "error" in result:
        out += [f"**failed**: {result['error']}", "", "```", result.get("output", "").strip(), "```", ""]
        return "\n".join(out)
    setup = result.get("setup") or {}
    if setup:
        out += ["; ".join(f"{k}: {fmt(v)}" for k, v in setup.items()), ""]
    if result.get("reference"):
        out += [f"ratio = relative to **{result['reference']}**, measured in the same run.", ""]
    rows = result.get("rows") or []
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    if rows:
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---" if c == "name" else "---:" for c in cols) + "|")
        for r in rows:
            out.append("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    out += ["", f"({result.get('seconds', 0):.0f} s)", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    results = []
    for script in scripts(argv):
        print(f"== {script.name}", file=sys.stderr, flush=True)
        results.append(run(script, extra))
    machine = ""
    try:
        machine = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import os

    header = ["# Benchmark results", "",
              f"`make bench` on {time.strftime('%Y-%m-%d %H:%M')}, {machine} x{os.cpu_count()}. "
              "Each benchmark compares against a peer in the same run.", ""]
    text = "\n".join(header + [to_markdown(r) for r in results])
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {RESULTS}", file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
