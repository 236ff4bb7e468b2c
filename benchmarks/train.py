"""Training speed: tinyllm's training loop against Hugging Face transformers' GPT2LMHeadModel.

Same model shape in every row (6 layers, 384 wide, 6 heads, context 256, the char vocabulary of tiny
Shakespeare), same batches (64 windows of the real text), same work per optimizer step (forward,
cross-entropy, backward, gradient clipping at 1.0, AdamW), all in this one process. The tinyllm rows
run the real :class:`~tinyllm.train.trainer.Trainer` step (its autocast, torch.compile and fused AdamW
settings); the transformers rows run a plain loop around ``GPT2LMHeadModel``. Warm-up steps (the first
one pays for torch.compile's compilation, reported as ``first_step_s``) are left out; the timed steps
of all rows are interleaved, so a machine shared with other work slows every row alike. The median
step is reported with the ratio to transformers fp32.

    python benchmarks/train.py                 # the default rows, a table on stdout
    python benchmarks/train.py --all           # plus every lever measured one at a time
    python benchmarks/train.py --json          # one JSON object (what benchmarks/run_all.py reads)
    python benchmarks/train.py --steps 5 --warmup 2 --only "tinyllm fp32 (loop defaults)"
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# the thread policy `tinyllm train` sets (tinyllm/cli/train_cmd.py); process-wide, so every row has it
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tinyllm.config import ModelConfig, TrainConfig  # noqa: E402
from tinyllm.models.decoder import GPT  # noqa: E402
from tinyllm.models.loss import lm_loss  # noqa: E402
from tinyllm.train.bench import LoopStepper, machine, peak_flops, summarize  # noqa: E402
from benchmarks._common import emit, print_skipped  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tinyllm" / "bundled" / "data" / "tinyshakespeare.txt"
REFERENCE = "transformers fp32"


@dataclass
class Ctx:
    """What every row gets: the model shape, the batches (by step) and a scratch directory."""
    cfg: ModelConfig
    batches: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
    batch_size: int
    tmp: Path


@dataclass
class Row:
    name: str
    make: Callable[[Ctx], object]      # -> an object with .step() -> seconds
    default: bool = True               # in the default set (else only with --all)
    bf16: bool = False                 # autocast bf16: by default only on CPUs with AMX/AVX-512-BF16
    threads: int | None = None         # torch threads while this row steps (None: the process's)
    note: str = ""
    stepper: object = None
    first: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


# ---- transformers ---------------------------------------------------------------------------------
class HFStepper:
    """A plain training step around transformers' GPT2LMHeadModel (the peer)."""

    def __init__(self, ctx: Ctx, attn: str = "sdpa", bf16: bool = False, fused: bool = False):
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging

        from tinyllm.train.optim import param_groups

        logging.set_verbosity_error()
        c = ctx.cfg
        hf_cfg = GPT2Config(vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.n_embd,
                            n_layer=c.n_layer, n_head=c.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, layer_norm_epsilon=c.layer_norm_eps,
                            activation_function="gelu_new", bos_token_id=0, eos_token_id=0)
        torch.manual_seed(0)
        self.model = GPT2LMHeadModel._from_config(hf_cfg, attn_implementation=attn).train()
        self.opt = torch.optim.AdamW(param_groups(self.model, 0.1), lr=1e-3, betas=(0.9, 0.95),
                                     **({"fused": True} if fused else {}))
        self.bf16, self.batches, self.n = bf16, ctx.batches, 0

    def step(self) -> float:
        t0 = time.perf_counter()
        x, y = self.batches(self.n, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = lm_loss(lambda ids: self.model(input_ids=ids).logits, (x, y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.n += 1
        return time.perf_counter() - t0


# ---- tinyllm: the real Trainer step ---------------------------------------------------------------
def tinyllm(**train) -> Callable[[Ctx], LoopStepper]:
    def make(ctx: Ctx) -> LoopStepper:
        torch.manual_seed(0)
        model = GPT(ctx.cfg)
        cfg = TrainConfig(batch_size=ctx.batch_size, lr=1e-3, device="cpu", **train)
        out = Path(tempfile.mkdtemp(dir=ctx.tmp))
        return LoopStepper(model, cfg, ctx.batches, out)
    return make


ROWS = [
    Row(REFERENCE, lambda c: HFStepper(c)),
    Row("transformers fp32, eager attention", lambda c: HFStepper(c, attn="eager"), default=False),
    Row("transformers bf16 autocast + fused AdamW", lambda c: HFStepper(c, bf16=True, fused=True),
        bf16=True),
    Row("tinyllm fp32 (loop defaults)", tinyllm()),
    Row("tinyllm fused AdamW", tinyllm(fused=True), default=False),
    Row("tinyllm bf16 autocast", tinyllm(precision="bf16"), bf16=True),
    Row("tinyllm fp32, 1 thread", tinyllm(), default=False, threads=1),
    Row("tinyllm torch.compile", tinyllm(compile=True)),
    Row("tinyllm torch.compile + fused AdamW", tinyllm(compile=True, fused=True), default=False),
]


def make_batches(vocab_text: str, n_steps: int, batch_size: int, seq_len: int, seed: int):
    """``batches(step, micro)``: the same real-text windows for every row (char tokens)."""
    from tinyllm.tokenizer import CharTokenizer

    tok = CharTokenizer.train(vocab_text)
    from tinyllm.data.text import encode_array

    ids = torch.from_numpy(encode_array(tok, vocab_text))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - seq_len - 1, size=(n_steps, batch_size))
    data = [torch.stack([ids[s:s + seq_len + 1] for s in row]) for row in starts]

    def batches(step: int, micro: int = 0):
        w = data[step % n_steps]
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    return tok, batches


def run_step(row: Row) -> float:
    if row.threads is None:
        return row.stepper.step()
    saved = torch.get_num_threads()
    torch.set_num_threads(row.threads)
    try:
        return row.stepper.step()
    finally:
        torch.set_num_threads(saved)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per row first (default 1; "
                    "compiled rows take at least 2)")
    ap.add_argument("--all", action="store_true", help="also the rows that measure one lever each")
    ap.add_argument("--only", action="append", default=None, help="run only this row (repeatable; "
                    f"'{REFERENCE}' is always run)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    def log(*a):  # progress goes to stderr, the result to stdout
        print(*a, file=sys.stderr, flush=True)

    if args.threads:
        torch.set_num_threads(args.threads)

    text = DATA.read_text(encoding="utf-8")
    n_batches = args.warmup + args.steps + 1
    tok, batches = make_batches(text, max(n_batches, 2), args.batch_size, 256, args.seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=256, n_layer=6, n_head=6, n_embd=384,
                      dropout=0.0)
    from tinyllm.train.device import cpu_has_fast_bf16

    rows = [r for r in ROWS if (r.default or args.all) and
            (args.only is None or r.name in args.only or r.name == REFERENCE)]
    skipped = {}
    if not (cpu_has_fast_bf16() or args.all or args.only):
        skipped = {r.name: "this CPU has no AMX/AVX-512-BF16, so bf16 matmuls are emulated and a step "
                           "at this batch takes many minutes; measure with --all --batch-size 4"
                   for r in rows if r.bf16}
        rows = [r for r in rows if r.name not in skipped]
    if args.only:
        unknown = set(args.only) - {r.name for r in ROWS}
        if unknown:
            sys.exit(f"error: no row named {', '.join(sorted(unknown))}; rows: "
                     f"{', '.join(r.name for r in ROWS)}")
    load_start = machine()["load_avg_1m"]
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        ctx = Ctx(cfg, batches, args.batch_size, Path(tmp))
        for row in rows:
            row.stepper = row.make(ctx)
            warm = max(args.warmup, 2 if "compile" in row.name else 0)
            for i in range(warm):
                row.first.append(run_step(row))
                log(f"{row.name}: warm-up step {i + 1}/{warm} {row.first[-1]:.2f} s")
        for i in range(args.steps):  # interleaved: step i of every row, then step i + 1
            for row in rows:
                row.times.append(run_step(row))
                log(f"{row.name}: step {i + 1}/{args.steps} {row.times[-1]:.2f} s")
        for row in rows:
            if hasattr(row.stepper, "close"):
                row.stepper.close()

    tokens_per_step = args.batch_size * 256
    fpt = cfg.flops_per_token(256)
    peak = peak_flops("cpu")
    ref = statistics.median(next(r for r in rows if r.name == REFERENCE).times)
    out_rows = []
    for row in rows:
        s = summarize(row.times, tokens_per_step, fpt, peak)
        out_rows.append({"name": row.name, "ms_per_step": s["ms_per_step"],
                         "tokens_per_s": s["tokens_per_s"], "gflops": s["gflops"], "mfu": s["mfu"],
                         "first_step_s": round(row.first[0], 2) if row.first else None,
                         "ratio": round(ref / statistics.median(row.times), 3)})
    tl = [r for r in out_rows if r["name"].startswith("tinyllm")]
    best = max(tl, key=lambda r: r["ratio"]) if tl else None
    m = machine()
    setup = {"model": "6 layers x 384 wide, 6 heads", "context": 256, "batch": args.batch_size,
             "vocab": cfg.vocab_size, "params": GPT(cfg).num_params(),
             "flops_per_token": fpt, "warmup_steps": args.warmup, "timed_steps": args.steps,
             "cpu": m["cpu"], "nproc": m["nproc"], "threads": m["threads"],
             "omp_wait_policy": m["omp_wait_policy"], "load_avg_start": load_start,
             "load_avg_end": m["load_avg_1m"], "peak_gflops": round(peak.flops / 1e9, 1) if peak.flops else None,
             "peak_how": peak.how, "torch": torch.__version__, "transformers": _hf_version(),
             "best_tinyllm": best["name"] if best else None,
             "best_ratio": best["ratio"] if best else None,
             "seconds": round(time.time() - t_start)}
    out_rows += [{"name": name, "skipped": why} for name, why in skipped.items()]
    return emit("train", setup, REFERENCE, out_rows, args.json, print_table)


def _hf_version() -> str:
    import transformers

    return transformers.__version__


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"train, {s['model']}, context {s['context']}, batch {s['batch']}, vocab {s['vocab']} "
          f"({s['params'] / 1e6:.1f}M params), {s['timed_steps']} timed steps after {s['warmup_steps']} "
          f"warm-up; {s['cpu']}, {s['nproc']} CPUs, {s['threads']} threads, load average "
          f"{s['load_avg_start']} -> {s['load_avg_end']}")
    print(f"{'':42} {'ms/step':>9} {'tokens/s':>9} {'GFLOP/s':>8} {'MFU':>6} {'1st step s':>10} "
          f"{'vs transformers fp32':>21}")
    for r in result["rows"]:
        if print_skipped(r, 42):
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "?"
        print(f"{r['name']:42} {r['ms_per_step']:9.0f} {r['tokens_per_s']:9.0f} {r['gflops']:8.1f} "
              f"{mfu:>6} {r['first_step_s'] or 0:10.1f} {r['ratio']:20.2f}x")
    if s["best_tinyllm"]:
        print(f"best tinyllm setting: {s['best_tinyllm']}, {s['best_ratio']:.2f}x transformers fp32 "
              f"(peak {s['peak_gflops']} GFLOP/s: {s['peak_how']})")


if __name__ == "__main__":
    main()
