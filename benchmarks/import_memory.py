"""Peak memory of importing a GPT-2 checkpoint, against the size of its weights and against peers.

A 124M-shaped GPT-2 checkpoint (random, seeded) is written in Hugging Face format, as
model.safetensors and as pytorch_model.bin. Each row then runs in a fresh subprocess, which reports
its own peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; it counts memory-mapped
file pages that were read as well as heap). "above base" subtracts the peak of a process that only
does the imports (torch and tinyllm; plus transformers for its row), so the columns show what the
conversion itself costs:

    tinyllm import-gpt2 (safetensors / .bin)   streams one tensor at a time (tinyllm.convert.gpt2)
    load whole + save_model (peer)             the obvious way: load_file -> from_hf_state_dict ->
                                               checkpoint.save_model
    transformers load + save (peer)            GPT2LMHeadModel.from_pretrained + save_pretrained
                                               of the same folder (a load alone maps the file
                                               lazily and touches nothing)

    python benchmarks/import_memory.py                 # table on stdout
    python benchmarks/import_memory.py --json          # one JSON object
    python benchmarks/import_memory.py --preset gpt2-medium
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from benchmarks._common import emit  # noqa: E402

PEAK = ("\nimport resource, json\n"
        "print(json.dumps({'peak_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n")
IMPORTS = "import sys; sys.path.insert(0, %r)\nimport torch, tinyllm.convert.gpt2\n" % str(ROOT)

BASE, HF_BASE = "baseline (imports only)", "baseline (+ import transformers)"
OURS = "tinyllm import-gpt2 (safetensors)"   # the reference row
# row name -> (setup code, not timed; measured code; the baseline row it is compared with)
ROWS = {
    BASE: ("", "pass", BASE),
    OURS:
        ("", "tinyllm.convert.gpt2.import_gpt2(SRC / 'st', OUT / 'a', overwrite=True)", BASE),
    "tinyllm import-gpt2 (.bin)":
        ("", "tinyllm.convert.gpt2.import_gpt2(SRC / 'bin', OUT / 'b', overwrite=True)", BASE),
    "load whole + save_model (peer)":
        ("from safetensors.torch import load_file\n"
         "from tinyllm.checkpoint import save_model\n"
         "from tinyllm.tokenizer import get_gpt2\n",
         "sd = load_file(str(SRC / 'st' / 'model.safetensors'))\n"
         "m = tinyllm.convert.gpt2.from_hf_state_dict(sd, SRC / 'st' / 'config.json')\n"
         "save_model(m, get_gpt2(), OUT / 'c')", BASE),
    HF_BASE: ("import transformers\n", "pass", HF_BASE),
    "transformers load + save (peer)":
        ("import transformers\n",
         "transformers.GPT2LMHeadModel.from_pretrained(SRC / 'st').save_pretrained(OUT / 'd')",
         HF_BASE),
}


def make_checkpoint(src: Path, preset_name: str) -> int:
    """Write the same random weights as HF safetensors and .bin folders; returns the weight bytes."""
    code = IMPORTS + f"""
from pathlib import Path
import json
from safetensors.torch import save_file
from tinyllm.config import preset
from tinyllm.models.decoder import GPT
torch.manual_seed(0)
m = GPT(preset({preset_name!r}))
sd = tinyllm.convert.gpt2.to_hf_state_dict(m, lm_head=False)
cfg = tinyllm.convert.gpt2.hf_config_from_model(m.config)
for sub in ("st", "bin"):
    (Path({str(src)!r}) / sub).mkdir(parents=True, exist_ok=True)
    (Path({str(src)!r}) / sub / "config.json").write_text(json.dumps(cfg))
save_file(sd, {str(src / "st" / "model.safetensors")!r}, metadata={{"format": "pt"}})
torch.save(sd, {str(src / "bin" / "pytorch_model.bin")!r})
print(sum(t.numel() * t.element_size() for t in sd.values()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def run_row(setup: str, body: str, src: Path, out: Path) -> dict:
    code = IMPORTS + f"from pathlib import Path\nSRC, OUT = Path({str(src)!r}), Path({str(out)!r})\n"
    code += setup
    code += "import time\nt0 = time.perf_counter()\n" + body + "\nSECONDS = time.perf_counter() - t0\n"
    code += PEAK.replace("'peak_kib'", "'seconds': SECONDS, 'peak_kib'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"peak_mib": res["peak_kib"] / 1024, "seconds": res["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="gpt2", help="checkpoint shape (default: gpt2, 124M)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tinyllm-importmem-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        t0 = time.perf_counter()
        weights = make_checkpoint(src, args.preset)
        print(f"checkpoint: {args.preset}, {weights / 2**20:.0f} MiB of weights "
              f"(written in {time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        rows = {}
        for name, (setup, body, _) in ROWS.items():
            rows[name] = run_row(setup, body, src, out)
            print(f"  {name}: {rows[name]}", file=sys.stderr)

    base = rows[BASE].get("peak_mib", 0.0)
    weights_mib = weights / 2**20
    for name, r in rows.items():
        if "peak_mib" in r and "peak_mib" in rows[ROWS[name][2]]:
            r["above_base_mib"] = r["peak_mib"] - rows[ROWS[name][2]]["peak_mib"]
            r["peak_over_weights"] = r["peak_mib"] / weights_mib
            r["above_base_over_weights"] = r["above_base_mib"] / weights_mib
    ours = rows[OURS]
    for name, r in rows.items():
        if name in (BASE, HF_BASE):
            continue
        if "above_base_mib" in r and "above_base_mib" in ours and ours["above_base_mib"] > 0:
            r["vs_tinyllm"] = r["above_base_mib"] / ours["above_base_mib"]
    setup = {"preset": args.preset, "weights_mib": round(weights_mib, 1),
             "baseline_mib": round(base, 1), "statistic": "peak RSS of each process"}
    emit("import_memory", setup, OURS, [{"name": name, **r} for name, r in rows.items()], args.json,
         print_table)


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"GPT-2 import peak memory ({s['preset']}: {s['weights_mib']:.0f} MiB of fp32 weights; "
          f"baseline process {s['baseline_mib']:.0f} MiB)")
    header = f"{'':38} {'peak MiB':>9} {'above base':>11} {'peak/weights':>13} " \
             f"{'above/weights':>14} {'x ours':>7} {'s':>6}"
    print(header)
    for r in result["rows"]:
        name = r["name"]
        if "error" in r:
            print(f"{name:38} error: {r['error']}")
            continue
        if "above_base_mib" not in r:
            print(f"{name:38} {r['peak_mib']:9.0f}")
            continue
        print(f"{name:38} {r['peak_mib']:9.0f} {r['above_base_mib']:11.0f} "
              f"{r['peak_over_weights']:13.2f} {r['above_base_over_weights']:14.2f} "
              f"{vs(r):>7} {r['seconds']:6.1f}")
    ours = next(r for r in result["rows"] if r["name"] == OURS)
    if "above_base_over_weights" in ours:
        print(f"tinyllm import-gpt2 needs {ours['above_base_over_weights']:.2f} x the weights' size "
              f"above the baseline process ({ours['peak_over_weights']:.2f} x counting the baseline)")


def vs(row: dict) -> str:
    return f"{row['vs_tinyllm']:.1f}" if "vs_tinyllm" in row else "-"


if __name__ == "__main__":
    main()
