"""Llama-family decoders against transformers: random LlamaConfig / Qwen2Config / MistralConfig
models, imported from their folders and exported back, give the same logits (1e-4) and the same
64-token greedy continuations; presets have the released models' exact parameter counts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tinyllm.checkpoint import load_model  # noqa: E402
from tinyllm.config import ModelConfig, preset  # noqa: E402
from tinyllm.convert import llama as conv  # noqa: E402
from tinyllm.engines.torch_engine import generate_token_ids  # noqa: E402
from tinyllm.models.decoder import GPT  # noqa: E402
from tinyllm.runtime.sampling import SamplingConfig  # noqa: E402

from conftest import shakespeare  # noqa: E402

VOCAB = 320

# (name, config class, kwargs): GQA 2 and 3, odd head sizes, rope_theta 1e4 / 5e5, Llama-3
# scaling, tied and untied heads, Qwen2's q/k/v bias, Mistral's sliding window
CASES = [
    ("llama-gqa2-untied", "LlamaConfig",
     dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, intermediate_size=72,
          rope_theta=10000.0, tie_word_embeddings=False)),
    ("llama-gqa3-llama3-tied", "LlamaConfig",
     dict(hidden_size=60, num_attention_heads=6, num_key_value_heads=2, intermediate_size=88,
          tie_word_embeddings=True,
          rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 32})),
    ("llama-head-dim-14", "LlamaConfig",
     dict(hidden_size=42, num_attention_heads=6, num_key_value_heads=3, head_dim=14,
          intermediate_size=56, rope_theta=500000.0, tie_word_embeddings=True)),
    ("qwen2-bias-gqa3", "Qwen2Config",
     dict(hidden_size=36, num_attention_heads=6, num_key_value_heads=2, intermediate_size=80,
          rope_theta=1000000.0, tie_word_embeddings=True)),
    ("qwen2-bias-untied", "Qwen2Config",
     dict(hidden_size=36, num_attention_heads=2, num_key_value_heads=1, intermediate_size=50,
          rope_theta=10000.0, tie_word_embeddings=False)),
    ("mistral-gqa2-head-dim-10", "MistralConfig",
     dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=10,
          intermediate_size=64, rope_theta=10000.0, tie_word_embeddings=False,
          sliding_window=4096)),
]
IDS = [c[0] for c in CASES]


def _hf_model(cls_name: str, kwargs: dict, seed: int = 0):
    cfg = getattr(transformers, cls_name)(
        vocab_size=VOCAB, num_hidden_layers=2, max_position_embeddings=192, rms_norm_eps=1e-5,
        initializer_range=0.15, bos_token_id=0, eos_token_id=1, **kwargs)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    with torch.no_grad():  # norms away from 1 so a wrong norm weight would show
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([shakespeare(20000)], trainer=trainer)
    return tok.to_str()


CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def hf_folder(tmp_path: Path, cls_name: str, kwargs: dict, name: str = "hf") -> tuple[Path, object]:
    model = _hf_model(cls_name, kwargs)
    folder = tmp_path / name
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_text(_tokenizer_json(), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE}))
    return folder, model


def _prompt(n: int = 20, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, VOCAB, (1, n), generator=g)


def _greedy_tinyllm(model: GPT, ids: torch.Tensor, n: int = 64) -> list[int]:
    cfg = SamplingConfig(max_new_tokens=n, temperature=0, stop_at_eos=False)
    return list(generate_token_ids(model, ids[0].tolist(), cfg))


def _greedy_hf(model, ids: torch.Tensor, n: int = 64) -> list[int]:
    out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_import_and_export_match_transformers(tmp_path, case):
    name, cls_name, kwargs = case
    folder, hf = hf_folder(tmp_path, cls_name, kwargs)
    summary = conv.import_hf(folder, tmp_path / "tl")
    assert summary["chat_template"]
    model = load_model(tmp_path / "tl")
    cfg = model.config
    assert cfg.kv_heads == kwargs["num_key_value_heads"]
    assert cfg.num_params() == sum(p.numel() for p in hf.parameters()) == model.num_params()
    ids = _prompt()
    with torch.no_grad():
        want = hf(ids).logits
        got = model(ids)
    assert (got - want).abs().max().item() < 1e-4
    hf_tokens = _greedy_hf(hf, ids)
    assert _greedy_tinyllm(model, ids) == hf_tokens

    # export-hf: transformers loads the folder and computes the same
    conv.export_hf(__import__("tinyllm.modeldir").modeldir.find(tmp_path / "tl"), tmp_path / "back")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    assert type(back).__name__ == type(hf).__name__
    with torch.no_grad():
        assert (back(ids).logits - want).abs().max().item() < 1e-4
    assert _greedy_hf(back, ids) == hf_tokens
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True) == "<|user|>hi</s><|assistant|>"


@pytest.mark.parametrize("case", CASES[:4], ids=IDS[:4])
def test_kv_cache_steps_equal_full_recompute(case):
    _, cls_name, kwargs = case
    model = conv.from_hf_state_dict(_hf_model(cls_name, kwargs).state_dict(),
                                    _hf_model(cls_name, kwargs).config)
    ids = _prompt(40)
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(1)
        steps = [model(ids[:, :7], cache)] + [model(ids[:, t:t + 1], cache) for t in range(7, 40)]
    assert cache.k[0].shape[1] == kwargs["num_key_value_heads"]  # the cache stores kv heads only
    assert (torch.cat(steps, 1) - full).abs().max().item() < 1e-4


def test_in_memory_round_trip():
    _, cls_name, kwargs = CASES[3]
    hf = _hf_model(cls_name, kwargs)
    model = conv.from_hf_state_dict(hf.state_dict(), hf.config)
    sd = conv.to_hf_state_dict(model)
    for k, v in hf.state_dict().items():
        assert torch.equal(sd[k], v), k


def test_kv_cache_grows_on_demand():
    cfg = ModelConfig(vocab_size=50, context_length=3000, n_layer=1, n_head=4, n_kv_head=2,
                      n_embd=32, norm="rmsnorm", position="rope", mlp="swiglu", bias=False,
                      qkv_bias=False)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    cache = model.new_cache(1)
    assert cache.capacity == 1024 and cache.k[0].shape[1] == 2
    ids = torch.randint(0, 50, (1, 1100))
    with torch.no_grad():
        a = model(ids[:, :1000], cache)
        b = model(ids[:, 1000:], cache)
        full = model(ids)
    assert cache.capacity == 2048
    assert (torch.cat([a, b], 1) - full).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["smollm2-135m", "smollm2-360m", "qwen2.5-0.5b", "llama-3.2-1b"])
def test_presets_have_the_released_parameter_counts(name):
    released = {"smollm2-135m": 134_515_008, "smollm2-360m": 361_821_120,
                "qwen2.5-0.5b": 494_032_768, "llama-3.2-1b": 1_235_814_400}
    cfg = preset(name)
    hf_cfg = conv.hf_config_from_model(cfg)
    cls = transformers.AutoConfig.for_model(hf_cfg["model_type"])
    hf_cfg = {k: v for k, v in hf_cfg.items() if k not in ("architectures", "model_type")}
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(cls.__class__(**hf_cfg)
                                                           if not isinstance(cls, type) else
                                                           cls(**hf_cfg))
        ours = GPT(cfg)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert cfg.num_params() == ours.num_params() == n_hf == released[name]


def test_shapes_helper_matches_the_model():
    for name in ("smollm2-135m", "qwen2.5-0.5b"):
        cfg = preset(name, n_layer=2)
        with torch.device("meta"):
            sd = GPT(cfg).state_dict()
        assert conv.tensor_shapes(cfg) == {k: tuple(v.shape) for k, v in sd.items()}


def test_old_gpt2_configs_load_unchanged():
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32)
    assert cfg.family == "gpt2" and cfg.kv_heads == 2 and cfg.mlp_size == 128
    assert preset("smollm2-135m").family == "llama"


def test_unsupported_configs_name_the_problem(tmp_path):
    base = dict(model_type="llama", hidden_size=32, num_attention_heads=4, intermediate_size=64,
                num_hidden_layers=1, vocab_size=100)
    with pytest.raises(conv.LlamaError, match="hidden_act 'gelu'"):
        conv.model_config_from_hf({**base, "hidden_act": "gelu"})
    with pytest.raises(conv.LlamaError, match="rope scaling 'yarn'"):
        conv.model_config_from_hf({**base, "rope_scaling": {"rope_type": "yarn", "factor": 2}})
    with pytest.raises(conv.LlamaError, match="model_type is 'phi3'"):
        conv.model_config_from_hf({**base, "model_type": "phi3"})
    with pytest.raises(conv.LlamaError, match="no config.json"):
        conv.import_hf(tmp_path, tmp_path / "out")


def test_sliding_window_shorter_than_context_becomes_the_context():
    notes = []
    cfg = conv.model_config_from_hf(dict(model_type="mistral", hidden_size=32,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         intermediate_size=64,
                                         num_hidden_layers=1, vocab_size=100,
                                         max_position_embeddings=8192, sliding_window=1024),
                                    log=notes.append)
    assert cfg.context_length == 1024 and "sliding-window" in notes[0]


def test_sharded_checkpoint_imports(tmp_path):
    _, cls_name, kwargs = CASES[0]
    hf = _hf_model(cls_name, kwargs)
    folder = tmp_path / "sharded"
    hf.save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    (folder / "tokenizer.json").write_text(_tokenizer_json(), encoding="utf-8")
    conv.import_hf(folder, tmp_path / "tl")
    ids = _prompt()
    with torch.no_grad():
        assert (load_model(tmp_path / "tl")(ids) - hf(ids).logits).abs().max().item() < 1e-4
