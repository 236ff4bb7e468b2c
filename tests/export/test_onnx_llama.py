"""ONNX export of Llama-family models: random Llama / Qwen2 / Mistral models built by transformers,
imported and exported, give transformers' logits (1e-4) and its 64-token greedy continuation on
ONNX Runtime in fp32, single and batched; GroupQueryAttention holds n_kv_head heads and rotates
q and k itself where ONNX Runtime's kernel can (head sizes that 16 divides)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tinyllm import modeldir  # noqa: E402
from tinyllm.convert import llama as conv  # noqa: E402
from tinyllm.export.onnx import export_model  # noqa: E402
from tinyllm.runtime.onnx_decoder import BatchedOnnxDecoder, OnnxDecoder  # noqa: E402
from tinyllm.runtime.session import open_session  # noqa: E402

from convert.test_llama import _greedy_hf, _prompt, hf_folder  # noqa: E402  (tests/convert)
from runtime.test_onnx_batch import greedy_alone, staggered  # noqa: E402  (tests/runtime)

# (name, config class, kwargs, how attention is exported): GQA with 2 and 3 query heads per
# key/value head, rope_theta 1e4 / 5e5 / 1e6, Llama 3 scaling, tied and untied heads, Qwen2's
# q/k/v bias; head sizes 16 and 32 rotate inside GroupQueryAttention, 8 before it, 12 (which
# ONNX Runtime's kernel refuses) exports plain attention
CASES = [
    ("llama-gqa2-untied", "LlamaConfig",
     dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
          rope_theta=10000.0, tie_word_embeddings=False), "rotary"),
    ("llama-gqa3-llama3-tied", "LlamaConfig",
     dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, intermediate_size=88,
          tie_word_embeddings=True,
          rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 32}), "rotary"),
    ("qwen2-bias-gqa3-tied", "Qwen2Config",
     dict(hidden_size=96, num_attention_heads=6, num_key_value_heads=2, intermediate_size=80,
          rope_theta=1000000.0, tie_word_embeddings=True), "rotary"),
    ("mistral-gqa2-head-dim-32", "MistralConfig",
     dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
          intermediate_size=64, rope_theta=10000.0, tie_word_embeddings=False,
          sliding_window=4096), "rotary"),
    ("qwen2-head-size-8", "Qwen2Config",
     dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=3, intermediate_size=50,
          rope_theta=10000.0, tie_word_embeddings=False), "fused"),
    ("llama-head-size-12", "LlamaConfig",
     dict(hidden_size=36, num_attention_heads=3, num_key_value_heads=1, intermediate_size=40,
          rope_theta=500000.0, tie_word_embeddings=True), "plain"),
]
IDS = [c[0] for c in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def exported(request, tmp_path_factory):
    """(model directory with model.onnx, the transformers model, the case)."""
    name, cls_name, kwargs, mode = request.param
    tmp = tmp_path_factory.mktemp(name)
    folder, hf = hf_folder(tmp, cls_name, kwargs)
    conv.import_hf(folder, tmp / "tl")
    result = export_model(tmp / "tl")
    assert result.exporter == "dynamo" and result.max_abs_diff < 1e-4
    return tmp / "tl", hf, request.param


def _attention_nodes(path) -> list:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == "GroupQueryAttention"]


def test_graph_has_grouped_query_attention_with_rotary_and_rmsnorm(exported):
    d, hf, (_, _, kwargs, mode) = exported
    graph = onnx.load(str(d / "model.onnx"))
    ops = Counter(n.op_type for n in graph.graph.node)
    n_layer = hf.config.num_hidden_layers
    props = {p.key: p.value for p in graph.metadata_props}
    past = next(i for i in graph.graph.input if i.name == "past.0.key")
    assert past.type.tensor_type.shape.dim[1].dim_value == kwargs["num_key_value_heads"]
    assert ops["SkipSimplifiedLayerNormalization"] == 2 * n_layer
    assert ops["SimplifiedLayerNormalization"] == 1
    if mode == "plain":
        assert ops["GroupQueryAttention"] == 0 and props["tinyllm.kv_cache"] == "concat"
        return
    assert props["tinyllm.kv_cache"] == "shared" and props["tinyllm.positions"] == "per_row"
    nodes = _attention_nodes(d / "model.onnx")
    assert len(nodes) == n_layer
    attrs = {a.name: a.i for a in nodes[0].attribute}
    assert attrs["num_heads"] == kwargs["num_attention_heads"]
    assert attrs["kv_num_heads"] == kwargs["num_key_value_heads"]
    rotates = mode == "rotary"
    assert attrs.get("do_rotary", 0) == rotates and attrs.get("rotary_interleaved", 0) == 0
    assert (len(nodes[0].input) == 9) == rotates            # cos_cache and sin_cache inputs
    assert ("Neg" in ops) != rotates                        # else rotated by plain ops


def test_logits_match_transformers_prefill_and_cached_decode(exported):
    d, hf, _ = exported
    dec = OnnxDecoder(d / "model.onnx")
    ids = _prompt(40)
    with torch.no_grad():
        want = hf(ids).logits[0].numpy()
    got = dec.run(ids[:, :25].numpy())[0]
    assert np.abs(got - want[:25]).max() < 1e-4
    for t in range(25, 40):
        assert np.abs(dec.step(int(ids[0, t])) - want[t]).max() < 1e-4


def test_greedy_64_tokens_equal_transformers(exported):
    d, hf, _ = exported
    from tinyllm.engines import open_engine
    from tinyllm.runtime.sampling import SamplingConfig, generate_ids

    ids = _prompt()
    engine = open_engine(d, "onnx")
    assert engine.backend == "onnx"
    cfg = SamplingConfig(max_new_tokens=64, temperature=0, stop_at_eos=False)
    got = list(generate_ids(engine.prefill, engine.step, ids[0].tolist(), cfg))
    assert got == _greedy_hf(hf, ids)


def test_batched_rows_at_different_lengths_decode_as_alone(exported):
    """What `tinyllm serve` relies on: sequences joining a batch one after another, each row at its
    own position (per-row seqlens_k, rotary angles included), get the logits each gets alone."""
    d, _, (_, _, _, mode) = exported
    sess = open_session(d / "model.onnx")
    if mode == "plain":
        assert not BatchedOnnxDecoder.supports(sess)
        return
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(2, 300, size=int(rng.integers(1, 12)))) for _ in range(5)]
    alone = [greedy_alone(OnnxDecoder(sess), p, 12)[1] for p in prompts]
    together = staggered(BatchedOnnxDecoder(sess, 8), prompts, 12)
    for i in range(len(prompts)):
        for k in range(12):
            assert np.abs(together[i][k] - alone[i][k]).max() < 1e-5, (i, k)


def test_torchscript_fallback_exports_plain_attention(tmp_path, monkeypatch):
    """When dynamo fails, the TorchScript exporter writes plain attention (rotary by plain ops,
    keys and values repeated for the query heads) with a concatenated n_kv_head cache."""
    _, cls_name, kwargs, _ = CASES[1]
    folder, hf = hf_folder(tmp_path, cls_name, kwargs)
    conv.import_hf(folder, tmp_path / "tl")
    result = export_model(tmp_path / "tl", force_torchscript=True)
    assert result.exporter == "torchscript" and result.max_abs_diff < 1e-4
    assert not _attention_nodes(tmp_path / "tl" / "model.onnx")
    ids = _prompt(30)
    with torch.no_grad():
        want = hf(ids).logits[0].numpy()
    dec = OnnxDecoder(tmp_path / "tl" / "model.onnx")
    assert np.abs(dec.run(ids[:, :20].numpy())[0] - want[:20]).max() < 1e-4
    for t in range(20, 30):
        assert np.abs(dec.step(int(ids[0, t])) - want[t]).max() < 1e-4


def test_llama_classifier_exports(tmp_path):
    """A classification head on a Llama-family model (finetune classify) exports too."""
    from tinyllm.checkpoint import load_model, save_model
    from tinyllm.config import ModelConfig
    from tinyllm.engines import open_engine

    _, cls_name, kwargs, _ = CASES[2]
    folder, _ = hf_folder(tmp_path, cls_name, kwargs)
    conv.import_hf(folder, tmp_path / "tl")
    lm = load_model(tmp_path / "tl")
    torch.manual_seed(0)
    model = type(lm)(ModelConfig(**{**lm.config.__dict__, "n_classes": 3}))
    model.load_state_dict(lm.state_dict(), strict=False)
    d = save_model(model.eval(), modeldir.load_tokenizer(tmp_path / "tl"), tmp_path / "cls",
                   task="classify", extra={"labels": ["a", "b", "c"]})
    assert export_model(d).kind == "classify"
    texts = ["to be or not", "a horse, a horse, my kingdom", ""]
    np.testing.assert_allclose(open_engine(d, "onnx").classify(texts),
                               open_engine(d, "torch").classify(texts), atol=1e-5)
