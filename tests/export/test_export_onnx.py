"""torch -> ONNX export: the dynamo exporter, the fallback, fusions, int8 weights, external data.

Two dynamo exports (a language model with --int8 through the CLI, and a classifier) are shared by
the tests of this module; everything else uses the TorchScript exporter, which takes under a second.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from tinyllm import modeldir
from tinyllm.checkpoint import load_model, save_model
from tinyllm.cli import main
from tinyllm.config import ModelConfig
from tinyllm.export import onnx as ox
from tinyllm.models.decoder import GPT
from tinyllm.runtime.onnx_classifier import OnnxClassifier
from tinyllm.runtime.onnx_decoder import OnnxDecoder
from tinyllm.runtime.session import open_session
from tinyllm.tokenizer import CharTokenizer

DATA = Path(__file__).resolve().parents[2] / "tinyllm" / "bundled" / "data"


def ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def props(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture(scope="module")
def chars():
    return CharTokenizer.train((DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20000])


@pytest.fixture(scope="module")
def lm(tmp_path_factory, chars):
    """A random char LM exported by `tinyllm export-onnx --int8 --json` (dynamo)."""
    torch.manual_seed(3)
    model = GPT(ModelConfig(vocab_size=chars.vocab_size, context_length=128, n_layer=2, n_head=2,
                            n_embd=32))
    d = save_model(model, chars, tmp_path_factory.mktemp("ex") / "lm")
    r = CliRunner().invoke(main, ["export-onnx", str(d), "--int8", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return d, json.loads(r.stdout)


@pytest.fixture(scope="module")
def cls(tmp_path_factory, chars):
    """A random classifier with mean pooling, exported with dynamo to another directory (-o)."""
    torch.manual_seed(4)
    model = GPT(ModelConfig(vocab_size=chars.vocab_size, context_length=64, n_layer=2, n_head=4,
                            n_embd=32, n_classes=3, pooling="mean"))
    root = tmp_path_factory.mktemp("ex")
    d = save_model(model, chars, root / "cls", task="classify", extra={"labels": ["a", "b", "c"]})
    res = ox.export_model(d, out_dir=root / "graphs")
    return d, res


# ---- the dynamo export of a language model ------------------------------------------------------
def test_export_cli_reports_exporter_fusions_and_files(lm):
    d, res = lm
    assert res["exporter"] == "dynamo" and res["fallback_reason"] is None
    assert res["kind"] == "lm" and res["quant_method"] == "dynamic"
    assert res["max_abs_diff"] < 1e-4
    # ORT's transformer optimizer fused LayerNorm + residual and the bias into the tanh GELU;
    # attention (with the cache) is one MultiHeadAttention per layer
    assert res["fusions"].get("SkipLayerNormalization", 0) >= 2
    assert res["fusions"].get("FastGelu") == 2 and res["fusions"].get("GroupQueryAttention") == 2
    assert set(res["sizes"]) == {"model.onnx", "model.int8.onnx"}
    assert res["sizes"]["model.int8.onnx"] < res["sizes"]["model.onnx"]
    graph = ops(d / "model.onnx")
    assert graph["FastGelu"] == 2 and "BiasGelu" not in graph and "Gelu" not in graph
    assert graph["GroupQueryAttention"] == 2 and "Softmax" not in graph and "Concat" not in graph
    assert "Transpose" not in {n.op_type for n in onnx.load(str(d / "model.onnx")).graph.node
                               if n.input and n.input[0].endswith("weight")}
    meta = props(d / "model.onnx")
    assert meta["tinyllm.kind"] == "lm" and meta["tinyllm.exporter"] == "dynamo"
    assert meta["tinyllm.kv_cache"] == "shared" and meta["tinyllm.context_length"] == "128"
    assert meta["tinyllm.positions"] == "per_row"       # rows of a batch at their own positions
    assert meta["tinyllm.saved_at"] == str(modeldir.read_info(d).meta["saved_at"])
    assert modeldir.read_info(d).has_onnx and modeldir.read_info(d).has_int8


def test_io_names_and_dynamic_dims(lm):
    d, _ = lm
    sess = open_session(d / "model.onnx")
    ins = {i.name: i.shape for i in sess.get_inputs()}
    outs = {o.name: o.shape for o in sess.get_outputs()}
    # logits_index: the positions whose logits are computed (added after the torch export)
    assert list(ins) == ox.lm_io_names(2)[0] + ["logits_index"]
    assert list(outs) == ox.lm_io_names(2)[1]
    assert ins["logits_index"] == [outs["logits"][1]] and isinstance(outs["logits"][1], str)
    assert ins["seqlens_k"] == [ins["input_ids"][0]] and ins["total_sequence_length"] == []
    b, s = ins["input_ids"]
    assert isinstance(b, str) and isinstance(s, str)            # dynamic batch and sequence
    assert ins["past.0.key"][1:] == [2, ins["past.0.key"][2], 16] and \
        isinstance(ins["past.0.key"][2], str)                   # dynamic past length
    assert outs["logits"][-1] == load_model(d).config.vocab_size


def test_fp32_logits_within_1e4_prefill_and_cached_decode(lm):
    d, _ = lm
    model = load_model(d)
    dec = OnnxDecoder(d / "model.onnx")
    x = torch.randint(0, model.config.vocab_size, (2, 70))  # batch 2: not the traced sizes
    with torch.no_grad():
        full = model(x).numpy()
    got = dec.run(x[:, :50].numpy())                     # prefill 50 tokens
    assert np.abs(got - full[:, :50]).max() < 1e-4
    for t in range(50, 70):                                    # then one cached token at a time
        got = dec.run(x[:, t:t + 1].numpy(), reset=False)
        assert np.abs(got[:, 0] - full[:, t]).max() < 1e-4
    # and against the torch KV cache path
    cache = model.new_cache(2)
    with torch.no_grad():
        model(x[:, :50], cache)
        step = model(x[:, 50:51], cache).numpy()
    np.testing.assert_allclose(dec.run(x[:, :50].numpy())[:, -1:].shape, (2, 1, full.shape[-1]))
    got = dec.run(x[:, 50:51].numpy(), reset=False)
    assert np.abs(got - step).max() < 1e-4


def test_cache_is_updated_in_place(lm):
    """The shared-buffer graph: one buffer per layer for the whole context, bound as past and
    present; steps write into it and allocate no new cache."""
    d, _ = lm
    dec = OnnxDecoder(d / "model.onnx", max_len=128)
    assert dec.shared
    dec.prefill(list(range(1, 11)))
    bufs = list(dec.cache)
    ptrs = [b.data_ptr() for b in bufs]
    assert bufs[0].shape() == [1, 2, 128, 16]
    for t in range(5):
        dec.step(t + 3)
    assert [b.data_ptr() for b in dec.cache] == ptrs and dec.length == 15
    keys = bufs[0].numpy()                                   # positions 0..14 written, rest untouched
    assert np.abs(keys[:, :, :15]).sum() > 0
    with pytest.raises(ValueError, match="exceed the cache of 128"):
        dec.run(np.zeros((1, 120), dtype=np.int64), reset=False)



def test_lm_head_only_at_the_positions_asked_and_packed_attention(lm):
    """The prompt's logits come from its last position alone (the LM head multiplies one row, not
    every position), the same numbers as the full run; each GroupQueryAttention reads the QKV
    projection whole (no Split). A bound step gives what a plain run gives."""
    d, _ = lm
    for name in ("model.onnx", "model.int8.onnx"):
        graph = onnx.load(str(d / name), load_external_data=False).graph
        assert "Split" not in {n.op_type for n in graph.node}
        gqa = [n for n in graph.node if n.op_type == "GroupQueryAttention"]
        assert gqa and all(list(n.input[1:3]) == ["", ""] for n in gqa)
        pick = [n for n in graph.node if n.op_type == "Gather" and "logits_index" in n.input]
        assert len(pick) == 1                                # before the LM head, after ln_f
    dec, ref = OnnxDecoder(d / "model.onnx"), OnnxDecoder(d / "model.onnx")
    ids = list(range(1, 40))
    full = ref.run(np.asarray([ids]))                        # every position: (1, 39, vocab)
    assert full.shape[1] == 39
    np.testing.assert_allclose(dec.prefill(ids), full[0, -1], atol=1e-5)
    assert dec.run(np.asarray([ids]), last_only=True).shape[1] == 1
    for t in (5, 9, 2):                                      # bound steps against plain runs
        np.testing.assert_allclose(dec.step(t), ref.run(np.asarray([[t]]), reset=False)[0, 0],
                                   atol=1e-5)
    dec.prefill(ids[:5])                                     # a new prompt rebinds, then steps again
    ref.run(np.asarray([ids[:5]]))
    np.testing.assert_allclose(dec.step(7), ref.run(np.asarray([[7]]), reset=False)[0, 0], atol=1e-5)

@pytest.fixture(scope="module", params=["dynamo", "torchscript"])
def lm_graph(request, lm, tmp_path_factory) -> Path:
    """The language model with a graph of each exporter: GroupQueryAttention on a shared cache
    (dynamo) and the Concat cache of the fallback (TorchScript)."""
    d, _ = lm
    if request.param == "dynamo":
        return d
    out = tmp_path_factory.mktemp("ts") / "lm"
    shutil.copytree(d, out, ignore=shutil.ignore_patterns("*.onnx*"))
    ox.export_model(out, force_torchscript=True)
    return out


def test_greedy_64_tokens_identical(lm_graph):
    from tinyllm.engines.torch_engine import generate_token_ids
    from tinyllm.runtime.sampling import SamplingConfig, generate_ids

    prompt = list(range(5, 21))
    cfg = SamplingConfig(temperature=0, max_new_tokens=64, stop_at_eos=False)
    dec = OnnxDecoder(lm_graph / "model.onnx", max_len=128)
    got = list(generate_ids(dec.prefill, dec.step, prompt, cfg, None, 128))
    want = list(generate_token_ids(load_model(lm_graph), prompt, cfg))
    assert len(want) == 64 and got == want


def test_sampling_and_sliding_window_match_torch(lm_graph):
    from tinyllm.engines import open_engine
    from tinyllm.runtime.sampling import SamplingConfig

    # 200 tokens > context 128: the window slides (a fresh prefill), on both backends alike
    cfg = SamplingConfig(temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.2, seed=5,
                         max_new_tokens=200, stop_at_eos=False)
    a = "".join(open_engine(lm_graph, "onnx", precision="fp32").generate("KING:", cfg))
    b = "".join(open_engine(lm_graph, "torch").generate("KING:", cfg))
    assert len(a) == 200 and a == b


def test_int8_graph_quantizes_every_linear_layer(lm):
    d, report = lm
    # --quant auto without a training text to check on: dynamic, the fastest
    assert report["quant_method"] == "dynamic" and report["quant_check"] is None
    q = ops(d / "model.int8.onnx")
    assert q["MatMulInteger"] == 4 * 2 + 1      # qkv, proj, fc, proj per layer + the tied LM head
    assert "MatMul" not in q
    meta = props(d / "model.int8.onnx")
    assert meta["tinyllm.quant"] == "dynamic" and meta["tinyllm.kv_cache"] == "shared"


@pytest.mark.parametrize("method,op", [("nbits8", "MatMulNBits"), ("nbits4", "MatMulNBits")])
def test_other_quantizers(lm, tmp_path, method, op):
    d, _ = lm
    out = tmp_path / f"{method}.onnx"
    ox.quantize(d / "model.onnx", out, method)
    assert ops(out)[op] == 9
    assert props(out)["tinyllm.kv_cache"] == "shared"  # quantize() keeps the metadata
    dec, ref = OnnxDecoder(out), OnnxDecoder(d / "model.onnx")
    ids = list(range(3, 40))
    a, b = dec.prefill(ids), ref.prefill(ids)
    assert np.abs(a - b).max() < 0.1 * np.abs(b).max()


# ---- classifier -------------------------------------------------------------------------------
def test_classifier_export_parity_and_out_dir(cls, chars):
    d, res = cls
    assert res.kind == "classify" and res.exporter == "dynamo"
    assert res.fp32_path == d.parent / "graphs" / "model.onnx" and not (d / "model.onnx").exists()
    assert res.fusions.get("GroupQueryAttention") == 2
    # -o makes a model directory of its own: config and tokenizer beside the graph, no weights
    graphs = d.parent / "graphs"
    assert (graphs / "config.yaml").is_file() and (graphs / "tokenizer.json").is_file()
    assert not (graphs / "model.safetensors").exists()
    from tinyllm.engines import open_engine

    eng = open_engine(graphs)
    assert eng.backend == "onnx" and eng.labels == ["a", "b", "c"]
    np.testing.assert_allclose(eng.classify(["x y z", "hello"]),
                               open_engine(d, "torch").classify(["x y z", "hello"]), atol=1e-5)
    model = load_model(d)
    clf = OnnxClassifier(res.fp32_path, chars, 64)
    texts = ["short", "a much longer message that goes on " * 3, "", "mid length one"]
    from tinyllm.runtime.textbatch import encode_batch

    ids, lengths = encode_batch(chars, texts, 64)
    with torch.no_grad():
        want = model.classify(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    assert np.abs(clf.logits(ids, lengths) - want).max() < 1e-4
    assert clf.classify(texts).shape == (4, 3)


# ---- fallback, external data, errors -------------------------------------------------------------
def test_falls_back_to_torchscript_and_says_why(tiny_lm_dir, monkeypatch):
    real = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo", True):
            raise RuntimeError("dynamo is broken today")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    logs: list[str] = []
    res = ox.export_model(tiny_lm_dir, log=logs.append)
    assert res.exporter == "torchscript" and "dynamo is broken today" in res.fallback_reason
    assert any("used the TorchScript exporter" in m for m in logs)
    assert props(res.fp32_path)["tinyllm.exporter"] == "torchscript"
    model = load_model(tiny_lm_dir)
    x = torch.randint(0, model.config.vocab_size, (1, 30))
    with torch.no_grad():
        want = model(x).numpy()
    dec = OnnxDecoder(res.fp32_path)
    assert np.abs(dec.run(x.numpy()) - want).max() < 1e-4


def test_external_data_beside_the_graph(tiny_lm_dir):
    res = ox.export_model(tiny_lm_dir, int8=True, quant="dynamic", external_data=True,
                          force_torchscript=True)
    data = tiny_lm_dir / "model.onnx.data"
    assert data.is_file() and data.stat().st_size > (tiny_lm_dir / "model.onnx").stat().st_size
    assert (tiny_lm_dir / "model.int8.onnx.data").is_file()
    assert set(res.sizes) == {"model.onnx", "model.onnx.data", "model.int8.onnx",
                              "model.int8.onnx.data"}
    assert ops(tiny_lm_dir / "model.int8.onnx")["DynamicQuantizeLinear"] >= 1
    model = load_model(tiny_lm_dir)
    x = torch.randint(0, model.config.vocab_size, (1, 20))
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(OnnxDecoder(res.fp32_path).run(x.numpy()) - want).max() < 1e-4
    OnnxDecoder(res.int8_path).prefill([1, 2, 3])
    # exporting again without external data or --int8 leaves no stale files behind
    ox.export_model(tiny_lm_dir, force_torchscript=True)
    assert not data.exists() and not (tiny_lm_dir / "model.int8.onnx").exists()
    assert not list(tiny_lm_dir.glob(".export-onnx-*"))
    # --int8-only keeps the small graph alone
    res = ox.export_model(tiny_lm_dir, int8=True, keep_fp32=False, force_torchscript=True)
    assert res.fp32_path is None and set(res.sizes) == {"model.int8.onnx"}
    assert not (tiny_lm_dir / "model.onnx").exists()


def test_bad_model_and_quant_are_user_errors(tmp_path, tiny_lm_dir):
    r = CliRunner().invoke(main, ["export-onnx", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not found" in r.output
    r = CliRunner().invoke(main, ["export-onnx", str(tiny_lm_dir), "--int8", "--quant", "int3"])
    assert r.exit_code == 2 and "int3" in r.output
    with pytest.raises(ox.UserError, match="unknown quantization"):
        ox.quantize(tiny_lm_dir / "x.onnx", tmp_path / "y.onnx", "int3")


# ---- int8 accuracy on the bundled models ---------------------------------------------------------
def _bundled(name: str) -> Path | None:
    d = modeldir.BUNDLED_MODELS / name
    return d if (d / "model.int8.onnx").is_file() else None


@pytest.mark.skipif(_bundled(modeldir.DEFAULT_LM) is None,
                    reason="bundled shakespeare-char has no int8 graph (make models)")
def test_int8_agreement_and_loss_on_bundled_validation_text(tmp_path):
    """The shipped int8 graph against the float model on the whole validation split (the last 10%
    of tiny Shakespeare): top-1 agreement >= 97%, validation loss at most 2% higher."""
    from tinyllm.export.onnx_check import acceptable, compare, model_validation_ids

    d = _bundled(modeldir.DEFAULT_LM)
    info = modeldir.read_info(d)
    ref = ox.export_model(d, out_dir=tmp_path, force_torchscript=True).fp32_path  # float graph
    ids = model_validation_ids(d, info.meta, info.load_tokenizer())
    res = compare(ref, d / "model.int8.onnx", ids, info.model_config.context_length,
                  max_windows=None)
    assert res["tokens"] > 100_000
    assert res["agreement"] >= 0.97, res
    assert res["loss_candidate"] <= res["loss_reference"] * 1.02, res
    assert acceptable(res)  # the bar the bundled build chooses its quantization by
    # the float graph is the torch model: check that too, on a few windows
    model = load_model(d)
    x = torch.tensor([ids[:64], ids[64:128]])
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(OnnxDecoder(ref).run(x.numpy()) - want).max() < 1e-4


@pytest.mark.skipif(_bundled(modeldir.DEFAULT_CLASSIFIER) is None,
                    reason="bundled sms-spam has no int8 graph (make models)")
def test_bundled_classifier_int8_labels_match_torch():
    from tinyllm.engines import open_engine

    d = _bundled(modeldir.DEFAULT_CLASSIFIER)
    texts = [ln.split("\t", 1)[1] for ln in
             (DATA / "SMSSpamCollection.tsv").read_text(encoding="utf-8").splitlines()[:1000]]
    a = open_engine(d, "onnx").classify(texts)
    b = open_engine(d, "torch").classify(texts)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.995


def test_auto_quant_checks_imported_weights_on_held_out_text(tmp_path):
    """Imported pretrained weights (config.yaml has `source`) have no training text at hand:
    `--quant auto` checks each method, 4-bit first, on the bundled held-out story instead."""
    from tinyllm.export import AUTO_CANDIDATES
    from tinyllm.export.onnx_check import HELD_OUT_CONTEXT, acceptable
    from tinyllm.tokenizer import get_gpt2

    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=50257, context_length=2048, n_layer=1, n_head=2, n_embd=16))
    d = save_model(model, get_gpt2(), tmp_path / "imported",
                   extra={"source": {"type": "hf", "model_type": "gpt2"}})
    notes: list[str] = []
    res = ox.export_model(d, int8=True, keep_fp32=False, quant="auto", force_torchscript=True,
                          log=notes.append)
    check = res.quant_check
    assert AUTO_CANDIDATES[0] == "nbits4" and list(check) == list(AUTO_CANDIDATES[:len(check)])
    verdict = len(get_gpt2().encode((DATA / "the-verdict.txt").read_text(encoding="utf-8")))
    # windows of 512 (not the model's 2048) over the whole story
    assert all(c["tokens"] == (verdict - 1) // HELD_OUT_CONTEXT * HELD_OUT_CONTEXT
               for c in check.values())
    assert any("held-out text" in n for n in notes)
    chosen = check[res.quant_method]
    if not acceptable(chosen):  # none passed: the closest is kept, and said so
        assert chosen["agreement"] == max(c["agreement"] for c in check.values())
        assert any(n.startswith("warning: no quantization keeps") for n in notes)
    assert props(d / "model.int8.onnx")["tinyllm.quant"] == res.quant_method


def test_auto_quant_measures_on_the_training_texts_validation_split(tmp_path):
    """`--quant auto` on the bundled LM (its config names tinyllm/bundled/data/tinyshakespeare.txt):
    each method, fastest first (4-bit, then 8-bit), until one passes the bar on the whole
    validation split."""
    from tinyllm.export import AUTO_CANDIDATES
    from tinyllm.export.onnx_check import INT8_MAX_LOSS_INCREASE, INT8_MIN_AGREEMENT

    src = modeldir.resolve(modeldir.DEFAULT_LM)
    d = tmp_path / "shk"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("*.onnx*"))
    res = ox.export_model(d, int8=True, keep_fp32=False, quant="auto", force_torchscript=True)
    check = res.quant_check
    assert list(check) == list(AUTO_CANDIDATES[:len(check)])     # tried in order, stopped at a pass
    assert all(c["tokens"] > 100_000 for c in check.values())    # the whole validation split
    chosen = check[res.quant_method]
    assert chosen["agreement"] >= INT8_MIN_AGREEMENT and chosen["loss_increase"] <= INT8_MAX_LOSS_INCREASE
    assert props(d / "model.int8.onnx")["tinyllm.quant"] == res.quant_method
    assert not (d / "model.onnx").exists()
